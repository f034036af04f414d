"""Drive a running WeCom simulator from another process through its ``/sim/...`` endpoints.

Python::

    with SimAdmin("http://127.0.0.1:8088") as sim:
        euid, code = sim.call("customer_enter", open_kfid=kfid, scene="web")
        sim.call("customer_says", open_kfid=kfid, external_userid=euid, text="hello")
        print(sim.state()["sessions"])

Command line (values are parsed as JSON when they can be, else kept as strings)::

    python -m local.sim_admin http://127.0.0.1:8088 customer_says open_kfid=wk... external_userid=wm... text=hi
    python -m local.sim_admin http://127.0.0.1:8088 state
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx


class SimAdminError(RuntimeError):
    """The simulator refused an admin action (unknown action, bad arguments)."""


class SimAdmin:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def call(self, action: str, **args: Any) -> Any:
        """Run one admin action and return its result."""
        response = self._http.post(f"/sim/{action}", json=args)
        answer = response.json()
        if response.status_code != 200 or not answer.get("ok"):
            raise SimAdminError(f"{action}: {answer.get('error', response.status_code)}")
        return answer.get("result")

    def state(self) -> dict[str, Any]:
        response = self._http.get("/sim/state")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m local.sim_admin BASE_URL ACTION [name=value ...]", file=sys.stderr)
        return 2
    base_url, action, pairs = args[0], args[1], args[2:]
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            print(f"argument {pair!r} is not name=value", file=sys.stderr)
            return 2
        kwargs[name] = _parse_value(value)
    with SimAdmin(base_url) as admin:
        try:
            result = admin.state() if action == "state" else admin.call(action, **kwargs)
        except SimAdminError as exc:
            print(exc, file=sys.stderr)
            return 1
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
