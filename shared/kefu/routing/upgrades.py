"""升级服务: offering a customer a member of the enterprise (to add as a WeCom contact) or a
customer group to join, from a bot keyword, a menu click, the rules' own triggers or the CLI.

The targets must be in the range the enterprise set up in the admin console
(kf/customer/get_upgrade_service_config, read at most every five minutes). Each offer is recorded
in the conversation like a send (pending before the call, settled after), counted once in the
scene funnel and the servicer's figures, and announced as an ``upgrade.offered`` event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kefu.routing import decide
from kefu.routing.accounting import Accounting
from kefu.routing.outbound import UpgradeOffer
from kefu.routing.outcome import SENT, Outcome, SendResult
from kefu.routing.ports import TranscriptPort, WeComPort
from kefu.routing.sending import ALREADY_SENT, Said
from kefu.store.messages import FAILED, kefu_record
from kefu.store.messages import SENT as RECORDED_SENT
from kefu.wecom import kf
from kefu.wecom.errors import WeComError

AUTO = "auto"
CONFIG_MAX_AGE = 300.0


class Upgrader:
    def __init__(self, wecom: WeComPort, transcript: TranscriptPort, accounting: Accounting,
                 clock: Callable[[], float] = time.time, retention_days: int = 0) -> None:
        self.wecom, self.transcript, self.accounting, self.clock = wecom, transcript, accounting, clock
        self.retention_days = retention_days
        self._config: tuple[kf.UpgradeConfig, float] | None = None

    def config(self, fresh: bool = False) -> kf.UpgradeConfig:
        now = time.monotonic()
        if fresh or self._config is None or now - self._config[1] > CONFIG_MAX_AGE:
            self._config = (kf.upgrade_config(self.wecom), now)
        return self._config[0]

    def choose(self, offer: UpgradeOffer, served_by: str | None) -> tuple[int, str] | str:
        """(type, target) for WeCom, or what is wrong. ``auto`` takes the member who served the
        customer when the range holds them, else the range's first member (or group)."""
        for fresh in (False, True):
            config = self.config(fresh)
            if offer.member is not None:
                if offer.member == AUTO:
                    if served_by and served_by in config.userids:
                        return kf.UPGRADE_MEMBER, served_by
                    if config.userids:
                        return kf.UPGRADE_MEMBER, config.userids[0]
                elif offer.member in config.userids or config.department_ids:
                    return kf.UPGRADE_MEMBER, offer.member  # a department's member: WeCom knows, Kefu cannot
            elif offer.group == AUTO and config.chat_ids:
                return kf.UPGRADE_GROUP, config.chat_ids[0]
            elif offer.group in config.chat_ids:
                return kf.UPGRADE_GROUP, str(offer.group)
        wanted = f"member {offer.member}" if offer.member is not None else f"group {offer.group}"
        return f"{wanted}: not in the enterprise's 升级服务 range (get_upgrade_service_config)"

    def offer(self, said: Said, offer: UpgradeOffer, scene: str | None, served_by: str | None) -> SendResult:
        chosen = self.choose(offer, served_by)
        if isinstance(chosen, str):
            return SendResult(Outcome.FAILED, chosen)
        kind, target = chosen
        field, id_key = ("member", "userid") if kind == kf.UPGRADE_MEMBER else ("groupchat", "chat_id")
        body: dict[str, object] = {id_key: target, **({"wording": offer.wording} if offer.wording else {})}
        payload = {"msgtype": "upgrade_service", "upgrade_service": {"type": kind, field: body}}
        msgid = decide.send_id(said.cause, "upgrade")
        at = int(self.clock())
        held = self.transcript.begin_send(kefu_record(said.open_kfid, said.euid, msgid, payload, at, rule=said.rule,
                                                      cause=said.cause, via="upgrade_service",
                                                      retention_days=self.retention_days))
        if held == FAILED:
            return SendResult(Outcome.FAILED, "failed at an earlier attempt")
        if held != RECORDED_SENT:
            try:
                kf.upgrade_service(self.wecom, said.open_kfid, said.euid, kind, target, offer.wording or None)
            except WeComError as exc:
                if exc.transient:
                    raise  # unclear: offered again by the retry (at worst the customer sees the card twice)
                self.transcript.settle_send(msgid, FAILED, f"errcode {exc.metric_code}")
                return SendResult(Outcome.FAILED, f"errcode {exc.metric_code}")
            self.transcript.settle_send(msgid, RECORDED_SENT)
        # Counted once per offer (keyed by its msgid), also when a retry finds it sent already.
        self.accounting.upgrade_offered(msgid, at, said.open_kfid, said.euid, scene, served_by, field, target)
        return SENT if held is None else ALREADY_SENT
