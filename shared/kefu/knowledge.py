"""The enterprise's own FAQ, for an answerer that replies to customers from it: the knowledge file
(Markdown or YAML), checked at load with errors that name the file, the line and the entry, and a
small BM25 index over it that works for Chinese without a word segmenter.

Markdown (``.md``): every ``## `` heading is one entry. The heading holds the question, other ways
to ask it separated by ``|`` (or the full-width ``｜``), and optionally an explicit id at its end:
``## 多久发货 | 什么时候发货 {#shipping}``. The text below it, up to the next heading of level 1 or 2,
is the answer (``###`` headings inside it are answer text). Anything before the first ``## `` is
ignored.

YAML (``.yaml``, ``.yml``; JSON is read as YAML): ``entries:`` is a list of mappings with ``q`` (a
question or a list of them), ``a`` (the answer) and optionally ``id``.

An entry's id is its explicit one, else its first question (spaces collapsed, cut to 64
characters). Ids are unique and go into the answerer's prompt as ``<entry id="...">``.

Retrieval: text is normalised (NFKC, case-folded) and cut into runs of CJK characters and runs of
letters/digits. Function words and particles (的, 吗, 请问, 你们, 怎么, "the", "is", ...) are cut
out of the runs; what is left of a CJK run gives its character bigrams (a lone character stands
for itself), a Latin run gives its word. An entry is also indexed by its single characters, which
only a question's lone character looks up (退 in 可以退吗 finds 退货). Entries are ranked by Okapi
BM25 over their questions (counted twice) and answer; each hit also carries ``match``, the share of
the question's terms the entry contains, which tells whether the knowledge covers the question at
all. The index is built by the first search, so loading the file at a cold start costs only the
parse.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_ENTRIES = 5000
MAX_ANSWER_BYTES = 2000  # a WeCom text takes 2048 bytes; the answer may be sent as it is
MAX_ID_CHARS = 64
QUESTION_WEIGHT = 2  # an entry's questions count this many times against its answer's once
K1 = 1.2
B = 0.75

_ID_FORBIDDEN = re.compile('["<>\n\r\v\f\x1c-\x1e\x85\u2028\u2029]')  # the prompt's quoting, line breaks
_EXPLICIT_ID = re.compile(r"\{#([^{}]*)\}\s*$")
_HEADING = re.compile(r"^ {0,3}(#{1,2})(?:[ \t]+(.*?))?[ \t]*$")  # "# x" or "## x"; never "### x"
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")  # "## 问题 ##" is "## 问题"
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_ALTERNATIVES = re.compile(r"[|｜]")

# -- terms -------------------------------------------------------------------------------------------

# CJK ideographs (with their extensions and compatibility forms), kana and hangul.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff"
# Characters that never belong to a content word in a customer's question: they split a CJK run.
_BREAKS = "的了吗嘛呢啊呀吧哦呗啦么是我你您他她它们"
# Function words cut out of a CJK run (the longest first, so 怎么样 goes before 怎么).
_STOP_WORDS = (
    "可不可以", "有没有", "能不能", "是不是", "为什么", "怎么样", "怎么办", "请问", "请教", "想问", "怎么", "怎样", "什么",
    "如何", "为何", "可以", "能否", "是否", "一下", "这个", "那个", "哪个", "哪里", "哪儿", "哪些", "知道", "想要", "需要",
    "谢谢", "你好", "您好", "麻烦", "一般", "大概", "还有", "就是", "但是", "然后", "已经", "这样", "那样", "应该",
)
# Characters too common to be a term alone; a bigram made only of them is no term either (没有, 这个).
_STOP_CHARS = frozenset("请问在和与及或就都也还要会能想这那个一下怎什哪谁啥有没给把被让对从到去来不嗯呢吗吧啊")
_STOP_LATIN = frozenset(
    "a an the is are was were be been am to of in on at for and or it its this that these those i you we he she they me "
    "my your our us do does did can could would should will how what when where which who why please with by from about "
    "as if so not no any there here have has had get hi hello thanks thank".split()
)


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(runs of CJK | runs of other letters and digits, what cuts a CJK run, a stop character, two
    in a row): compiled by the first search, not at import (the CJK ranges take milliseconds)."""
    stop = f"[{''.join(sorted(_STOP_CHARS))}]"
    return (re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+)"),
            re.compile("|".join([*sorted(_STOP_WORDS, key=len, reverse=True), f"[{_BREAKS}]"])),
            re.compile(stop), re.compile(stop * 2))


