#!/usr/bin/env python3
"""transformers' fp32 reference for Gemma 3 270M (the Q4_K_M GGUF), with Topiary's perplexity protocol.

Writes Tests/TopiaryModelsTests/Fixtures/gemma3_reference.json:
  * the configuration transformers builds from the GGUF (layer types, RoPE bases, scale) — what Topiary must match;
  * the tokenization of WikiText-2 test by Gemma's own tokenizer as transformers converts it from the GGUF
    (count, position-weighted checksum, first ids) and by llama.cpp's (count and checksum, a second reference);
  * a few short strings and their ids (tokenizer unit test);
  * logits of a short prompt at a few positions/ids (model unit test);
  * perplexity on WikiText-2 test, protocol of Sources/TopiaryEval/Perplexity.swift: whole text tokenized at once
    without BOS, consecutive 512-token windows from token 0, the first 64, each independent (positions 0..511),
    all 511 predictions per window, NLL summed in float64.
transformers dequantizes every tensor to fp32 and subtracts 1 from the GGUF norm weights (llama.cpp's converter
stores Gemma's (1 + w) as w), so its model is the fp32 Gemma3ForCausalLM of the same weights.

Run (venv outside the repo with torch, transformers, gguf, sentencepiece, llama-cpp-python):
    /root/llamavenv/bin/python scripts/reference/gemma3_reference.py \
        --model checkpoints/models/gemma-3-270m-q4_k_m.gguf --text ../shared/data/wikitext-2-raw/test.txt
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "TopiaryModelsTests", "Fixtures",
                   "gemma3_reference.json")
STRINGS = ["Hello world", " Hello  world\n\nnew line", "University is", "1234567 + 89 = 1234656",
           "naïve café — “quotes” 日本語 😀", "\ttab and trailing spaces   ", " = Valkyria Chronicles III = \n"]
PROMPT = "The capital of France is Paris, and the capital of Germany is"


def weighted_sum(ids):
    s = 0
    for i, v in enumerate(ids):
        s = (s + i * int(v)) % (1 << 61)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    cfg = model.config
    result = {"model": f, "transformers": __import__("transformers").__version__, "torch": torch.__version__}
    result["config"] = {k: (v if not isinstance(v, float) else float(v)) for k, v in cfg.to_dict().items()
                        if isinstance(v, (int, float, str, bool, list, dict, type(None)))}

    text = open(args.text, encoding="utf-8").read()
    t0 = time.time()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    result["tokenize_seconds"] = time.time() - t0
    result["wikitext_count"] = len(ids)
    result["wikitext_ids_weighted_sum"] = weighted_sum(ids)
    result["wikitext_first_ids"] = ids[:64]
    try:
        from llama_cpp import Llama
        llm = Llama(model_path=args.model, vocab_only=True, verbose=False)
        lids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        result["llamacpp_wikitext_count"] = len(lids)
        result["llamacpp_wikitext_ids_weighted_sum"] = weighted_sum(lids)
    except Exception as e:  # a second reference only
        result["llamacpp_error"] = str(e)
    result["strings"] = [{"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"]} for s in STRINGS]
    result["bos_ids_of_hello"] = tok("Hello", add_special_tokens=True)["input_ids"]

    with torch.no_grad():
        pids = tok(PROMPT, add_special_tokens=False)["input_ids"]
        logits = model(torch.tensor([pids])).logits[0].double().numpy()
        pick = [0, 1, 2, 106, 1000, 50000, 262143]
        result["prompt"] = {"text": PROMPT, "ids": pids,
                            "positions": [0, len(pids) // 2, len(pids) - 1], "vocab_ids": pick,
                            "logits": [[float(logits[p, v]) for v in pick] for p in [0, len(pids) // 2, len(pids) - 1]],
                            "argmax_last": int(logits[-1].argmax())}
        count = min(len(ids) // args.window, args.windows)
        total, n = 0.0, 0
        per_window = []
        t0 = time.time()
        for w in range(count):
            x = torch.tensor([ids[w * args.window:(w + 1) * args.window]])
            lg = model(x).logits[0].double()
            lse = torch.logsumexp(lg[:-1], dim=-1)
            tgt = x[0, 1:]
            nll = float((lse - lg[:-1].gather(1, tgt[:, None])[:, 0]).sum())
            per_window.append(nll)
            total += nll
            n += args.window - 1
            print(f"window {w + 1}/{count}: running ppl {math.exp(total / n):.4f}", flush=True)
        result["perplexity"] = {"window": args.window, "windows": count, "predictions": n,
                                "nll_sum": total, "window_nll_sums": per_window, "ppl": math.exp(total / n), "seconds": time.time() - t0}
    with open(OUT, "w") as fh:
        json.dump(result, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(json.dumps(result["perplexity"]), result["wikitext_count"], result.get("llamacpp_wikitext_count"))


if __name__ == "__main__":
    main()
