"""What the route function counts and announces as sessions move: the scene funnel, servicer
figures (kefu.stats) and the outbound events (kefu.events). Each count is keyed by the event that
caused it, so a retried queue record never counts twice."""

from __future__ import annotations

from kefu import stats
from kefu.events import Emit, no_events
from kefu.routing.session import Session
from kefu.store.stats import StatsStore


class Accounting:
    def __init__(self, store: StatsStore | None, timezone: str, emit: Emit = no_events, content: bool = False) -> None:
        self._store = store
        self._timezone = timezone
        self._emit = emit
        self._content = content  # message events carry the message itself (KEFU_EVENT_CONTENT=full)

    def _with(self, fields: dict[str, object], message: dict[str, object] | None) -> dict[str, object]:
        return {**fields, "message": message} if self._content and message is not None else fields

    def _count(self, event_id: str, increments: list[stats.Increment]) -> None:
        if self._store is not None:
            self._store.count_once(event_id, increments)

    def day(self, at: int) -> str:
        """The calendar day of ``at`` in the statistics' time zone (the AI caps count in it too)."""
        return stats.day_of(at, self._timezone)

    def entered(self, msgid: str, at: int, open_kfid: str, euid: str, scene: str | None, scene_param: str | None) -> None:
        self._count(f"entered#{msgid}", [stats.funnel(self.day(at), open_kfid, scene, "sessions_entered")])
        self._emit("session.entered", msgid, {"open_kfid": open_kfid, "external_userid": euid, "scene": scene,
                                              "scene_param": scene_param, "send_time": at})

    def received(self, msgid: str, at: int, open_kfid: str, euid: str, scene: str | None, msgtype: str | None,
                 session: str, new_session: bool, message: dict[str, object] | None = None) -> None:
        if new_session:
            self._count(f"wrote#{open_kfid}#{euid}#{session}",
                        [stats.funnel(self.day(at), open_kfid, scene, "customers_wrote")])
        self._emit("message.received", msgid, self._with({"open_kfid": open_kfid, "external_userid": euid,
                                                          "scene": scene, "msgtype": msgtype, "send_time": at}, message))

    def assigned(self, at: int, open_kfid: str, euid: str, scene: str | None, servicer: str, session: str,
                 how: str) -> None:
        day = self.day(at)
        self._count(f"assigned#{open_kfid}#{euid}#{session}", [stats.funnel(day, open_kfid, scene, "sessions_assigned")])
        self._count(f"assigned#{open_kfid}#{euid}#{session}#{servicer}",
                    [stats.servicer(day, open_kfid, servicer, "sessions_assigned")])
        self._emit("session.assigned", f"{open_kfid}#{euid}#{session}#{servicer}",
                   {"open_kfid": open_kfid, "external_userid": euid, "scene": scene, "servicer": servicer,
                    "how": how, "time": at})

    def servicer_message(self, msgid: str, at: int, open_kfid: str, euid: str, servicer: str,
                         session: Session, msgtype: str | None = None, message: dict[str, object] | None = None) -> None:
        day = self.day(at)
        self._emit("message.sent", msgid, self._with({"open_kfid": open_kfid, "external_userid": euid,
                                                      "scene": session.scene, "sender": "servicer",
                                                      "servicer": servicer, "msgtype": msgtype, "send_time": at},
                                                     message))
        self._count(f"smsg#{msgid}", [stats.servicer(day, open_kfid, servicer, "messages")])
        assigned_at = session.assigned_at
        if assigned_at is not None and session.servicer == servicer and at >= assigned_at:
            self._count(f"frt#{open_kfid}#{euid}#{session.name}#{servicer}", [
                stats.servicer(day, open_kfid, servicer, "first_responses"),
                stats.servicer(day, open_kfid, servicer, "first_response_seconds", at - assigned_at),
            ])

    def ended(self, msgid: str, at: int, open_kfid: str, euid: str, scene: str | None, servicer: str | None) -> None:
        self._count(f"ended#{msgid}", [stats.funnel(self.day(at), open_kfid, scene, "sessions_ended")])
        self._emit("session.ended", msgid, {"open_kfid": open_kfid, "external_userid": euid, "scene": scene,
                                            "servicer": servicer, "send_time": at})

    def rated(self, msgid: str, at: int, open_kfid: str, euid: str, scene: str | None, servicer: str | None,
              score: int) -> None:
        day = self.day(at)
        increments = [stats.funnel(day, open_kfid, scene, "ratings"), stats.funnel(day, open_kfid, scene, "rating_sum", score)]
        if servicer:
            increments += [stats.servicer(day, open_kfid, servicer, "ratings"),
                           stats.servicer(day, open_kfid, servicer, "rating_sum", score)]
        self._count(f"rating#{msgid}", increments)
        self._emit("rating.given", msgid, {"open_kfid": open_kfid, "external_userid": euid, "scene": scene,
                                           "servicer": servicer, "score": score, "send_time": at})

    def upgrade_offered(self, offer_id: str, at: int, open_kfid: str, euid: str, scene: str | None,
                        servicer: str | None, kind: str, target: str) -> None:
        """A 升级服务 offer made (``kind`` member or groupchat); ``servicer``: who served the customer."""
        day = self.day(at)
        increments = [stats.funnel(day, open_kfid, scene, "upgrades_offered")]
        if servicer:
            increments.append(stats.servicer(day, open_kfid, servicer, "upgrades_offered"))
        self._count(f"upgrade#{offer_id}", increments)
        self._emit("upgrade.offered", offer_id, {"open_kfid": open_kfid, "external_userid": euid, "scene": scene,
                                                 "servicer": servicer, "kind": kind, "target": target, "time": at})

    def ai_question(self, msgid: str, at: int, open_kfid: str, scene: str | None, how: str) -> None:
        """A question the AI answerer took: ``how`` is answered, handed_off or fallback."""
        self._count(f"ai#{msgid}", [stats.funnel(self.day(at), open_kfid, scene, f"ai_{how}")])

    def send_failed(self, msgid: str, at: int, open_kfid: str, scene: str | None) -> None:
        """WeCom's msg_send_fail: a message it had accepted never reached the customer."""
        self._count(f"sendfail#{msgid}", [stats.funnel(self.day(at), open_kfid, scene, "sends_failed")])

    def kefu_sent(self, msgid: str, at: int, open_kfid: str, euid: str, rule: str, message: dict[str, object],
                  error: str | None) -> None:
        """One of Kefu's own sends (a rule's, or the conversation API's), sent or refused."""
        kind = "message.failed" if error else "message.sent"
        fields: dict[str, object] = {"open_kfid": open_kfid, "external_userid": euid, "sender": "kefu", "rule": rule,
                                     "msgtype": message.get("msgtype"), "send_time": at, "error": error}
        self._emit(kind, msgid, self._with(fields, message))

    def delivery_failed(self, event_msgid: str, at: int, open_kfid: str, euid: str | None, scene: str | None,
                        failed_msgid: str | None, fail_type: int | None) -> None:
        """WeCom's msg_send_fail: announced, and counted in the funnel's sends_failed."""
        self.send_failed(event_msgid, at, open_kfid, scene)
        self._emit("message.failed", event_msgid, {"open_kfid": open_kfid, "external_userid": euid, "scene": scene,
                                                   "failed_msgid": failed_msgid, "fail_type": fail_type,
                                                   "send_time": at})
