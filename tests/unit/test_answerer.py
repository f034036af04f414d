"""The AI answerer's pure parts (kefu.answerer) and its place in the routing engine, on in-memory
ports: the prompt holds only the matched entries, replies are held to the entries they were given,
every way of not answering goes to a person or the fallback, a retry re-sends the first answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kefu.answerer import (
    Answerer,
    ModelReply,
    ModelUnavailable,
    Prices,
    Question,
    ReplyError,
    build_request,
    read_reply,
)
from kefu.knowledge import Knowledge, parse_knowledge
from kefu.routing.assigner import EngineSettings
from kefu.routing.engine import RoutingEngine
from kefu.routing.outcome import Decision, Outcome
from kefu.routing.rules import BotAi, KnowledgeFile, RulesError, parse_rules
from kefu.wecom.errors import WeComError
from kefu.wecom.models import parse_item
from tests.unit.fakes import Clock, FakeState, FakeTranscript, FakeWeCom

KNOWLEDGE = parse_knowledge("""# FAQ
## 多久发货 | 什么时候发货 {#shipping}
下单后 48 小时内发货。
## 怎么退货 {#returns}
签收 7 天内可申请退货。
## 可以开发票吗 {#invoice}
可以，在订单页申请。
## 支持哪些支付方式 {#payment}
微信支付和银行卡。
""", "faq.md")
AI = BotAi(knowledge=KnowledgeFile(path="faq.md"), send_text_to_model=True)
Q = Question("wkA", "c1", "请问多久发货", "tag1", "2026-12-02", "2026-12")


class FakeModel:
    model_id = "amazon.nova-lite-v1:0"

    def __init__(self, reply: str | Exception = '{"answer": "48 小时内发货。", "sources": ["shipping"]}',
                 cut: bool = False) -> None:
        self.reply, self.cut = reply, cut
        self.requests: list[dict[str, Any]] = []

    def converse(self, request: dict[str, Any], deadline: float) -> ModelReply:
        self.requests.append(request)
        if isinstance(self.reply, Exception):
            raise self.reply
        return ModelReply(self.reply, 120, 30, cut=self.cut)


class FakeUsage:
    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.reserved: list[str] = []
        self.spent = 0

    def reserve(self, open_kfid: str, euid: str, tag: str, day: str, month: str, per_customer: int, per_day: int,
                ceiling_micro_usd: int) -> str | None:
        if self.refuse:
            return self.refuse
        self.reserved.append(tag)
        return None

    def spend(self, month: str, micro_usd: int) -> None:
        self.spent += micro_usd


def answerer(model: FakeModel | None = None, usage: FakeUsage | None = None,
             knowledge: Knowledge = KNOWLEDGE, time_left: float | None = None) -> Answerer:
    return Answerer(lambda _ref: knowledge, usage or FakeUsage(), model, Prices(0.06, 0.24), 10,
                    time_left=None if time_left is None else (lambda: time_left))


# -- the prompt and the reply --------------------------------------------------------------------

def test_the_request_carries_the_matched_entries_and_the_question_only() -> None:
    hits = KNOWLEDGE.search("请问多久发货", 3)
    request = build_request(hits[:1], "请问多久发货", 400)
    text = request["messages"][0]["content"][0]["text"]
    assert '<entry id="shipping">' in text and "<question>请问多久发货</question>" in text
    assert "returns" not in text and "微信支付" not in text
    assert request["inferenceConfig"] == {"maxTokens": 400, "temperature": 0}
    assert "JSON" in request["system"][0]["text"]


def test_a_reply_is_read_with_its_sources() -> None:
    assert read_reply('{"answer": " 两天内 ", "sources": ["shipping", "shipping"]}', {"shipping"}) == (
        "两天内", ("shipping",))
    assert read_reply('```json\n{"answer": "好", "sources": ["a"]}\n```', {"a"}) == ("好", ("a",))
    assert read_reply('{"answer": null, "sources": []}', {"a"}) == (None, ())
    assert read_reply('{"answer": "  "}', {"a"}) == (None, ())


@pytest.mark.parametrize("reply, why", [
    ("当然可以！", "not a JSON object"),
    ("{not json}", "not valid JSON"),
    ('{"text": "x"}', "no 'answer'"),
    ('{"answer": "x", "sources": []}', "cites no entry"),
    ('{"answer": "x", "sources": ["crypto"]}', "not given: crypto"),
    ('{"answer": 3, "sources": ["a"]}', "must be a string"),
    (json.dumps({"answer": "长" * 700, "sources": ["a"]}), "2048 bytes"),
])
def test_a_reply_out_of_bounds_is_refused(reply: str, why: str) -> None:
    with pytest.raises(ReplyError, match=why):
        read_reply(reply, {"a"})


# -- the answerer --------------------------------------------------------------------------------

def test_a_covered_question_is_answered_and_paid_for() -> None:
    model, usage = FakeModel(), FakeUsage()
    answer = answerer(model, usage).answer(AI, Q)
    assert (answer.outcome, answer.text, answer.sources) == ("answered", "48 小时内发货。", ("shipping",))
    assert answer.marks() == {"model": "amazon.nova-lite-v1:0", "sources": ["shipping"], "input_tokens": 120,
                              "output_tokens": 30}
    assert usage.reserved == ["tag1"] and usage.spent == 15  # 120 * 0.06 + 30 * 0.24 micro-dollars, rounded up
    assert len(model.requests) == 1


def test_an_uncovered_question_never_reaches_the_model() -> None:
    model = FakeModel()
    answer = answerer(model).answer(AI, Question("wkA", "c1", "今天天气怎么样", "t", "d", "m"))
    assert answer.outcome == "uncovered" and model.requests == []


def test_without_consent_or_model_the_best_entry_is_sent_as_written() -> None:
    model = FakeModel()
    no_consent = answerer(model).answer(BotAi(knowledge=KnowledgeFile(path="faq.md")), Q)
    assert (no_consent.outcome, no_consent.text, no_consent.model) == ("answered", "下单后 48 小时内发货。", "knowledge")
    assert model.requests == []
    assert answerer(None).answer(AI, Q).model == "knowledge"


@pytest.mark.parametrize("reply, outcome, detail", [
    (ModelUnavailable("throttled"), "unavailable", "model throttled"),
    ('{"answer": null, "sources": []}', "uncovered", "no answer in the matched entries"),
    ('{"answer": "编的", "sources": ["crypto"]}', "unavailable", "not given"),
])
def test_no_usable_reply_is_no_answer(reply: str | Exception, outcome: str, detail: str) -> None:
    answer = answerer(FakeModel(reply)).answer(AI, Q)
    assert answer.outcome == outcome and detail in str(answer.detail) and answer.text is None


def test_a_reply_cut_at_the_token_limit_is_not_sent_but_paid_for() -> None:
    usage = FakeUsage()
    answer = answerer(FakeModel(cut=True), usage).answer(AI, Q)
    assert answer.outcome == "unavailable" and usage.spent > 0


def test_a_cap_stops_the_call() -> None:
    model = FakeModel()
    answer = answerer(model, FakeUsage(refuse="the customer's 10 model calls of the day are used")).answer(AI, Q)
    assert answer.outcome == "capped" and model.requests == []


def test_too_little_time_left_in_the_invocation_is_no_call() -> None:
    model = FakeModel()
    assert answerer(model, time_left=2.5).answer(AI, Q).outcome == "unavailable"
    assert model.requests == []


def test_a_broken_knowledge_file_is_no_answer() -> None:
    def broken(_ref: KnowledgeFile) -> Knowledge:
        raise OSError("no such file")

    answer = Answerer(broken, FakeUsage(), FakeModel(), Prices(0, 0), 10).answer(AI, Q)
    assert answer.outcome == "unavailable" and "no such file" in str(answer.detail)


# -- rules ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ai, why", [
    ("{knowledge: faq.txt}", "a knowledge file is Markdown"),
    ("{knowledge: {s3: assets/faq.md}}", "starts with 'knowledge/'"),
    ("{knowledge: {s3: knowledge/faq.md}, otherwise: fallback}", "needs the fallback text"),
    ("{knowledge: {s3: knowledge/faq.md}, top_k: 20}", "top_k"),
])
def test_bad_ai_rules_are_refused_with_the_key(ai: str, why: str) -> None:
    with pytest.raises(RulesError, match=why):
        parse_rules(f'accounts: {{"*": {{bot: {{handoff_keywords: [人工], ai: {ai}}}}}}}', "rules.yaml")


def test_ai_needs_a_way_to_a_person() -> None:
    with pytest.raises(RulesError, match="handoff_keywords"):
        parse_rules('accounts: {"*": {bot: {ai: {knowledge: {s3: knowledge/faq.md}}}}}', "rules.yaml")


def test_a_knowledge_file_beside_the_rules_is_checked_at_load(tmp_path: Any) -> None:
    rules = 'accounts: {"*": {bot: {handoff_keywords: [人工], ai: {knowledge: faq.md}}}}'
    with pytest.raises(RulesError, match="no file faq.md"):
        parse_rules(rules, "rules.yaml", base_dir=tmp_path)
    (tmp_path / "faq.md").write_text("## 问题\n", encoding="utf-8")
    with pytest.raises(RulesError, match="answer"):
        parse_rules(rules, "rules.yaml", base_dir=tmp_path)
    (tmp_path / "faq.md").write_text("## 问题\n回答\n", encoding="utf-8")
    assert parse_rules(rules, "rules.yaml", base_dir=tmp_path).policy("wk").bot.ai is not None


# -- in the engine -------------------------------------------------------------------------------

K = "wkAIENGINE".ljust(32, "0")
RULES = parse_rules("""
timezone: Asia/Shanghai
accounts:
  "*":
    bot:
      handoff_keywords: ["人工"]
      ai: {knowledge: {s3: knowledge/faq.md}, send_text_to_model: true}
    scenes:
      fb:
        bot:
          handoff_keywords: ["人工"]
          ai: {knowledge: {s3: knowledge/faq.md}, send_text_to_model: true, otherwise: fallback, fallback: "稍后答复您"}