def terms(text: str) -> list[str]:
    """The retrieval terms of ``text``, in order, repeats kept."""
    return _terms(text)[0]


def _terms(text: str) -> tuple[list[str], str]:
    """The terms of ``text``, and the characters (other than stop characters) of its CJK pieces
    that gave bigrams: an entry is also indexed by those, so that a question's lone character
    (退 in 可以退吗) finds the entries that use it in a word (退货)."""
    runs, cut, stop, stop_pair = _patterns()
    out: list[str] = []
    chars: list[str] = []
    for found in runs.finditer(unicodedata.normalize("NFKC", text).casefold()):
        latin = found.group(2)
        if latin is not None:
            if latin not in _STOP_LATIN:
                out.append(latin)
            continue
        for piece in cut.split(found.group(1)):
            if len(piece) == 1:
                if piece not in _STOP_CHARS:
                    out.append(piece)
            elif piece:
                pairs = [piece[i:i + 2] for i in range(len(piece) - 1)]
                if stop_pair.search(piece):  # rare: leave out the bigrams made only of stop characters
                    pairs = [pair for pair in pairs if pair[0] not in _STOP_CHARS or pair[1] not in _STOP_CHARS]
                out += pairs
                chars.append(stop.sub("", piece))
    return out, "".join(chars)


# -- the knowledge -----------------------------------------------------------------------------------

class KnowledgeError(ValueError):
    """The knowledge file is invalid; the message names the file, the line and the entry at fault."""


@dataclass(frozen=True)
class Entry:
    id: str
    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float  # BM25: only comparable between hits of one search
    match: float  # 0..1: the share of the question's terms that the entry contains


class Knowledge:
    """The entries of one knowledge file, found by id or searched by a customer's question."""

    def __init__(self, entries: Iterable[Entry], digest: str = "") -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.digest = digest  # sha256 hex of the file's text, for caching what depends on it
        self._by_id = {entry.id: entry for entry in self.entries}
        # Built by the first search: term -> [(entry index, weighted count)], and per entry BM25's
        # length normalisation, k1 * (1 - b + b * length / average length).
        self._postings: dict[str, list[tuple[int, int]]] | None = None
        self._norms: list[float] = []

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> Entry | None:
        return self._by_id.get(entry_id)

    @property
    def indexed(self) -> bool:
        """Whether the search index has been built (it is, by the first search)."""
        return self._postings is not None

    def _index(self) -> dict[str, list[tuple[int, int]]]:
        if self._postings is None:
            postings: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
            lengths: list[int] = []
            for index, entry in enumerate(self.entries):
                tokens: list[str] = []
                length = 0  # of the terms only: the characters are a fallback
                for text, weight in [*((q, QUESTION_WEIGHT) for q in entry.questions), (entry.answer, 1)]:
                    found, chars = _terms(text)
                    length += len(found) * weight
                    found += chars  # a str: one token per character
                    tokens += found * weight
                for term, count in Counter(tokens).items():
                    postings[term].append((index, count))
                lengths.append(length)
            average = sum(lengths) / len(lengths) if lengths and sum(lengths) else 1.0
            self._norms = [K1 * (1 - B + B * length / average) for length in lengths]
            self._postings = dict(postings)
        return self._postings

    def search(self, question: str, k: int = 3) -> list[Hit]:
        """The ``k`` entries that best answer ``question``, best first (ties in file order); only
        entries that share a term with it."""
        wanted = list(dict.fromkeys(terms(question)))
        if k <= 0 or not wanted or not self.entries:
            return []
        postings = self._index()
        norms = self._norms
        count = len(self.entries)
        scores: dict[int, float] = {}
        matched: dict[int, int] = {}
        for term in wanted:
            found = postings.get(term)
            if not found:
                continue
            idf = math.log(1 + (count - len(found) + 0.5) / (len(found) + 0.5))
            for index, tf in found:
                scores[index] = scores.get(index, 0.0) + idf * tf * (K1 + 1) / (tf + norms[index])
                matched[index] = matched.get(index, 0) + 1
        best = sorted((index for index in scores if scores[index] > 0), key=lambda index: (-scores[index], index))[:k]
        return [Hit(self.entries[index], scores[index], matched[index] / len(wanted)) for index in best]


