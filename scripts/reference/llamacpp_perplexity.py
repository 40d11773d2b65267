#!/usr/bin/env python3
"""llama.cpp's perplexity of a GGUF file on WikiText-2 test, with Topiary's protocol (`topiary perplexity`).

Protocol, the same as Sources/TopiaryEval/Perplexity.swift:
  * the whole test file is read and tokenized at once by llama.cpp's own tokenizer, without special tokens
    (no BOS: `tokenize(add_bos=False, special=False)`);
  * it is cut into consecutive, non-overlapping windows of --window tokens from token 0; the first --windows
    windows are used (64 x 512 by default);
  * each window is evaluated on its own (KV cache cleared, positions 0..window-1, nothing prepended);
  * the logits at position t score token t+1, for t = 0..window-2 (window-1 predictions per window);
  * NLL = logsumexp(logits) - logit[target], summed in float64; ppl = exp(sum / predictions).
llama.cpp's `llama-perplexity` tool is NOT used because its protocol differs: it puts BOS first when the vocab
asks for it and scores only the second half of each window.

The model runs in llama.cpp (through the llama-cpp-python binding, which builds llama.cpp from source) with all
logits returned, an fp32 KV cache by default (--kv-type f16 for llama.cpp's default) and one batch per window.
The tokenization is checked against Topiary's (count and a position-weighted checksum of all ids, from
Tests/TopiaryModelsTests/Fixtures/smollm2_strings.json) when the vocabulary is SmolLM2's.

Set-up (a venv outside the repo; llama-cpp-python compiles llama.cpp, ~20 min on 2 cores):
    python3 -m venv /root/llamavenv
    CMAKE_ARGS="-DLLAVA_BUILD=OFF" /root/llamavenv/bin/pip install llama-cpp-python==0.3.36 numpy
Run:
    /root/llamavenv/bin/python scripts/reference/llamacpp_perplexity.py --model smollm2-p20.f32.gguf \
        --text ../shared/data/wikitext-2-raw/test.txt [--windows 64 --window 512] [--json]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

from llamacpp_common import configure_extra_buffers

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "TopiaryModelsTests", "Fixtures",
                       "smollm2_strings.json")


def weighted_sum(ids):
    s = 0
    for i, v in enumerate(ids):
        s = (s + i * v) % (1 << 61)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--text", required=True, help="WikiText-2 raw test.txt")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=64, help="at most this many windows (0: all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--kv-type", choices=["f32", "f16"], default="f32")
    ap.add_argument("--extra-bufts", choices=["auto", "on", "off"], default="auto",
                    help="llama.cpp weight repacking (auto: off on CPUs that advertise AMX; see llamacpp_common.py)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    extra = configure_extra_buffers(args.extra_bufts)

    kv = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16}[args.kv_type]
    llm = Llama(model_path=args.model, n_ctx=args.window, n_batch=args.window, n_ubatch=args.window, logits_all=True,
                n_threads=args.threads, n_threads_batch=args.threads, type_k=kv, type_v=kv, verbose=False)
    text = open(args.text, encoding="utf-8").read()
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    tokenization = "not checked (not SmolLM2's vocabulary)"
    if llm.n_vocab() == 49152 and os.path.exists(FIXTURE) and os.path.basename(args.text) == "test.txt":
        ref = json.load(open(FIXTURE))
        same = len(ids) == ref["wikitext_count"] and weighted_sum(ids) == ref["wikitext_ids_weighted_sum"]
        tokenization = "identical to Topiary's (%d ids)" % len(ids) if same else "DIFFERS from Topiary's (%d vs %d ids)" % (len(ids), ref["wikitext_count"])

    count = len(ids) // args.window
    if args.windows:
        count = min(count, args.windows)
    total, predictions = 0.0, 0
    start = time.time()
    for w in range(count):
        window = ids[w * args.window:(w + 1) * args.window]
        llm.reset()  # n_tokens = 0: eval() clears the KV cache from position 0 and starts the window at position 0
        llm.eval(window)
        logits = np.asarray(llm.scores[:args.window], dtype=np.float64)
        rows = logits[:-1]
        targets = np.asarray(window[1:])
        m = rows.max(axis=1)
        lse = m + np.log(np.exp(rows - m[:, None]).sum(axis=1))
        total += float((lse - rows[np.arange(len(targets)), targets]).sum())
        predictions += len(targets)
        if not args.json:
            print("\rwindow %d/%d  ppl %.4f" % (w + 1, count, math.exp(total / predictions)), end="", file=sys.stderr, flush=True)
    if not args.json:
        print(file=sys.stderr)
    result = {
        "model": args.model, "ppl": math.exp(total / predictions), "mean_nll": total / predictions, "predictions": predictions,
        "windows": count, "window": args.window, "tokens": len(ids), "tokenization": tokenization, "kv_type": args.kv_type,
        "seconds": round(time.time() - start, 1), "llama_cpp_python": llama_cpp.__version__, "extra_bufts": extra,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("%s: ppl %.4f over %d windows x %d (%d predictions); tokenization %s; llama-cpp-python %s, KV %s"
              % (args.model, result["ppl"], count, args.window, predictions, tokenization, llama_cpp.__version__, args.kv_type))


if __name__ == "__main__":
    main()
