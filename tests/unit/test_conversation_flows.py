"""Menus, 升级服务 and rich replies in the routing engine, on in-memory ports (tests/unit/fakes.py):
a click opens no send window, a two-level menu ends in a hand-off, offers are counted once and
every send lands in the conversation record with its rule and cause."""

from __future__ import annotations

import json
from typing import Any

from kefu.routing.assigner import EngineSettings
from kefu.routing.engine import RoutingEngine
from kefu.routing.outcome import Decision, Outcome
from kefu.routing.rules import parse_rules
from kefu.wecom.models import parse_item
from tests.unit.fakes import Clock, FakeState, FakeTranscript, FakeWeCom

K = "wkFLOWS".ljust(32, "0")
RULES = parse_rules("""
timezone: Asia/Shanghai
accounts:
  "*":
    welcome:
      msgmenu:
        head: "choose"
        items:
          - click: {id: more, content: "More"}
          - click: {id: human, content: "Human"}
    bot:
      replies:
        - keywords: ["menu"]
          reply:
            msgmenu:
              items:
                - click: {id: more, content: "More"}
                - click: {id: human, content: "Human"}
        - keywords: ["advisor"]
          upgrade: {member: auto, wording: "add me"}
      unmatched: ignore
    menu_actions:
      more:
        reply:
          msgmenu:
            head: "more"
            items:
              - click: {id: vip, content: "VIP desk"}
              - click: {id: card, content: "Card"}
              - click: {id: bye, content: "Bye"}
      vip: {handoff: {scene: vip}}
      human: {handoff: true}
      card: {reply: {link: {title: "Card", url: "https://example.com/c", thumb: card.png}}, upgrade: {member: bob}}
      bye: {end: true}
    closing:
      satisfaction:
        items:
          - {id: r5, content: "great", score: 5}
          - {id: r1, content: "bad", score: 1}
    upgrade: {offer: {group: auto}, after_rating: 4}
    scenes:
      vip: {servicers: [bob]}
""".replace("card.png", "{s3: assets/card.png}"))


class World:
    def __init__(self) -> None:
        self.clock = Clock()
        self.wecom = FakeWeCom(servicers={K: {"alice": True, "bob": True}})
        self.wecom.upgrade_range = {"userids": ["alice", "bob"], "chat_ids": ["chat1"]}
        self.state = FakeState()
        self.transcript = FakeTranscript()
        self.decisions: list[Decision] = []
        self.engine = RoutingEngine(self.wecom, self.state, lambda: RULES, EngineSettings(trans_backoff=0),
                                    self.decisions.append, self.transcript, clock=self.clock, sleep=lambda _s: None,
                                    media_id=lambda kind, asset: f"media-{asset.key()}")
        self.n = 0

    def item(self, euid: str, **fields: Any) -> None:
        self.n += 1
        raw = {"msgid": f"m{self.n}", "open_kfid": K, "external_userid": euid, "send_time": int(self.clock.now), **fields}
        self.engine.handle(parse_item(raw))

    def says(self, euid: str, text: str) -> None:
        self.item(euid, origin=3, msgtype="text", text={"content": text})

    def clicks(self, euid: str, menu_id: str) -> None:
        self.item(euid, origin=3, msgtype="text", text={"content": menu_id, "menu_id": menu_id})

    def sent(self) -> list[dict[str, Any]]:
        return [{"msgtype": s["msgtype"], **{k: v for k, v in s.items() if k == s["msgtype"]}} for s in self.wecom.sent]


def test_a_two_level_menu_walks_to_a_hand_off_to_the_scenes_servicers_on_the_budget() -> None:
    w = World()
    w.says("c1", "menu please")  # opens a window of 5 sends: the bot answers with the first menu
    w.clicks("c1", "more")  # the sub-menu: a second send in the same window
    assert [s["msgtype"] for s in w.sent()] == ["msgmenu", "msgmenu"]
    assert [i["click"]["id"] for i in w.sent()[1]["msgmenu"]["list"]] == ["vip", "card", "bye"]
    assert w.state.sessions.get(K, "c1").sends == 2  # clicks spent the window's budget, opened none
    w.clicks("c1", "vip")
    assert w.wecom.states[(K, "c1")] == (3, "bob")  # the vip scene's servicers, not the round robin's first
    assert any(d.rule.startswith("menu 'vip': hand-off to scene 'vip'") and d.outcome == Outcome.ASSIGNED
               for d in w.decisions)
    records = w.transcript.sent()
    assert [(r["rule"], r["cause"], r["send_state"]) for r in records] == [
        ("bot keyword 'menu'", "m1", "sent"), ("menu 'more'", "m2", "sent")]


def test_a_click_opens_no_window_so_a_reply_waits_for_the_customers_own_words() -> None:
    w = World()
    w.item("c1", origin=4, msgtype="event", event={"event_type": "enter_session", "open_kfid": K,
                                                   "external_userid": "c1", "welcome_code": "w1"})
    assert w.sent()[0]["msgtype"] == "msgmenu"  # the welcome menu, on the welcome code
    w.clicks("c1", "more")  # no message of the customer's own yet: no window, nothing sent
    assert len(w.wecom.sent) == 1
    assert any(d.rule == "menu 'more'" and d.outcome == Outcome.NOT_SENT for d in w.decisions)
    w.clicks("c1", "human")  # a hand-off needs no window
    assert w.wecom.states[(K, "c1")][0] == 3


