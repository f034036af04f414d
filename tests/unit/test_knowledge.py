"""The knowledge file (Markdown and YAML) and its retrieval: ids, errors that name the line and the
entry, the limits, and whether a customer's question finds the right entry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kefu.knowledge import (
    MAX_ANSWER_BYTES,
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    Entry,
    Knowledge,
    KnowledgeError,
    parse_knowledge,
    terms,
)

ROOT = Path(__file__).resolve().parents[2]

FAQ = """# 小店常见问题

这段介绍不是任何一条的回答。

## 多久发货 | 什么时候发货 {#shipping}

付款后 48 小时内发货。
大促期间可能延后一两天。

## 怎么退货 ｜ 可以退货吗 {#returns}

签收后 7 天内可以无理由退货，在订单里申请售后即可。

## 怎么开发票 | invoice {#invoice}

在订单详情点「申请开票」，电子发票发到您的邮箱。

## 人工客服几点上班

工作日 9:00-18:00。

## 优惠券怎么用 | 优惠券用不了 {#coupons}

结算页会自动选出可用的优惠券，每单限用一张。

## 门店地址 | 线下店在哪里 {#stores}

上海静安区青禾路 88 号。

## 积分有什么用 | 积分能抵现吗 {#points}

100 积分抵 1 元，最多抵订单金额的 30%。
"""


def faq() -> Knowledge:
    return parse_knowledge(FAQ, "faq.md")


def error(text: str, source: str = "kb.md") -> str:
    with pytest.raises(KnowledgeError) as caught:
        parse_knowledge(text, source)
    return str(caught.value)


def top(knowledge: Knowledge, question: str) -> str | None:
    hits = knowledge.search(question)
    return hits[0].entry.id if hits else None


def match_of(knowledge: Knowledge, question: str) -> float:
    hits = knowledge.search(question, k=1)
    return hits[0].match if hits else 0.0


# -- Markdown ----------------------------------------------------------------------------------------

def test_markdown_headings_are_entries_with_alternatives_ids_and_answers() -> None:
    knowledge = faq()
    assert [e.id for e in knowledge.entries] == ["shipping", "returns", "invoice", "人工客服几点上班", "coupons", "stores",
                                                 "points"]
    shipping = knowledge.entries[0]
    assert shipping == Entry("shipping", ("多久发货", "什么时候发货"), "付款后 48 小时内发货。\n大促期间可能延后一两天。")
    assert knowledge.entries[1].questions == ("怎么退货", "可以退货吗")  # the full-width bar separates too
    assert knowledge.get("invoice") is knowledge.entries[2]
    assert knowledge.get("nope") is None
    assert len(knowledge) == 7
    assert all("介绍" not in e.answer for e in knowledge.entries)  # text before the first "## " is ignored


def test_markdown_answer_runs_to_the_next_level_one_or_two_heading_and_keeps_deeper_headings() -> None:
    text = ("## 保修多久\n\n一年。\n\n### 例外\n\n人为损坏不保修。\n```\n## 这不是标题\n```\n"
            "# 第二部分\n\n不属于任何回答。\n\n## 换货\n换一次。\n")
    first, second = parse_knowledge(text, "kb.md").entries
    assert first.answer == "一年。\n\n### 例外\n\n人为损坏不保修。\n```\n## 这不是标题\n```"
    assert second == Entry("换货", ("换货",), "换一次。")


def test_markdown_closing_hashes_and_an_unclosed_fence() -> None:
    knowledge = parse_knowledge("## 发货 ##\n两天。\n\n## 退货 {#returns} ##\n七天。\n```\n未闭合的代码\n", "kb.md")
    assert knowledge.entries == (Entry("发货", ("发货",), "两天。"), Entry("returns", ("退货",), "七天。\n```\n未闭合的代码"))


def test_markdown_accepts_a_byte_order_mark_and_windows_line_ends() -> None:
    knowledge = parse_knowledge("\ufeff## 发货 {#a}\r\n两天内。\r\n", "KB.MD")
    assert knowledge.entries == (Entry("a", ("发货",), "两天内。"),)


# -- YAML --------------------------------------------------------------------------------------------

def test_yaml_entries_with_a_question_or_a_list_and_an_optional_id() -> None:
    text = ("entries:\n"
            "  - q: 多久发货\n    a: 两天内。\n"
            "  - q: [怎么退货, 可以退货吗]\n    a: |\n      七天内。\n      在订单里申请。\n    id: returns\n"
            "  - {q: 保修, a: 一年, id: 404}\n")
    knowledge = parse_knowledge(text, "kb.yaml")
    assert knowledge.entries == (Entry("多久发货", ("多久发货",), "两天内。"),
                                 Entry("returns", ("怎么退货", "可以退货吗"), "七天内。\n在订单里申请。"),
                                 Entry("404", ("保修",), "一年"))


def test_json_and_yml_are_read_as_yaml() -> None:
    text = '{"entries": [{"q": ["发票", "invoice"], "a": "可以开。", "id": "invoice"}]}'
    assert parse_knowledge(text, "kb.json").entries == (Entry("invoice", ("发票", "invoice"), "可以开。"),)
    assert parse_knowledge("entries:\n  - {q: 发票, a: 可以开。}\n", "kb.yml").get("发票") is not None


@pytest.mark.parametrize(("text", "line", "words"), [
    ("entries:\n  - q: 发货\n    a: 两天\n    answer: 三天\n", 4, ["entry \"发货\"", "unknown key 'answer'", "q, a, id"]),
    ("entries:\n  - q: 发货\n", 2, ["entry \"发货\"", "a (the answer) is missing"]),
    ("entries:\n  - a: 两天\n", 2, ["q (the question", "missing"]),
    ("entries:\n  - q: 发货\n    a: 两天\n  - q: [发货, 1]\n    a: 三天\n", 4, ["q must be"]),
    ("entries:\n  - q: 发货\n    a: [两天]\n", 3, ["a (the answer) must be text"]),
    ("entries:\n  - q: 发货\n    a: 两天\n    id: [x]\n", 4, ["id must be text"]),
    ("entries:\n  - just a string\n", 2, ["an entry is a mapping"]),
    ("entries:\n  - q: 发货\n    a: 两天\nextra: 1\n", 4, ["unknown key 'extra'"]),
    ("entries: {q: 发货}\n", 1, ["entries must be a list"]),
    ("- q: 发货\n", 1, ["a mapping with entries"]),
    ("entries:\n  - q: 发货\n    a:\n", 2, ["the answer is empty"]),
    ("entries:\n  - q:\n    a: 两天\n", 2, ["the question is empty"]),
])
def test_yaml_errors_name_the_line_and_what_is_wrong(text: str, line: int, words: list[str]) -> None:
    message = error(text, "config/knowledge.yaml")
    assert message.startswith(f"config/knowledge.yaml line {line}:"), message
    for word in words:
        assert word in message, message


def test_invalid_yaml_and_duplicate_keys_name_the_file() -> None:
    assert error("entries: [\n", "kb.yaml").startswith("kb.yaml: not valid YAML")
    message = error("entries:\n  - q: a\n    q: b\n    a: c\n", "kb.yaml")
    assert message.startswith("kb.yaml line 3:") and "duplicate key 'q'" in message


def test_the_format_comes_from_the_suffix() -> None:
    message = error("## 发货\n两天。\n", "knowledge.txt")
    assert message.startswith("knowledge.txt: unknown format") and ".md" in message and ".yaml" in message
    assert "unknown format" in error("## 发货\n两天。\n", "knowledge")


# -- ids -----------------------------------------------------------------------------------------------

def test_a_derived_id_is_the_first_question_with_spaces_collapsed_and_cut_to_64_characters() -> None:
    long = "很" * 70 + "长的问题"
    knowledge = parse_knowledge(f"## How   do I\tpay | 怎么付款\n微信。\n\n## {long}\n是的。\n", "kb.md")
    assert [e.id for e in knowledge.entries] == ["How do I pay", "很" * 64]
    assert knowledge.entries[0].questions == ("How   do I\tpay", "怎么付款")  # the questions stay as written


def test_a_duplicate_id_names_both_lines() -> None:
    message = error("## 发货 {#ship}\n两天。\n\n## 多久到 {#ship}\n三天。\n")
    assert message.startswith("kb.md line 4: entry \"ship\":") and "line 1" in message
    message = error("## 发货\n两天。\n\n## 发货 | 多久发\n三天。\n")
    assert message.startswith("kb.md line 4:") and "already" in message and "line 1" in message
    message = error("entries:\n  - {q: 发货, a: 两天}\n  - {q: 多久, a: 三天, id: 发货}\n", "kb.yaml")
    assert message.startswith("kb.yaml line 3:") and "line 2" in message


@pytest.mark.parametrize("bad", ['a"b', "a<b", "a>b"])
def test_ids_may_not_hold_quotes_or_angle_brackets(bad: str) -> None:
    message = error(f"## 发货 {{#{bad}}}\n两天。\n")
    assert message.startswith(f'kb.md line 1: entry "{bad}":') and '<entry id="...">' in message
    message = error(f"## 发货\n两天。\n\n## 什么是{bad}\n是的。\n")  # derived from the question: a hint to name it
    assert message.startswith("kb.md line 4:") and "{#some-id}" in message
    message = error(f"entries:\n  - {{q: 发货, a: 两天, id: '{bad}'}}\n", "kb.yaml")
    assert message.startswith("kb.yaml line 2:")


def test_an_id_with_a_line_break_an_empty_id_and_a_long_id_are_refused() -> None:
    assert "may not contain" in error("entries:\n  - {q: 发货, a: 两天, id: \"a\\nb\"}\n", "kb.yaml")
    assert "may not contain" in error('entries:\n  - {q: 发货, a: 两天, id: "a\\u2028b"}\n', "kb.yaml")  # U+2028
    assert "the id is empty" in error("## 发货 {#}\n两天。\n")
    message = error(f"## 发货 {{#{'x' * 65}}}\n两天。\n")
    assert "65 characters" in message and "64" in message
    assert parse_knowledge(f"## 发货 {{#{'x' * 64}}}\n两天。\n", "kb.md").entries[0].id == "x" * 64


# -- errors and limits ---------------------------------------------------------------------------

def test_an_empty_answer_names_the_file_the_line_and_the_entry() -> None:
    text = "# 标题\n\n## 多久发货\n两天。\n\n## 发货时间\n\n\n## 退货\n七天。\n"
    assert error(text, "config/knowledge.md") == 'config/knowledge.md line 6: entry "发货时间": the answer is empty'


def test_an_empty_question_is_refused() -> None:
    assert error("## 发货\n两天。\n\n## \n三天。\n").startswith("kb.md line 4:")
    assert "the question is empty" in error("## {#ship}\n两天。\n")
    message = error("## 发货 |  | 多久发 {#ship}\n两天。\n")
    assert message.startswith('kb.md line 1: entry "ship":') and "one of its questions is empty" in message


def test_an_answer_may_take_2000_utf8_bytes_and_no_more() -> None:
    fits = "好" * (MAX_ANSWER_BYTES // 3) + "ab"  # 3 bytes a character: 1998 + 2
    assert parse_knowledge(f"## 问题\n{fits}\n", "kb.md").entries[0].answer == fits
    message = error(f"## 问题\n{fits}c\n")
    assert message.startswith('kb.md line 1: entry "问题":') and "2001 bytes" in message and "2048" in message


def test_at_most_5000_entries() -> None:
    many = "".join(f"## 问题{i}\n回答。\n" for i in range(MAX_ENTRIES))
    assert len(parse_knowledge(many, "kb.md")) == MAX_ENTRIES
    message = error(many + "## 多一条\n回答。\n")
    assert message.startswith(f'kb.md line {2 * MAX_ENTRIES + 1}: entry "多一条":') and "5000" in message


def test_a_file_over_2_mib_is_refused() -> None:
    big = "## 问题\n回答。\n" + "x" * MAX_FILE_BYTES
    message = error(big)
    assert message.startswith("kb.md: the file is") and "2 MiB" in message


@pytest.mark.parametrize(("text", "source"), [("# 只有标题\n\n介绍。\n", "kb.md"), ("", "kb.md"), ("entries: []\n", "kb.yaml")])
def test_a_file_without_entries_is_refused(text: str, source: str) -> None:
    assert error(text, source).startswith(f"{source}: no entries")


def test_the_digest_is_the_sha256_of_the_text() -> None:
    assert faq().digest == hashlib.sha256(FAQ.encode("utf-8")).hexdigest()
    assert parse_knowledge(FAQ + "\n", "faq.md").digest != faq().digest


def test_the_example_file_is_valid() -> None:
    knowledge = parse_knowledge((ROOT / "config" / "knowledge.md").read_text(encoding="utf-8"), "config/knowledge.md")
    assert 15 <= len(knowledge) <= 30
    assert knowledge.get("shipping-time") is not None and knowledge.get("human-hours") is not None
    assert sum(len(e.questions) > 1 for e in knowledge.entries) >= 5
    assert top(knowledge, "请问你们多久发货呀") == "shipping-time"
    assert top(knowledge, "人工客服几点下班") == "human-hours"


# -- terms ---------------------------------------------------------------------------------------------

def test_terms_are_bigrams_of_chinese_and_words_of_latin_without_stop_words() -> None:
    assert terms("请问你们多久发货呀") == ["多久", "久发", "发货"]
    assert terms("你们老板是谁？") == ["老板"]
    assert terms("店") == ["店"]  # a lone character stands for itself
    assert terms("的吗") == [] and terms("这个") == [] and terms("没有") == []  # only stop characters
    assert terms("Can I get an INVOICE?") == ["invoice"]
    assert terms("ＩＮＶＯＩＣＥ １２３") == ["invoice", "123"]  # NFKC and case folding
    assert terms("发票invoice") == ["发票", "invoice"]
    assert terms("…！？、。 ,.") == []


# -- retrieval -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("question", "expected"), [
    ("请问你们多久发货呀", "shipping"),
    ("下单以后几天发货？", "shipping"),
    ("东西不喜欢可以退吗", "returns"),
    ("退货怎么操作", "returns"),
    ("能开发票吗", "invoice"),
    ("客服什么时候上班", "人工客服几点上班"),
    ("优惠券为什么用不了", "coupons"),
    ("你们线下店在什么地方", "stores"),
    ("积分可以抵钱吗", "points"),
])
def test_paraphrases_find_the_right_entry_first(question: str, expected: str) -> None:
    assert top(faq(), question) == expected


def test_unrelated_questions_get_a_low_match() -> None:
    knowledge = faq()
    related = [match_of(knowledge, q) for q in ("请问你们多久发货呀", "优惠券用不了怎么办", "能开发票吗", "门店在哪里")]
    unrelated = [match_of(knowledge, q) for q in ("你们老板是谁", "今天天气怎么样", "帮我写一首诗", "推荐一部电影")]
    assert min(related) >= 0.6
    assert max(unrelated) < 0.3
    assert max(unrelated) <= min(related) / 2


def test_latin_and_mixed_questions() -> None:
    knowledge = faq()
    assert top(knowledge, "invoice") == "invoice"
    assert top(knowledge, "Can I get an Invoice?") == "invoice"
    hit = knowledge.search("发票 invoice")[0]
    assert hit.entry.id == "invoice" and hit.match == 1.0
    assert knowledge.search("refund policy") == []


def test_a_lone_character_of_the_question_finds_the_words_that_hold_it() -> None:
    knowledge = faq()
    assert terms("可以退吗") == ["退"]  # 可以 and 吗 are cut: 退 alone is left
    hit = knowledge.search("可以退吗")[0]
    assert hit.entry.id == "returns" and hit.match == 1.0  # 退 is in 退货
    assert knowledge.search("东西不喜欢可以退吗")[0].entry.id == "returns"


def test_hits_are_best_first_with_score_and_match() -> None:
    hits = faq().search("优惠券用不了", k=7)
    assert hits[0].entry.id == "coupons" and hits[0].match == 1.0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.score > 0 and 0 < h.match <= 1 for h in hits)


def test_k_limits_the_hits_and_only_entries_sharing_a_term_are_hits() -> None:
    knowledge = faq()
    assert len(knowledge.search("发货 退货 发票 积分", k=2)) == 2
    assert len(knowledge.search("发货 退货 发票 积分")) == 3
    assert {h.entry.id for h in knowledge.search("发货 退货 发票 积分", k=10)} >= {"shipping", "returns", "invoice", "points"}
    assert knowledge.search("发货", k=0) == []
    assert [h.entry.id for h in knowledge.search("发票", k=50)] == ["invoice"]


@pytest.mark.parametrize("question", ["", "   ", "？！。", "请问你们是吗", "the a is"])
def test_an_empty_question_or_one_of_stop_words_has_no_hits(question: str) -> None:
    assert faq().search(question) == []


def test_ties_are_broken_by_file_order() -> None:
    text = "## 发货 {#y}\n两天。\n\n## 发货时间 {#t}\n两天。\n\n## 发货 {#x}\n两天。\n"
    hits = parse_knowledge(text, "kb.md").search("发货", k=3)
    assert hits[0].score == hits[1].score
    assert [h.entry.id for h in hits[:2]] == ["y", "x"]


def test_the_index_is_built_by_the_first_search_only() -> None:
    knowledge = faq()
    assert not knowledge.indexed
    knowledge.get("shipping")
    assert not knowledge.search("")  # nothing to look up: no index needed
    assert not knowledge.indexed
    knowledge.search("发货")
    assert knowledge.indexed
