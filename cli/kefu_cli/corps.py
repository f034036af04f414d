"""`kefu corps` (provider mode): the corps that authorized the suite, and their API keys.

list: every corp the registry holds - state, name, agent, kf accounts granted, when.
key CORP: a new API key for the corp (printed once; only its digest is stored). The corp's
systems send it as X-Kefu-Corp-Key to the conversation API and /stats, which then answer with that
corp's data only. revoke CORP: every key of the corp stops working.
install-link --redirect URL [--state S] [--test]: a fresh pre-auth code and the install URL the
provider's page sends an enterprise's admin to (it lives 20 minutes); the suite token is the one
the deployment shares, so this makes no extra get_suite_token call while it is fresh.
rules CORP FILE: check a routing rules file as the route function would, then store it as the
corp's rules (``<corp>/routing.yaml`` in the media bucket; the route function reads it within a
minute).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kefu_cli.output import table
from kefu_cli.target import CliError, Target


def _tenants(target: Target) -> Any:
    from kefu.store.tenants import TenantStore

    name = target.output("StateTableName")
    table_ = target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None).Table(name)
    return TenantStore(name, table_)


def listed(target: Target) -> list[dict[str, Any]]:
    return [{"corp": t.corp_id, "state": t.state, "name": t.corp_name, "agent_id": t.agent_id,
             "accounts": sorted(t.accounts), "authorized_at": t.authorized_at, "cancelled_at": t.cancelled_at}
            for t in _tenants(target).all()]


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no corp has authorized the suite yet"

    def when(at: Any) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(int(at))) if at else ""

    return table(["corp", "state", "name", "accounts", "authorized", "cancelled"],
                 [[r["corp"], r["state"], r["name"], ",".join(r["accounts"]), when(r["authorized_at"]),
                   when(r["cancelled_at"])] for r in rows])


def issue_key(target: Target, corp: str) -> str:
    tenants = _tenants(target)
    tenant = tenants.get(corp)
    if tenant is None or not tenant.active:
        raise CliError(f"corp {corp} is not served by {target.describe()} (never authorized, or cancelled)")
    return str(tenants.issue_key(corp))


def revoke(target: Target, corp: str) -> int:
    return int(_tenants(target).revoke_keys(corp))


def store_rules(target: Target, corp: str, path: Path) -> str:
    from kefu.routing.corp_rules import document_key
    from kefu.routing.rules import RulesError, parse_rules

    if not path.is_file():
        raise CliError(f"no rules file at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        parse_rules(text, source=str(path))
    except RulesError as exc:
        raise CliError(f"the rules are not valid, nothing stored: {exc}") from None
    bucket, key = target.output("MediaBucketName"), document_key(corp)
    target.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType="application/yaml")
    return f"s3://{bucket}/{key}"


def install_link(target: Target, redirect: str, state: str, test: bool) -> dict[str, Any]:
    from kefu.secrets import SUITE_SECRET
    from kefu.store import keys
    from kefu.store.tokens import TokenTable
    from kefu.wecom.client import WeComClient
    from kefu.wecom.suite import SuiteApi
    from kefu.wecom.tokens import AccessTokens, token_key

    suite_id = target.parameters.get("SuiteId", "")
    if not suite_id:
        raise CliError(f"{target.describe()} has no SuiteId: is it deployed with Mode=provider?")
    if not redirect.startswith(("https://", "http://")) or len(redirect) > 1024:
        raise CliError("--redirect is the http(s) URL WeCom sends the admin back to")
    secret = target.client("ssm").get_parameter(Name=f"{target.secrets_prefix}/{SUITE_SECRET}",
                                                WithDecryption=True)["Parameter"]["Value"]
    tenants = _tenants(target)
    name = target.output("StateTableName")
    table_ = target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None).Table(name)
    item = keys.suite_token(token_key(suite_id, "suite"))  # the deployment's shared suite token (kefu.provider)
    suite = SuiteApi(WeComClient(target.wecom_api_base), suite_id, lambda: str(secret), tenants.ticket,
                     lambda fetch: AccessTokens(TokenTable(name, "", table=table_, item_key=item), fetch))
    url, lives = suite.install_link(redirect, state, test)
    return {"url": url, "expires_in": lives}
