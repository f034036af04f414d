"""Retrieval for the knowledge answerer: Kefu's own index (kefu.knowledge) against jieba and rank_bm25.

    .venv-bench/bin/python benchmarks/retrieval_bench.py [--repeat 5]

The requirement: retrieval that works for Chinese picks the few entries relevant to a customer's
question, from a well-kept library where one fits the cold-start budget. The route function starts
cold in about 1.2-1.7 s and the answerer may add at most 10% of that, so about 120 ms.

Each candidate runs in fresh processes (``sys.executable -c ...``), ``--repeat`` times; the figures
are medians over those runs. Every process reads compiled bytecode from one warmed cache directory
(PYTHONPYCACHEPREFIX), as a deployment that ships .pyc files would; Kefu's import is also measured
compiled from source.

  kefu       - kefu.knowledge: import, parse of config/knowledge.md and of a generated 500-entry file,
               the first search (which builds the index), then per-query latency.
  jieba      - jieba's search-mode cut (cut_for_search) of questions and answers, fed into a plain
               BM25 written here (the same k1, b and question weighting as Kefu's): import, the first
               cut (jieba loads its dictionary then: from its cache in /tmp, or building it when the
               cache is missing, as on a Lambda cold start unless the cache is shipped), index, queries.
  rank_bm25  - rank_bm25.BM25Okapi (numpy) over Kefu's own terms (character bigrams): import, index,
               queries.

Quality: top-1 and top-3 accuracy on a labelled set of paraphrased customer questions against
config/knowledge.md, written below; a few questions the file does not cover are checked against
Kefu's ``match`` (the share of the question's terms that the best entry contains): how many stay
under 0.3, the gate an answerer would use.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
KNOWLEDGE = ROOT / "config" / "knowledge.md"
BUDGET_MS = 1200 * 0.10  # 10% of the route function's fastest measured cold start
sys.path.insert(0, str(SHARED))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench  # noqa: E402

# (question, the id of the entry that answers it) - customers' own words, not the file's headings.
LABELLED = [
    ("请问你们多久发货呀", "shipping-time"),
    ("付款之后多久能发出去", "shipping-time"),
    ("今天下单明天能发货吗", "shipping-time"),
    ("可以发顺丰吗", "courier"),
    ("你们用的什么快递", "courier"),
    ("买多少钱包邮", "shipping-fee"),
    ("运费要多少", "shipping-fee"),
    ("我的快递到哪了", "order-lookup"),
    ("怎么看物流信息", "order-lookup"),
    ("东西不喜欢可以退吗", "returns"),
    ("退货流程是怎样的", "returns"),
    ("退款几天能到账", "refund-time"),
    ("钱什么时候退回来", "refund-time"),
    ("尺码买小了能换大一码吗", "size-exchange"),
    ("想换个颜色可以吗", "size-exchange"),
    ("能开专票吗", "invoice"),
    ("发票怎么开", "invoice"),
    ("need an invoice 发票", "invoice"),
    ("积分可以抵多少钱", "points"),
    ("金卡会员有什么好处", "怎么成为会员"),
    ("优惠券用不了怎么回事", "coupons"),
    ("券在哪里领", "coupons"),
    ("客服几点下班", "human-hours"),
    ("周末有人工客服吗", "human-hours"),
    ("你们实体店在哪", "stores"),
    ("杭州有门店吗", "stores"),
    ("能用支付宝付款吗", "payment"),
    ("电器坏了保修吗", "warranty"),
    ("收到的杯子碎了", "damaged"),
    ("地址写错了能改吗", "修改收货地址"),
    ("下错单了怎么取消", "cancel"),
    ("两个订单能一起寄吗", "几个订单能一起发吗"),
    ("送人的能帮忙包装吗", "gift-wrap"),
    ("可以寄到美国吗", "overseas"),
]
# Questions config/knowledge.md does not answer.
UNRELATED = ["你们老板是谁", "今天天气怎么样", "帮我写一首诗", "你是机器人吗", "推荐一部好看的电影", "股票明天会涨吗"]
MATCH_GATE = 0.3

# The child process: one candidate, one knowledge file. argv: method, file, queries.json, jieba tmp dir.
CHILD = r'''
import sys, time
sys.path.insert(0, SHARED)
method, path, queries_path, jieba_dir = sys.argv[1:5]
t0 = time.perf_counter()
if method == "kefu":
    import kefu.knowledge
elif method == "jieba":
    import jieba
else:
    import rank_bm25
t1 = time.perf_counter()
import json, math
out = {"import_ms": (t1 - t0) * 1000}
queries = json.load(open(queries_path, encoding="utf-8"))
text = open(path, encoding="utf-8").read()


def ranked_of(scores, k=3):
    best = sorted((i for i in range(len(scores)) if scores[i] > 0), key=lambda i: (-scores[i], i))
    return best[:k]

class PlainBM25:
    """Okapi BM25 over token lists (for jieba's tokens); Lucene's idf, as kefu.knowledge."""
    def __init__(self, docs, k1=1.2, b=0.75):
        self.k1, self.b = k1, b
        self.postings, self.lengths = {}, []
        for index, doc in enumerate(docs):
            counts = {}
            for token in doc:
                counts[token] = counts.get(token, 0) + 1
            for token, count in counts.items():
                self.postings.setdefault(token, []).append((index, count))
            self.lengths.append(len(doc))
        self.average = (sum(self.lengths) / len(self.lengths)) or 1.0
    def scores(self, tokens):
        scores = [0.0] * len(self.lengths)
        n = len(self.lengths)
        for token in dict.fromkeys(tokens):
            found = self.postings.get(token, ())
            if not found:
                continue
            idf = math.log(1 + (n - len(found) + 0.5) / (len(found) + 0.5))
            for index, tf in found:
                norm = self.k1 * (1 - self.b + self.b * self.lengths[index] / self.average)
                scores[index] += idf * tf * (self.k1 + 1) / (tf + norm)
        return scores

if method == "kefu":
    t2 = time.perf_counter()
    knowledge = kefu.knowledge.parse_knowledge(text, path)
    t3 = time.perf_counter()
    knowledge.search(queries[0], 3)
    t4 = time.perf_counter()
    out.update(parse_ms=(t3 - t2) * 1000, index_ms=(t4 - t3) * 1000)
    ids = [e.id for e in knowledge.entries]
    def search(q):
        return [(h.entry.id, h.match) for h in knowledge.search(q, 3)]
else:
    # The file is parsed by Kefu's parser for both others: only the retrieval differs.
    import kefu.knowledge
    t2 = time.perf_counter()
    knowledge = kefu.knowledge.parse_knowledge(text, path)
    t3 = time.perf_counter()
    out["parse_ms"] = (t3 - t2) * 1000
    ids = [e.id for e in knowledge.entries]
    if method == "jieba":
        import logging
        jieba.setLogLevel(logging.WARNING)
        jieba.dt.tmp_dir = jieba_dir
        STOP = set("的 了 吗 呢 啊 吧 呀 嘛 哦 是 我 你 您 们 他 她 它 请 问 在 和 与 及 就 都 也 还 要 会 能 想 这 那 个 "
                   "有 没 不 请问 你们 我们 怎么 怎么样 怎样 什么 如何 可以 一下 能否 是否 哪里 哪儿 为什么 "
                   "a an the is are to of in on for and or it i you we my your do does can how what when where why "
                   "please".split())
        def tokens(s):
            return [t for t in (w.strip().lower() for w in jieba.cut_for_search(s)) if t and t not in STOP
                    and any(c.isalnum() for c in t)]
        t4 = time.perf_counter()
        jieba.lcut("请问多久发货")  # loads the dictionary
        t5 = time.perf_counter()
        docs = [[t for q in e.questions for t in tokens(q)] * 2 + tokens(e.answer) for e in knowledge.entries]
        index = PlainBM25(docs)
        t6 = time.perf_counter()
        out.update(first_cut_ms=(t5 - t4) * 1000, index_ms=(t6 - t5) * 1000)
        def search(q):
            return [(ids[i], None) for i in ranked_of(index.scores(tokens(q)))]
    else:
        terms = kefu.knowledge.terms
        t4 = time.perf_counter()
        docs = [[t for q in e.questions for t in terms(q)] * 2 + terms(e.answer) for e in knowledge.entries]
        index = rank_bm25.BM25Okapi(docs)
        t5 = time.perf_counter()
        out["index_ms"] = (t5 - t4) * 1000
        def search(q):
            wanted = terms(q)
            return [(ids[i], None) for i in ranked_of(list(index.get_scores(wanted)))] if wanted else []

out["results"] = {q: search(q) for q in queries}
rounds = max(1, 600 // len(queries)) if len(ids) < 100 else max(1, 150 // len(queries))
latencies = []
for _ in range(rounds):
    for q in queries:
        s = time.perf_counter()
        search(q)
        latencies.append((time.perf_counter() - s) * 1e6)
latencies.sort()
out["query_p50_us"] = latencies[len(latencies) // 2]
out["query_p99_us"] = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
print("RESULT " + json.dumps(out, ensure_ascii=False))
'''.replace("SHARED", repr(str(SHARED)))

SOURCE_IMPORT = r'''
import sys, time
sys.path.insert(0, SHARED)
t0 = time.perf_counter()
import kefu.knowledge
t1 = time.perf_counter()
print("RESULT " + repr((t1 - t0) * 1000))
'''


def generated_file(path: Path, count: int = 500, seed: int = 7) -> None:
    """A knowledge file of ``count`` entries in the shape of a real shop's FAQ: short questions in
    one to three phrasings, answers of 40 to 120 characters (about 80 on average)."""
    rng = random.Random(seed)
    topics = ("订单 发货 快递 退货 退款 换货 发票 积分 会员 优惠券 门店 付款 保修 维修 尺码 颜色 包装 地址 物流 客服 价格 库存 预售 "
              "赠品 评价 账号 密码 手机号 活动 红包 运费 面料 清洗 安装 说明书 配件 电池 充电 屏幕 尺寸 保价 定金 尾款 拼单 直播 "
              "样品 团购 礼品卡 售后 质检 签收 拒收 自提").split()
    asks = ("怎么{t}", "{t}怎么办", "{t}要多久", "{t}需要什么材料", "能不能{t}", "{t}在哪里看", "{t}有什么规定", "{t}收费吗",
            "{t}可以改吗", "{t}什么时候处理", "{t}出了问题找谁", "{t}有没有限制")
    phrases = ("请在订单详情页操作", "一般 1～3 个工作日内处理完成", "大促期间可能顺延", "具体以页面显示为准", "如有疑问可以联系人工客服",
               "工作日 9:00-18:00 有专人处理", "需要提供订单号和照片", "处理结果会短信通知您", "部分特殊商品不适用",
               "已经发出的包裹无法拦截", "费用由我们承担", "每个账号每月限一次", "金额会原路退回", "可以在会员中心查看明细",
               "请保留好外包装和配件", "节假日顺延到下一个工作日", "如需加急请备注说明", "系统会自动发送提醒",
               "门店和线上规则一致", "超过期限将无法办理")
    lines = ["# 生成的知识库", ""]
    for number in range(count):
        topic = rng.choice(topics) + rng.choice(("", "", rng.choice(topics)))
        questions = [rng.choice(asks).format(t=topic) for _ in range(rng.randint(1, 3))]
        questions = list(dict.fromkeys(questions))
        answer = "，".join(rng.sample(phrases, rng.randint(4, 10))) + "。"  # 40-120 characters
        lines += [f"## {' | '.join(questions)} {{#g{number:04d}}}", "", answer, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def run_child(code: str, args: list[str], env: dict[str, str]) -> Any:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT ")) if line[7] == "{" else float(line[7:])
    raise RuntimeError(f"child failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def quality(results: dict[str, list[list[Any]]]) -> tuple[int, int]:
    top1 = sum(1 for q, want in LABELLED if results[q][:1] and results[q][0][0] == want)
    top3 = sum(1 for q, want in LABELLED if want in [hit[0] for hit in results[q][:3]])
    return top1, top3



def print_rows(name: str, runs: dict[str, list[dict[str, Any]]], top1: int, top3: int, index_note: str,
               query_note: str) -> None:
    """A comparison library's index and query figures per knowledge file, and its quality."""
    for label, rows in runs.items():
        print(f"  {label}: index {median(rows, 'index_ms'):.1f} ms, query p50 {median(rows, 'query_p50_us'):.0f} µs "
              f"p99 {median(rows, 'query_p99_us'):.0f} µs")
        bench(f"retrieval.{name}.{label}.index", round(median(rows, "index_ms"), 2), "ms", index_note)
        bench(f"retrieval.{name}.{label}.query_p50", round(median(rows, "query_p50_us"), 1), "us", query_note)
        bench(f"retrieval.{name}.{label}.query_p99", round(median(rows, "query_p99_us"), 1), "us", query_note)
    print(f"  quality: top-1 {top1}/{len(LABELLED)}, top-3 {top3}/{len(LABELLED)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per measurement (median reported)")
    args = parser.parse_args()
    available = {"kefu": True}
    for method, module in (("jieba", "jieba"), ("rank_bm25", "rank_bm25")):
        available[method] = importlib.util.find_spec(module) is not None
        if not available[method]:
            print(f"{module} is not importable with {sys.executable}: its figures are skipped "
                  f"(pip install -r benchmarks/requirements-compare.txt)")
    work = Path(tempfile.mkdtemp(prefix="kefu-retrieval-"))
    try:
        generated = work / "generated-500.md"
        generated_file(generated)
        queries = work / "queries.json"
        queries.write_text(json.dumps([q for q, _ in LABELLED] + UNRELATED, ensure_ascii=False), encoding="utf-8")
        pyc = work / "pyc"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "OPENBLAS_CORETYPE",
                                                                  "OPENBLAS_L2_SIZE")}
        env.update(PYTHONPYCACHEPREFIX=str(pyc), PYTHONHASHSEED="0")
        jieba_cache = work / "jieba-cache"
        jieba_cache.mkdir()
        print(f"{len(LABELLED)} labelled questions and {len(UNRELATED)} unrelated ones against {KNOWLEDGE.relative_to(ROOT)}; "
              f"{args.repeat} fresh processes per figure (median); bytecode cached in one directory for all")
        files = {"faq": str(KNOWLEDGE), "gen500": str(generated)}
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for method in ("kefu", "jieba", "rank_bm25"):
            if not available[method]:
                continue
            run_child(CHILD, [method, files["faq"], str(queries), str(jieba_cache)], env)  # warm the bytecode and jieba's cache
            for label, path in files.items():
                runs[(method, label)] = [run_child(CHILD, [method, path, str(queries), str(jieba_cache)], env)
                                         for _ in range(args.repeat)]
        cold_jieba: list[float] = []
        if available["jieba"]:
            for attempt in range(min(3, args.repeat)):
                empty = work / f"jieba-empty-{attempt}"
                empty.mkdir()
                cold_jieba.append(run_child(CHILD, ["jieba", files["faq"], str(queries), str(empty)], env)["first_cut_ms"])
        importing = SOURCE_IMPORT.replace("SHARED", repr(str(SHARED)))
        preloaded = importing.replace("t0 = time.perf_counter()", "import dataclasses, hashlib, re\nt0 = time.perf_counter()")
        marginal_import = [run_child(preloaded, [], env) for _ in range(args.repeat)]
        # kefu.knowledge compiled from source (everything else from the cached bytecode): its .pyc
        # removed from the cache, which these runs do not write back.
        for compiled in pyc.rglob("knowledge.*.pyc"):
            compiled.unlink()
        source_env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
        source_import = [run_child(importing, [], source_env) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    kefu = runs[("kefu", "faq")]
    kefu500 = runs[("kefu", "gen500")]
    imp = median(kefu, "import_ms")
    print(f"kefu.knowledge: import {imp:.1f} ms with .pyc ({statistics.median(source_import):.1f} ms compiled from source; "
          f"{statistics.median(marginal_import):.1f} ms when dataclasses, hashlib and re are already loaded, as in the route "
          f"function)")
    print(f"  config/knowledge.md: parse {median(kefu, 'parse_ms'):.2f} ms, first search (builds the index) "
          f"{median(kefu, 'index_ms'):.2f} ms, query p50 {median(kefu, 'query_p50_us'):.0f} µs p99 "
          f"{median(kefu, 'query_p99_us'):.0f} µs")
    print(f"  500 generated entries: parse {median(kefu500, 'parse_ms'):.2f} ms, first search (builds the index) "
          f"{median(kefu500, 'index_ms'):.2f} ms, query p50 {median(kefu500, 'query_p50_us'):.0f} µs p99 "
          f"{median(kefu500, 'query_p99_us'):.0f} µs")
    bench("retrieval.kefu.import", round(imp, 2), "ms", "import kefu.knowledge in a fresh process, .pyc cached")
    bench("retrieval.kefu.import_source", round(statistics.median(source_import), 2), "ms",
          "the same, kefu/knowledge.py compiled from source (no .pyc of it)")
    bench("retrieval.kefu.import_marginal", round(statistics.median(marginal_import), 2), "ms",
          "the same after dataclasses, hashlib and re (which the route function already imports)")
    for label, rows in (("faq", kefu), ("gen500", kefu500)):
        what = "config/knowledge.md" if label == "faq" else "a generated 500-entry file"
        bench(f"retrieval.kefu.{label}.parse", round(median(rows, "parse_ms"), 3), "ms", f"parse_knowledge of {what}")
        bench(f"retrieval.kefu.{label}.index", round(median(rows, "index_ms"), 3), "ms",
              f"first search of {what}: builds the index (and compiles the term patterns)")
        bench(f"retrieval.kefu.{label}.query_p50", round(median(rows, "query_p50_us"), 1), "us", f"search(q, 3), {what}")
        bench(f"retrieval.kefu.{label}.query_p99", round(median(rows, "query_p99_us"), 1), "us", f"search(q, 3), {what}")
    kefu_cold = imp + median(kefu, "parse_ms") + median(kefu, "index_ms")
    bench("retrieval.kefu.cold_total", round(kefu_cold, 2), "ms",
          f"import + parse + first search of config/knowledge.md; the budget is {BUDGET_MS:.0f} ms")

    results = kefu[0]["results"]
    top1, top3 = quality(results)
    related_matches = [results[q][0][1] if results[q] else 0.0 for q, _ in LABELLED]
    unrelated_matches = [results[q][0][1] if results[q] else 0.0 for q in UNRELATED]
    low = sum(1 for m in unrelated_matches if m < MATCH_GATE)
    kept = sum(1 for m in related_matches if m >= MATCH_GATE)
    print(f"  quality: top-1 {top1}/{len(LABELLED)}, top-3 {top3}/{len(LABELLED)}; unrelated questions with match < "
          f"{MATCH_GATE}: {low}/{len(UNRELATED)} (their best: {', '.join(f'{m:.2f}' for m in unrelated_matches)}); "
          f"labelled questions with match >= {MATCH_GATE}: {kept}/{len(LABELLED)}")
    for q, want in LABELLED:
        got = results[q]
        if not got or got[0][0] != want:
            print(f"    missed at top-1: {q} -> {[hit[0] for hit in got]} (wanted {want})")
    bench("retrieval.kefu.top1", top1, "of", f"{len(LABELLED)} labelled questions, right entry first")
    bench("retrieval.kefu.top3", top3, "of", f"{len(LABELLED)} labelled questions, right entry among the first 3")
    bench("retrieval.kefu.unrelated_low_match", low, "of", f"{len(UNRELATED)} unrelated questions whose best match < {MATCH_GATE}")
    bench("retrieval.kefu.related_kept", kept, "of", f"{len(LABELLED)} labelled questions whose best match >= {MATCH_GATE}")

    if available["jieba"]:
        jb, jb500 = runs[("jieba", "faq")], runs[("jieba", "gen500")]
        jimp, first = median(jb, "import_ms"), median(jb, "first_cut_ms")
        cold = statistics.median(cold_jieba) if cold_jieba else float("nan")
        print()
        print(f"jieba + BM25: import {jimp:.1f} ms, first cut {first:.0f} ms with its dictionary cache in /tmp, "
              f"{cold:.0f} ms without it (it builds and writes the cache, as on a Lambda cold start)")
        top1, top3 = quality(jb[0]["results"])
        print_rows("jieba", {"faq": jb, "gen500": jb500}, top1, top3, "cut_for_search + BM25 index", "cut + BM25 scores")
        bench("retrieval.jieba.import", round(jimp, 2), "ms", "import jieba in a fresh process")
        bench("retrieval.jieba.first_cut", round(first, 1), "ms", "first jieba.lcut: loads the dictionary from its cache")
        bench("retrieval.jieba.first_cut_nocache", round(cold, 1), "ms", "first jieba.lcut without a cache: builds and writes it")
        bench("retrieval.jieba.cold_total", round(jimp + cold + median(jb, "index_ms"), 1), "ms",
              "import + first cut without a cache + index of config/knowledge.md")
        bench("retrieval.jieba.top1", top1, "of", f"{len(LABELLED)} labelled questions")
        bench("retrieval.jieba.top3", top3, "of", f"{len(LABELLED)} labelled questions")

    if available["rank_bm25"]:
        rb, rb500 = runs[("rank_bm25", "faq")], runs[("rank_bm25", "gen500")]
        rimp = median(rb, "import_ms")
        print()
        print(f"rank_bm25 (BM25Okapi, numpy) over Kefu's bigram terms: import {rimp:.1f} ms")
        top1, top3 = quality(rb[0]["results"])
        print_rows("rank_bm25", {"faq": rb, "gen500": rb500}, top1, top3, "BM25Okapi(corpus)", "get_scores + top 3")
        bench("retrieval.rank_bm25.import", round(rimp, 2), "ms", "import rank_bm25 (and numpy) in a fresh process")
        bench("retrieval.rank_bm25.cold_total", round(rimp + median(rb, "index_ms"), 1), "ms",
              "import + index of config/knowledge.md (tokens from kefu.knowledge.terms)")
        bench("retrieval.rank_bm25.top1", top1, "of", f"{len(LABELLED)} labelled questions")
        bench("retrieval.rank_bm25.top3", top3, "of", f"{len(LABELLED)} labelled questions")

    print()
    print(f"Cold-start budget: {BUDGET_MS:.0f} ms (10% of 1.2 s). kefu.knowledge takes {kefu_cold:.1f} ms "
          f"({kefu_cold / BUDGET_MS:.0%} of it).")
    best = dict(zip(UNRELATED, unrelated_matches, strict=True))
    print(f"Unrelated questions, best match per question: {json.dumps(best, ensure_ascii=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
