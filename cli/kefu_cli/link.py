"""`kefu link SCENE`: a scene-tagged contact URL from GET /links, and with --qr its QR code (PNG).

With --qr the route is asked twice (the URL, then the PNG); each answer counts as an issued link
in the funnel, like any other client's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kefu_cli.target import CliError, Target

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _get(target: Target, http: Any, params: dict[str, str]) -> Any:
    import httpx

    url = target.url("/links", "LinksUrl")
    try:
        response = http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise CliError(f"GET {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        try:
            body = response.json()
            detail = f"{body.get('error')}: {body.get('message')}"
        except (ValueError, AttributeError):
            detail = response.text[:200]
        raise CliError(f"GET /links answered {response.status_code} {detail}")
    return response


def run(target: Target, http: Any, scene: str, scene_param: str | None, account: str | None,
        qr: Path | None, size: int | None) -> dict[str, Any]:
    params = {"scene": scene}
    from kefu import tenancy

    if tenancy.current():  # --corp (provider mode): the corp's link
        params["corp"] = str(tenancy.current())
    if scene_param:
        params["scene_param"] = scene_param
    if account:
        params["account"] = account
    link = dict(_get(target, http, params).json())
    if qr is not None:
        png_params = {**params, "format": "png", **({"size": str(size)} if size else {})}
        image = _get(target, http, png_params).content
        if not image.startswith(PNG_SIGNATURE):
            raise CliError("GET /links?format=png did not answer a PNG")
        qr.write_bytes(image)
        link["qr"] = str(qr)
    return link


def render(link: dict[str, Any]) -> str:
    lines = [str(link.get("url"))]
    if link.get("qr"):
        lines.append(f"QR code written to {link['qr']}")
    return "\n".join(lines)
