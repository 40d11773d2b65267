#!/usr/bin/env python3
"""lm-evaluation-harness scores of SmolLM2-135M-Instruct (GGUF via transformers) on the first N items of each task.

Requests are built with lm-eval's prompt definitions for boolq, piqa, hellaswag (from the llama.cpp-derived file, see
../shared/data/SOURCES.md), winogrande (partial scoring), arc_easy, arc_challenge and openbookqa, and scored by lm-eval's
own HFLM.loglikelihood (its tokenization, context/continuation split and batching). acc = argmax of the summed
log-likelihood; acc_norm = argmax of log-likelihood / len(choice) (characters), as lm-eval's multiple_choice does.
Writes Tests/TopiaryEvalTests/Fixtures/lm_eval_smollm2.json (per-task metrics and per-item picks for the first items).
Run in a venv outside the repo:  /root/refvenv/bin/pip install lm-eval torch transformers gguf accelerate
    /root/refvenv/bin/python scripts/reference/lm_eval_zeroshot.py --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --data ../shared/data/zeroshot --limit 500
"""
import argparse
import json
import os

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import AutoModelForCausalLM, AutoTokenizer


def jsonl(path, limit):
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
            if len(out) >= limit:
                break
    return out


def items(task, data, limit):
    """(contexts, continuations, choice_texts, gold) per item, as lm-eval's task configs build them."""
    if task == "boolq":
        for d in jsonl(f"{data}/boolq.jsonl", limit):
            ctx = f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:"
            yield [ctx, ctx], [" no", " yes"], ["no", "yes"], int(d["answer"])
    elif task == "piqa":
        for d in jsonl(f"{data}/piqa.jsonl", limit):
            ctx = f"Question: {d['goal']}\nAnswer:"
            yield [ctx, ctx], [" " + d["sol1"], " " + d["sol2"]], [d["sol1"], d["sol2"]], d["label"]
    elif task == "hellaswag":
        lines = open(f"{data}/hellaswag_val_full.llamacpp.txt", encoding="utf-8").read().split("\n")
        for i in range(0, min(len(lines) - 5, limit * 6), 6):
            ends = lines[i + 2:i + 6]
            yield [lines[i]] * 4, [" " + e for e in ends], ends, int(lines[i + 1])
    elif task == "winogrande":
        for d in jsonl(f"{data}/winogrande.jsonl", limit):
            idx = d["sentence"].index("_")
            target = d["sentence"][idx + 1:].strip()
            ctxs = [d["sentence"][:idx] + d["option1"], d["sentence"][:idx] + d["option2"]]
            yield ctxs, [" " + target] * 2, [target] * 2, {"1": 0, "2": 1}[d["answer"]]
    elif task in ("arc_easy", "arc_challenge", "openbookqa"):
        for d in jsonl(f"{data}/{task}.jsonl", limit):
            texts = [c["text"] for c in d["question"]["choices"]]
            labels = [c["label"] for c in d["question"]["choices"]]
            ctx = d["question"]["stem"] if task == "openbookqa" else f"Question: {d['question']['stem']}\nAnswer:"
            yield [ctx] * len(texts), [" " + t for t in texts], texts, labels.index(d["answerKey"].strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--per-item", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=16)
    results = {}
    for task in ["boolq", "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa"]:
        its = list(items(task, args.data, args.limit))
        reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(c, x), idx=j)
                for ctxs, conts, _, _ in its for j, (c, x) in enumerate(zip(ctxs, conts))]
        lls = [r[0] for r in lm.loglikelihood(reqs)]
        k = 0
        acc, accn, picks, norms = [], [], [], []
        for ctxs, conts, texts, gold in its:
            ll = lls[k:k + len(conts)]
            k += len(conts)
            p = max(range(len(ll)), key=lambda i: (ll[i], -i))
            n = max(range(len(ll)), key=lambda i: (ll[i] / len(texts[i]), -i))
            picks.append(p)
            norms.append(n)
            acc.append(float(p == gold))
            accn.append(float(n == gold))
        results[task] = {"n": len(its), "acc": sum(acc) / len(acc), "acc_norm": sum(accn) / len(accn),
                         "predictions": picks[:args.per_item], "norm_predictions": norms[:args.per_item]}
        print(task, results[task]["acc"], results[task]["acc_norm"], flush=True)
    out = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "TopiaryEvalTests", "Fixtures", "lm_eval_smollm2.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump({"limit": args.limit, "lm_eval": __import__("lm_eval").__version__, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