def test_an_action_replies_then_offers_and_the_offer_is_recorded_and_counted_once() -> None:
    w = World()
    w.says("c1", "menu")
    w.clicks("c1", "more")
    w.clicks("c1", "card")
    assert w.sent()[-1] == {"msgtype": "link", "link": {"title": "Card", "url": "https://example.com/c",
                                                        "thumb_media_id": "media-s3:assets/card.png"}}
    assert w.wecom.offers == [{"open_kfid": K, "external_userid": "c1", "type": 1, "member": {"userid": "bob"}}]
    offer = [r for r in w.transcript.sent() if r["via"] == "upgrade_service"]
    assert len(offer) == 1 and offer[0]["message"]["upgrade_service"]["member"] == {"userid": "bob"}
    w.engine.handle(parse_item({"msgid": "m3", "open_kfid": K, "external_userid": "c1", "origin": 3,
                                "msgtype": "text", "text": {"content": "card", "menu_id": "card"}}))  # a copy
    assert len(w.wecom.offers) == 1


def test_a_good_rating_offers_the_rules_upgrade_and_a_poor_one_does_not() -> None:
    w = World()
    w.clicks("c1", "r1")
    assert not w.wecom.offers
    w.clicks("c2", "r5")
    assert w.wecom.offers == [{"open_kfid": K, "external_userid": "c2", "type": 2, "groupchat": {"chat_id": "chat1"}}]
    assert [d.outcome for d in w.decisions if d.rule.startswith("upgrade after rating")] == [Outcome.SENT]


def test_an_upgrade_to_someone_outside_the_range_is_refused_before_wecom_is_asked() -> None:
    w = World()
    w.wecom.upgrade_range = {"userids": ["carol"], "chat_ids": []}
    w.says("c1", "menu")
    w.clicks("c1", "more")
    w.clicks("c1", "card")  # bob is not in the range
    assert not w.wecom.offers
    failed = [d for d in w.decisions if d.rule == "menu 'card': upgrade"]
    assert failed[0].outcome == Outcome.FAILED and "member bob: not in the enterprise" in (failed[0].detail or "")


def test_an_auto_member_offer_names_who_served_the_customer() -> None:
    w = World()
    w.state.sessions.update(K, "c1", {"last_servicer": "bob", "last_served_at": int(w.clock.now)})
    w.says("c1", "advisor")
    assert w.wecom.offers[0]["member"] == {"userid": "bob", "wording": "add me"}


def test_end_from_a_menu_ends_the_session_with_the_closing_menu() -> None:
    w = World()
    w.says("c1", "menu")
    w.clicks("c1", "more")
    w.clicks("c1", "bye")
    assert w.wecom.states[(K, "c1")][0] == 4
    closing = [s for s in w.wecom.sent if s["path"] == "kf/send_msg_on_event"]
    assert [i["click"]["id"] for i in closing[0]["msgmenu"]["list"]] == ["r5", "r1"]


def test_a_channels_entry_is_its_own_scene() -> None:
    w = World()
    w.item("c1", origin=4, msgtype="event", event={"event_type": "enter_session", "open_kfid": K,
                                                   "external_userid": "c1",
                                                   "wechat_channels": {"nickname": "好物小店", "scene": 1}})
    assert w.state.sessions.get(K, "c1").scene == "channels:好物小店"


def test_every_kefu_send_is_in_the_record_with_the_message_as_sent() -> None:
    w = World()
    w.says("c1", "menu")
    (record,) = w.transcript.sent()
    assert record["sender"] == "kefu" and record["via"] == "send_msg"
    assert json.loads(record["raw"]) == w.sent()[0]


def test_an_offer_is_counted_once_and_announced_as_upgrade_offered() -> None:
    from kefu.routing.accounting import Accounting

    class Counts:
        def __init__(self) -> None:
            self.counted: dict[str, list[Any]] = {}

        def count_once(self, event_id: str, increments: list[Any]) -> bool:
            if event_id in self.counted:
                return False
            self.counted[event_id] = increments
            return True

    counts, events = Counts(), []
    w = World()
    w.engine.upgrades.accounting = Accounting(counts, "Asia/Shanghai",  # type: ignore[arg-type]
                                              lambda kind, event_id, fields: events.append((kind, event_id, fields)))
    w.state.sessions.update(K, "c1", {"scene": "poster", "last_servicer": "alice"})
    w.says("c1", "advisor")
    w.engine.handle(parse_item({"msgid": "m1", "open_kfid": K, "external_userid": "c1", "origin": 3, "msgtype": "text",
                                "text": {"content": "advisor"}, "send_time": int(w.clock.now)}))  # a late copy
    (kind, _id, fields), = events[:1]
    assert kind == "upgrade.offered" and fields["target"] == "alice" and fields["scene"] == "poster"
    (increments,) = counts.counted.values()
    assert {(i.field, i.sk) for i in increments} == {("upgrades_offered", f"{K}#poster"),
                                                    ("upgrades_offered", f"{K}#alice")}
    assert len(w.wecom.offers) == 1


def test_a_customer_is_routed_to_a_member_of_a_servicing_department() -> None:
    from tests.unit.fakes import FakeState as State

    wecom = FakeWeCom(servicers={K: {}}, departments={K: [7, 8]}, members={7: ["dora"], 8: ["mallory"]}, hidden={8})
    decisions: list[Decision] = []
    rules = parse_rules('accounts: {"*": {}}')
    engine = RoutingEngine(wecom, State(), lambda: rules, EngineSettings(trans_backoff=0), decisions.append,
                           FakeTranscript(), clock=Clock(), sleep=lambda _s: None)
    engine.handle(parse_item({"msgid": "m1", "open_kfid": K, "external_userid": "c1", "origin": 3, "msgtype": "text",
                              "text": {"content": "hi"}, "send_time": 1_800_000_000}))
    assert wecom.states[(K, "c1")] == (3, "dora")  # a member of department 7; department 8 cannot be read
    assert engine.assigner.roster(K) == {"dora": True}
