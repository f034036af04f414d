"""What the AI answerer costs per answer: the model's tokens and dollars, and the AWS requests and
Lambda time it adds. `make bench` runs it; it prints BENCH lines for docs/PERFORMANCE.md.

    .venv/bin/python benchmarks/ai_cost_bench.py [--model-seconds 1.5]

The prompts are the ones the route function builds (kefu.answerer.build_request) for the labelled
customer questions of benchmarks/retrieval_bench.py against config/knowledge.md, with the rules'
defaults (top_k 3, min_match 0.3); questions no entry matches cost no model call and are counted
apart. Token counts are the Bedrock stand-in's estimate (local/bedrock_standin.estimate_tokens: one
token per CJK character, one per four other characters) - a real model's tokenizer differs (for
Chinese, from about 0.7 to 1.5 tokens per character), so read the dollars as an order of size.
The answer is the stand-in's, which repeats the matching entry's answer; a model writes a shorter
or longer one. The Lambda time an answer adds is the wait on the model, an assumption
(--model-seconds; the stand-in answers at once), billed at the route function's memory size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

import yaml  # noqa: E402, I001 - run as a script, after the path set-up

from common import bench  # noqa: E402
from kefu.answerer import build_request  # noqa: E402
from kefu.knowledge import parse_knowledge  # noqa: E402
from local.bedrock_standin import choose_answer, estimate_tokens, parse_prompt  # noqa: E402
from retrieval_bench import LABELLED, UNRELATED  # noqa: E402

TOP_K, MIN_MATCH, MAX_TOKENS = 3, 0.3, 500
ROUTE_MEMORY_GB = 768 / 1024  # template.yaml's RouteFunction MemorySize
# DynamoDB write units an AI answer adds beyond any send: the caps' reservation (a transaction of
# two updates and a condition check, each billed as two transactional units) and the spend update.
AI_WRITE_UNITS = 3 * 2 + 1
AI_READ_UNITS = 1  # the look for an earlier attempt's answer (a strongly consistent GetItem)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-seconds", type=float, default=1.5, help="assumed wait on the model per answer")
    args = parser.parse_args()
    prices = yaml.safe_load((ROOT / "config" / "prices.yaml").read_text(encoding="utf-8"))
    knowledge = parse_knowledge((ROOT / "config" / "knowledge.md").read_text(encoding="utf-8"), "config/knowledge.md")
    inputs, outputs, entries, chars = [], [], [], []
    no_call = 0
    questions = [q for q, _ in LABELLED] + UNRELATED
    for question in questions:
        hits = [h for h in knowledge.search(question, TOP_K) if h.match >= MIN_MATCH]
        if not hits:
            no_call += 1
            continue
        request = build_request(hits, question, MAX_TOKENS)
        texts = [block["text"] for block in request["system"]] + [
            block["text"] for message in request["messages"] for block in message["content"]]
        prompt = parse_prompt(request["messages"][-1]["content"][0]["text"])
        assert prompt is not None
        reply = json.dumps(choose_answer(prompt), ensure_ascii=False)
        inputs.append(sum(estimate_tokens(t) for t in texts))
        outputs.append(estimate_tokens(reply))
        entries.append(len(hits))
        chars.append(sum(len(t) for t in texts))
    per_in, per_out = statistics.mean(inputs), statistics.mean(outputs)
    print(f"{len(questions)} questions against config/knowledge.md ({len(knowledge.entries)} entries): "
          f"{len(inputs)} would ask the model, {no_call} match no entry (handed on, no call)")
    print(f"  per model call: {statistics.mean(entries):.1f} entries sent, {statistics.mean(chars):.0f} characters, "
          f"~{per_in:.0f} input tokens (p50 {statistics.median(inputs):.0f}, max {max(inputs)}), "
          f"~{per_out:.0f} output tokens; the whole file would be "
          f"~{sum(estimate_tokens(e.answer) + sum(map(estimate_tokens, e.questions)) for e in knowledge.entries)} tokens")
    bench("ai.input_tokens_per_answer", round(per_in), "tokens", "estimated, system prompt + matched entries + question")
    bench("ai.output_tokens_per_answer", round(per_out), "tokens", "estimated, the JSON answer")
    bench("ai.entries_per_answer", round(statistics.mean(entries), 2), "entries", f"top_k {TOP_K}, min_match {MIN_MATCH}")
    unit = prices["per_unit"]
    per_request = prices["per_request"]
    lambda_usd = args.model_seconds * ROUTE_MEMORY_GB * unit["lambda_gb_second_arm64"]
    dynamo_usd = AI_WRITE_UNITS * per_request["dynamodb_write_unit"] + AI_READ_UNITS * per_request["dynamodb_read_unit"]
    aws_usd = lambda_usd + dynamo_usd
    print(f"  AWS per answer: {args.model_seconds:.1f} s waiting on the model at {ROUTE_MEMORY_GB * 1024:.0f} MB "
          f"${lambda_usd * 1000:.4f} per 1,000, DynamoDB {AI_WRITE_UNITS} WRU + {AI_READ_UNITS} RRU "
          f"${dynamo_usd * 1000:.4f} per 1,000 (the answer's send itself is priced with every send in the cost model)")
    bench("ai.aws_usd_per_1000_answers", round(aws_usd * 1000, 4), "USD",
          f"Lambda wait ({args.model_seconds} s assumed) + the caps' DynamoDB writes")
    for model, price in prices["bedrock_per_million_tokens"].items():
        model_usd = (per_in * price["input"] + per_out * price["output"]) / 1_000_000
        print(f"  {model}: ${model_usd * 1000:.4f} per 1,000 answers for the model, "
              f"${(model_usd + aws_usd) * 1000:.4f} with AWS (list price ${price['input']}/${price['output']} per "
              f"million tokens)")
        bench(f"ai.usd_per_1000_answers.{model.replace(':', '_')}",  # figure names take no ':'
 round((model_usd + aws_usd) * 1000, 4), "USD",
              f"model ${model_usd * 1000:.4f} + AWS, at ${price['input']}/${price['output']} per million tokens")


if __name__ == "__main__":
    main()
