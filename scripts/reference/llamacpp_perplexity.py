#!/usr/bin/env python3
"""Perplexity of a GGUF model in llama.cpp (llama-cpp-python) on Topiary's windows, for comparison with
`topiary perplexity`: the same token ids (Topiary's tokenization, given as `topiary tokenize --json --head N`
output), cut into consecutive windows of --window tokens, each window run on its own with nothing prepended,
logits at position t scoring token t+1 (llama.cpp's own `llama-perplexity` scores only each window's second
half and prepends BOS, so it is not used). Also reports whether llama.cpp's tokenizer gives the same ids.

Optional, outside CI:  python3 -m venv /tmp/venv && /tmp/venv/bin/pip install llama-cpp-python numpy
  topiary tokenize --model M --file T --head 100000000 --json > ids.json
  /tmp/venv/bin/python scripts/reference/llamacpp_perplexity.py --model M --ids ids.json --text T --windows 8
"""
import argparse, json, time

import numpy as np
from llama_cpp import Llama

from llamacpp_common import configure_extra_buffers

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--ids", required=True, help="JSON from `topiary tokenize --json --head N` (key ids_head)")
ap.add_argument("--text", help="the tokenized text, to compare llama.cpp's tokenization")
ap.add_argument("--window", type=int, default=512)
ap.add_argument("--windows", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--extra-buffers", default="auto", choices=["auto", "on", "off"],
                help="llama.cpp's repacked weight buffers (AMX); auto: off where the VM advertises AMX (see llamacpp_common)")
args = ap.parse_args()
configure_extra_buffers(args.extra_buffers)

ids = json.load(open(args.ids))["ids_head"]
llm = Llama(model_path=args.model, n_ctx=args.window, n_batch=args.window, n_ubatch=args.window,
            logits_all=True, n_threads=args.threads, verbose=False)
result = {"model": args.model, "window": args.window, "llama_cpp": __import__("llama_cpp").__version__}
if args.text:
    theirs = llm.tokenize(open(args.text, encoding="utf-8").read().encode("utf-8"), add_bos=False, special=False)
    n = min(len(theirs), len(ids))
    first = next((i for i in range(n) if theirs[i] != ids[i]), None)
    result["tokenization"] = {"topiary": len(ids), "llama_cpp": len(theirs),
                              "first_difference": first if first is not None else (None if len(theirs) == len(ids) else n)}
start = time.time()
nll, count = 0.0, 0
windows = min(args.windows, len(ids) // args.window)
for w in range(windows):
    tokens = ids[w * args.window:(w + 1) * args.window]
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[:args.window], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll -= sum(logp[t, tokens[t + 1]] for t in range(args.window - 1))
    count += args.window - 1
result.update({"windows": windows, "predictions": count, "mean_nll": nll / count, "ppl": float(np.exp(nll / count)),
               "seconds": time.time() - start})
print(json.dumps(result, indent=2))
