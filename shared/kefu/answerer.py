"""The AI answerer: a customer's question answered from the enterprise's knowledge file, or not
answered at all (the engine then hands the customer to a person, or says the fallback text).

In order, for one question:
1. retrieval picks the few knowledge entries that match it (kefu.knowledge); none: ``uncovered``;
2. without the account's consent to send the customer's text to the model (``send_text_to_model``)
   or without a model (the BedrockModelId parameter empty), the best entry's answer is the answer,
   word for word, and nothing leaves the stack;
3. else the model call is reserved against the caps (per customer and day, per account and day,
   the month's cost ceiling) - refused: ``capped``;
4. the model (kefu.bedrock, the Converse API) gets the matched entries and the question only, and
   must answer from those entries, citing them, or say it cannot; a late, throttled or failing
   call, or a reply that is not the agreed JSON or cites an entry it was not given, is
   ``unavailable`` or ``uncovered`` - never sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kefu.knowledge import Hit, Knowledge
from kefu.routing.rules import BotAi, KnowledgeFile

AnswerOutcome = Literal["answered", "uncovered", "capped", "unavailable"]
TEXT_LIMIT = 2048  # WeCom's text message, in UTF-8 bytes
KNOWLEDGE_MODEL = "knowledge"  # the ``model`` of an answer taken word for word from an entry

SYSTEM_PROMPT = (
    "你是企业的在线客服助手。只能依据用户消息中 <knowledge> 里的条目回答 <question> 中客户的问题，"
    "不得使用条目以外的任何信息，不得编造。回答用简体中文，简洁、礼貌，不超过 300 字。"
    "只输出一个 JSON 对象，不要输出其他文字："
    '{"answer": "给客户的回答", "sources": ["所依据条目的 id"]}。'
    "如果这些条目不能回答这个问题，或客户要求人工服务，输出 "
    '{"answer": null, "sources": []}。'
)


class ModelUnavailable(Exception):
    """The model gave no usable answer in time: slow, throttled, failing. The message says which."""


@dataclass(frozen=True)
class ModelReply:
    text: str
    input_tokens: int
    output_tokens: int
    cut: bool = False  # the answer stopped at maxTokens (never sent half-said)


class ModelPort(Protocol):
    """The model behind the answerer (kefu.bedrock.BedrockModel when deployed)."""

    @property
    def model_id(self) -> str: ...

    def converse(self, request: dict[str, Any], deadline: float) -> ModelReply: ...


class UsagePort(Protocol):
    """The caps' ledger (kefu.store.ai_usage.AiUsage)."""

    def reserve(self, open_kfid: str, euid: str, tag: str, day: str, month: str, per_customer: int, per_day: int,
                ceiling_micro_usd: int) -> str | None: ...  # None: reserved; else why not

    def spend(self, month: str, micro_usd: int) -> None: ...


@dataclass(frozen=True)
class Prices:
    """What the model costs, US dollars per million tokens (a listed price, a template parameter)."""

    input_per_mtok: float
    output_per_mtok: float

    def micro_usd(self, input_tokens: int, output_tokens: int) -> int:
        return math.ceil(input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok)


@dataclass(frozen=True)
class Answer:
    outcome: AnswerOutcome
    text: str | None = None
    sources: tuple[str, ...] = ()
    detail: str | None = None
    model: str | None = None  # the model id, or KNOWLEDGE_MODEL for an entry's answer as written
    input_tokens: int = 0
    output_tokens: int = 0

    def marks(self) -> dict[str, Any]:
        """What the conversation record keeps of an AI answer (``ai`` on Kefu's send)."""
        marks: dict[str, Any] = {"model": self.model or KNOWLEDGE_MODEL, "sources": list(self.sources)}
        if self.input_tokens or self.output_tokens:
            marks.update(input_tokens=self.input_tokens, output_tokens=self.output_tokens)
        return marks