# -- parsing -----------------------------------------------------------------------------------------

def read_file(path: str) -> Knowledge:
    """The knowledge file at ``path``, parsed once per version of the file: the rules' check at
    start and the answerer's first question share one parse."""
    stat = os.stat(path)
    return _read_file(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_file(path: str, _mtime_ns: int, _size: int) -> Knowledge:
    with open(path, encoding="utf-8") as handle:
        return parse_knowledge(handle.read(), path)


def parse_knowledge(text: str, source: str) -> Knowledge:
    """The knowledge in ``text``; ``source`` (the file's name) picks the format by its suffix and
    names the file in errors."""
    data = text.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise KnowledgeError(f"{source}: the file is {len(data)} bytes, over the limit of {MAX_FILE_BYTES} (2 MiB)")
    suffix = source.lower()
    body = text.removeprefix("\ufeff")
    if suffix.endswith(".md"):
        raw = _markdown(body)
    elif suffix.endswith((".yaml", ".yml", ".json")):
        raw = _yaml(body, source)
    else:
        raise KnowledgeError(f"{source}: unknown format; a knowledge file is Markdown (.md) or YAML (.yaml, .yml, .json)")
    return Knowledge(_checked(raw, source), hashlib.sha256(data).hexdigest())


@dataclass
class _Raw:
    """An entry as read, before the checks."""

    line: int  # its heading's or list item's line (0: unknown)
    name: str  # how errors name it until its id is known
    questions: list[str]
    answer: str
    explicit_id: str | None


def _markdown(text: str) -> list[_Raw]:
    found: list[_Raw] = []
    current: _Raw | None = None
    body: list[str] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        if current is not None:
            current.answer = "\n".join(body).strip()
            found.append(current)
        current, body = None, []
        if heading.group(1) == "##":
            current = _from_heading(heading.group(2) or "", number)
    if current is not None:
        current.answer = "\n".join(body).strip()
        found.append(current)
    return found


def _from_heading(heading: str, line: int) -> _Raw:
    heading = _CLOSING_HASHES.sub("", heading)
    explicit = _EXPLICIT_ID.search(heading)
    questions = [q.strip() for q in _ALTERNATIVES.split(heading[:explicit.start()] if explicit else heading)]
    explicit_id = explicit.group(1).strip() if explicit else None
    return _Raw(line, explicit_id or heading.strip(), questions, "", explicit_id)


def _yaml(text: str, source: str) -> list[_Raw]:
    from kefu import yamllines

    try:
        doc = yamllines.LinedYaml(text, source)
    except yamllines.YamlFileError as exc:
        raise KnowledgeError(str(exc)) from None

    def fail(path: tuple[Any, ...], message: str) -> KnowledgeError:
        return KnowledgeError(f"{source} {doc.where(path)}: {message}")

    data = doc.data
    if not isinstance(data, dict) or "entries" not in data:
        raise fail((), "the file must be a mapping with entries: a list of {q, a, id}")
    for key in data:
        if key != "entries":
            raise fail((key,), f"unknown key {key!r} (allowed: entries)")
    if not isinstance(data["entries"], list):
        raise fail(("entries",), "entries must be a list of {q, a, id}")
    found: list[_Raw] = []
    for index, item in enumerate(data["entries"]):
        path = ("entries", index)
        if not isinstance(item, dict):
            raise fail(path, f"entry #{index + 1}: an entry is a mapping with q, a and optionally id")
        q, a, explicit = item.get("q"), item.get("a"), item.get("id")
        questions = [q or ""] if q is None or isinstance(q, str) else q  # "q:" with nothing: an empty question
        first = questions[0] if isinstance(questions, list) and questions and isinstance(questions[0], str) else ""
        name = str(explicit) if explicit is not None else first.strip() or f"#{index + 1}"
        for key in item:
            if key not in ("q", "a", "id"):
                raise fail((*path, key), f'entry "{name}": unknown key {key!r} (allowed: q, a, id)')
        if "q" not in item:
            raise fail(path, f'entry "{name}": q (the question, or a list of them) is missing')
        if "a" not in item:
            raise fail(path, f'entry "{name}": a (the answer) is missing')
        a = "" if a is None else a  # "a:" with nothing: an empty answer
        if not isinstance(questions, list) or not questions or not all(isinstance(x, str) for x in questions):
            raise fail((*path, "q"), f'entry "{name}": q must be a question or a non-empty list of questions')
        if not isinstance(a, str):
            raise fail((*path, "a"), f'entry "{name}": a (the answer) must be text')
        if explicit is not None and (isinstance(explicit, bool) or not isinstance(explicit, str | int)):
            raise fail((*path, "id"), f'entry "{name}": id must be text')
        found.append(_Raw(doc.lines.get(path, 0), name, [x.strip() for x in questions], a.strip(),
                          None if explicit is None else str(explicit).strip()))
    return found


def _checked(raw: Sequence[_Raw], source: str) -> list[Entry]:
    if not raw:
        raise KnowledgeError(f"{source}: no entries (a Markdown file needs '## question' headings; YAML, entries:)")
    entries: list[Entry] = []
    lines: dict[str, int] = {}
    for count, item in enumerate(raw, start=1):
        at = f"{source} line {item.line}" if item.line else source

        def fail(message: str, at: str = at, name: str = item.name) -> KnowledgeError:
            return KnowledgeError(f'{at}: entry "{name}": {message}')

        if count > MAX_ENTRIES:
            raise fail(f"more than {MAX_ENTRIES} entries in the file")
        if not any(item.questions):
            raise fail("the question is empty")
        if not all(item.questions):
            raise fail("one of its questions is empty (check the '|' between them)")
        if item.explicit_id is not None:
            entry_id = item.explicit_id
            if not entry_id:
                raise fail("the id is empty")
            if len(entry_id) > MAX_ID_CHARS:
                raise fail(f"the id is {len(entry_id)} characters, over the limit of {MAX_ID_CHARS}")
            if _ID_FORBIDDEN.search(entry_id):
                raise fail('the id may not contain ", < or > (ids go into the prompt as <entry id="...">)')
        else:
            entry_id = " ".join(item.questions[0].split())[:MAX_ID_CHARS]
            if _ID_FORBIDDEN.search(entry_id):
                raise fail('the id taken from its first question would contain ", < or >, which ids may not (they go '
                           'into the prompt as <entry id="...">): give the entry an explicit id, {#some-id} at the end '
                           "of its Markdown heading or id: in YAML")
        if entry_id in lines:
            raise fail(f'the id "{entry_id}" is already the id of the entry on line {lines[entry_id]}', name=entry_id)
        if not item.answer:
            raise fail("the answer is empty", name=entry_id)
        size = len(item.answer.encode("utf-8"))
        if size > MAX_ANSWER_BYTES:
            raise fail(f"the answer is {size} bytes in UTF-8, over the limit of {MAX_ANSWER_BYTES} "
                       "(it may be sent as a WeCom text, which takes 2048)", name=entry_id)
        lines[entry_id] = item.line
        entries.append(Entry(entry_id, tuple(item.questions), item.answer))
    return entries
