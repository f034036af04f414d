"""`kefu upgrade`: 升级服务 from the operator's machine - the enterprise's configured targets, an
offer to one customer (recorded in the conversation, counted in the statistics and announced like
the route function's), and its cancellation."""

from __future__ import annotations

import json
import time
from typing import Any

from kefu_cli.target import CliError, Target
from kefu_cli.wecom import WeCom, diagnose, read_secrets


def _wecom(target: Target) -> WeCom:
    values, missing = read_secrets(target)
    if not values.get("corp-secret"):
        raise CliError(f"no corp secret in SSM ({', '.join(missing) or target.secrets_prefix}); run `kefu preflight`")
    return WeCom(target, values["corp-secret"])


def _table(target: Target, output: str) -> tuple[str, Any]:
    name = target.output(output)
    return name, target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None).Table(name)


def _emitter(target: Target) -> Any:
    """Announce on the stack's event bus, as the route function does (nothing when it has none)."""
    from kefu.events import SOURCE, event_detail, no_events

    bus = target.parameters.get("EventBusName") or ""
    if not bus:
        return no_events
    client = target.client("events")

    def emit(kind: str, event_id: str, fields: dict[str, Any]) -> None:
        detail = event_detail(kind, event_id, fields, int(time.time()))
        client.put_events(Entries=[{"Source": SOURCE, "DetailType": kind, "EventBusName": bus,
                                    "Detail": json.dumps(detail, ensure_ascii=False)}])

    return emit


def show_config(target: Target) -> dict[str, Any]:
    from kefu.wecom import kf
    from kefu.wecom.errors import WeComError

    wecom = _wecom(target)
    try:
        config = kf.upgrade_config(wecom.client)
    except WeComError as exc:
        raise CliError(f"get_upgrade_service_config: {diagnose(exc, target).summary}") from None
    finally:
        wecom.close()
    return {"members": list(config.userids), "departments": list(config.department_ids), "groups": list(config.chat_ids)}


def offer(target: Target, open_kfid: str, external_userid: str, member: str | None, group: str | None,
          wording: str) -> dict[str, Any]:
    """Offer a member or a group (a userid / chat_id, or ``auto``) to the customer."""
    from pydantic import ValidationError

    from kefu.routing.accounting import Accounting
    from kefu.routing.outbound import UpgradeOffer
    from kefu.routing.sending import Said
    from kefu.routing.session import Session
    from kefu.routing.upgrades import Upgrader
    from kefu.store import keys
    from kefu.store.messages import MessageStore
    from kefu.store.stats import StatsStore
    from kefu.wecom.errors import WeComError

    try:
        wanted = UpgradeOffer(member=member, group=group, wording=wording)
    except ValidationError as exc:
        raise CliError(f"upgrade offer: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", exit_code=2) from None
    messages_name, messages = _table(target, "MessagesTableName")
    state_name, state = _table(target, "StateTableName")
    session = Session.from_item(state.get_item(Key=keys.session(open_kfid, external_userid)).get("Item"))
    accounting = Accounting(StatsStore(state_name, state), target.parameters.get("StatsTimezone") or "Asia/Shanghai",
                            _emitter(target))
    wecom = _wecom(target)
    try:
        upgrader = Upgrader(wecom.client, MessageStore(messages_name, messages), accounting)
        # The operator's own cause: one offer per run, never merged with an earlier one.
        said = Said(open_kfid, external_userid, "operator (kefu upgrade offer)", f"cli-{time.time_ns()}")
        result = upgrader.offer(said, wanted, session.scene, session.servicer or session.last_servicer)
    except WeComError as exc:
        raise CliError(f"upgrade_service: {diagnose(exc, target).summary}") from None
    finally:
        wecom.close()
    return {"open_kfid": open_kfid, "external_userid": external_userid, "outcome": str(result.outcome),
            "detail": result.detail}


def cancel(target: Target, open_kfid: str, external_userid: str) -> dict[str, Any]:
    from kefu.wecom import kf
    from kefu.wecom.errors import WeComError

    wecom = _wecom(target)
    try:
        kf.cancel_upgrade_service(wecom.client, open_kfid, external_userid)
    except WeComError as exc:
        raise CliError(f"cancel_upgrade_service: {diagnose(exc, target).summary}") from None
    finally:
        wecom.close()
    return {"open_kfid": open_kfid, "external_userid": external_userid, "cancelled": True}


def render_config(config: dict[str, Any]) -> str:
    def listed(values: list[Any]) -> str:
        return ", ".join(map(str, values)) if values else "(none)"

    return "\n".join(["升级服务 targets (get_upgrade_service_config):",
                      f"  members:     {listed(config['members'])}",
                      f"  departments: {listed(config['departments'])}",
                      f"  groups:      {listed(config['groups'])}"])


def render_result(result: dict[str, Any]) -> str:
    who = f"{result['external_userid']} ({result['open_kfid']})"
    if result.get("cancelled"):
        return f"升级服务 offer to {who} cancelled"
    detail = f": {result['detail']}" if result.get("detail") else ""
    return f"升级服务 offer to {who}: {result['outcome']}{detail}"