""")


class World:
    def __init__(self, model: FakeModel, usage: FakeUsage | None = None) -> None:
        self.clock = Clock()
        self.wecom = FakeWeCom(servicers={K: {"alice": True}})
        self.state = FakeState()
        self.decisions: list[Decision] = []
        self.transcript = FakeTranscript()
        self.model = model
        self.engine = RoutingEngine(self.wecom, self.state, lambda: RULES, EngineSettings(trans_backoff=0),
                                    self.decisions.append, self.transcript, clock=self.clock, sleep=lambda _s: None,
                                    answerer=answerer(model, usage))
        self.n = 0

    def says(self, euid: str, text: str, msgid: str | None = None, ago: int = 0) -> None:
        self.n += 1
        self.engine.handle(parse_item({"msgid": msgid or f"m{self.n}", "open_kfid": K, "external_userid": euid,
                                       "send_time": int(self.clock.now) - ago, "origin": 3, "msgtype": "text",
                                       "text": {"content": text}}))

    def texts(self) -> list[str]:
        return [s["message"]["text"]["content"] for s in self.transcript.sent()]


def test_the_answer_is_sent_and_recorded_as_ai() -> None:
    w = World(FakeModel())
    w.says("c1", "多久发货")
    assert w.texts() == ["48 小时内发货。"]
    [record] = w.transcript.records.values()
    assert record["ai"]["sources"] == ["shipping"] and record["rule"] == "bot ai"
    assert w.wecom.states.get((K, "c1"), (1, None))[0] == 1


def test_no_answer_hands_off() -> None:
    w = World(FakeModel(ModelUnavailable("gave no answer within 6.0 s")))
    w.says("c1", "多久发货")
    assert w.wecom.states[(K, "c1")] == (3, "alice") and w.texts() == []
    assert [d.outcome for d in w.decisions if d.rule.startswith("bot ai unavailable: hand-off")] == [Outcome.ASSIGNED]


def test_no_answer_says_the_fallback_where_the_rules_say_so() -> None:
    w = World(FakeModel('{"answer": null, "sources": []}'))
    w.state.sessions.update(K, "c1", {"scene": "fb"})
    w.says("c1", "多久发货")
    assert w.texts() == ["稍后答复您"]


def test_a_retried_record_sends_the_recorded_answer_without_asking_again() -> None:
    model = FakeModel()
    w = World(model)
    w.wecom.fail("kf/send_msg", WeComError("kf/send_msg", -1, "system busy", 200))
    with pytest.raises(WeComError):
        w.says("c1", "多久发货", msgid="q1")  # the send's answer was lost: the record is retried
    model.reply = '{"answer": "另一个回答", "sources": ["shipping"]}'
    w.says("c1", "多久发货", msgid="q1")
    assert len(model.requests) == 1
    assert w.texts() == ["48 小时内发货。"]


def test_a_customer_with_no_send_left_goes_to_a_person() -> None:
    w = World(FakeModel())
    w.says("c1", "多久发货")
    w.state.sessions.update(K, "c1", {"sends": 5})  # the window's five sends are used
    w.says("c1", "怎么退货", ago=10)  # written before the last one (a late copy): it opens no window
    assert w.texts() == ["48 小时内发货。"]
    assert w.wecom.states[(K, "c1")] == (3, "alice")