def build_request(hits: list[Hit], question: str, max_tokens: int) -> dict[str, Any]:
    """The Converse request: the system prompt, and one user turn with the matched entries and the
    question - never the rest of the knowledge."""
    entries = "\n".join(
        f'<entry id="{hit.entry.id}">\n问：{"；".join(hit.entry.questions)}\n答：{hit.entry.answer}\n</entry>'
        for hit in hits)
    text = f"<knowledge>\n{entries}\n</knowledge>\n<question>{question}</question>"
    return {"system": [{"text": SYSTEM_PROMPT}], "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0}}


class ReplyError(ValueError):
    """The model's reply is not what the prompt asked for (and is never sent)."""


def read_reply(text: str, offered: set[str]) -> tuple[str | None, tuple[str, ...]]:
    """The answer and its sources from the model's reply; (None, ()) when it says the entries do not
    cover the question. An answer must cite at least one of the ``offered`` entries and no other."""
    body = text.strip()
    if body.startswith("```"):  # some models fence JSON even when asked not to
        body = body.strip("`").removeprefix("json").strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ReplyError("the reply is not a JSON object")
    try:
        data = json.loads(body[start:end + 1])
    except ValueError:
        raise ReplyError("the reply is not valid JSON") from None
    if not isinstance(data, dict) or "answer" not in data:
        raise ReplyError("the reply has no 'answer'")
    answer, sources = data.get("answer"), data.get("sources") or []
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return None, ()
    if not isinstance(answer, str) or not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise ReplyError("'answer' must be a string and 'sources' a list of entry ids")
    cited = tuple(dict.fromkeys(sources))
    if not cited:
        raise ReplyError("the answer cites no entry")
    invented = [s for s in cited if s not in offered]
    if invented:
        raise ReplyError(f"the answer cites entries it was not given: {', '.join(invented)}")
    answer = answer.strip()
    if len(answer.encode("utf-8")) > TEXT_LIMIT:
        raise ReplyError(f"the answer is over WeCom's {TEXT_LIMIT} bytes")
    return answer, cited


@dataclass(frozen=True)
class Question:
    open_kfid: str
    euid: str
    text: str
    tag: str  # names the question in the caps' ledger (a retried record reserves nothing new)
    day: str  # the calendar days the caps count in (the statistics' time zone)
    month: str


class Answerer:
    def __init__(self, knowledge: Callable[[KnowledgeFile], Knowledge], usage: UsagePort, model: ModelPort | None,
                 prices: Prices, monthly_budget_usd: float, max_answer_tokens: int = 500,
                 time_left: Callable[[], float] | None = None) -> None:
        self._knowledge = knowledge
        self._usage = usage
        self._model = model
        self._prices = prices
        self._ceiling = int(monthly_budget_usd * 1_000_000)
        self._max_tokens = max_answer_tokens
        self._time_left = time_left  # seconds the invocation has left (None: no limit)

    def answer(self, ai: BotAi, question: Question) -> Answer:
        try:
            knowledge = self._knowledge(ai.knowledge)
        except Exception as exc:  # a missing or broken S3 file: this customer goes to a person
            return Answer("unavailable", detail=f"knowledge {ai.knowledge.key()}: {exc}")
        found = knowledge.search(question.text, ai.top_k)
        hits = [hit for hit in found if hit.match >= ai.min_match]
        if not hits:
            best = max((hit.match for hit in found), default=0.0)
            return Answer("uncovered", detail=f"no entry matches (best match {best:.2f} < {ai.min_match})")
        if self._model is None or not ai.send_text_to_model:
            top = hits[0].entry
            why = "no model configured" if self._model is None else "send_text_to_model is off"
            return Answer("answered", top.answer, (top.id,), detail=f"entry as written ({why})", model=KNOWLEDGE_MODEL)
        deadline = ai.deadline_seconds
        if self._time_left is not None and self._time_left() < deadline + 2:  # the full wait, then time to hand off
            return Answer("unavailable", detail="too little time left in this invocation for the model's deadline")
        refused = self._usage.reserve(question.open_kfid, question.euid, question.tag, question.day, question.month,
                                      ai.per_customer_per_day, ai.per_day, self._ceiling)
        if refused:
            return Answer("capped", detail=refused)
        model = self._model.model_id
        try:
            reply = self._model.converse(build_request(hits, question.text, self._max_tokens), deadline)
        except ModelUnavailable as exc:
            return Answer("unavailable", detail=f"model {exc}", model=model)
        self._usage.spend(question.month, self._prices.micro_usd(reply.input_tokens, reply.output_tokens))

        def said(outcome: AnswerOutcome, detail: str | None, text: str | None = None,
                 sources: tuple[str, ...] = ()) -> Answer:
            return Answer(outcome, text, sources, detail, model, reply.input_tokens, reply.output_tokens)

        if reply.cut:
            return said("unavailable", "model reply cut at its token limit")
        try:
            text, sources = read_reply(reply.text, {hit.entry.id for hit in hits})
        except ReplyError as exc:
            return said("unavailable", f"model reply refused: {exc}")
        if text is None:
            return said("uncovered", "the model found no answer in the matched entries")
        return said("answered", None, text, sources)
