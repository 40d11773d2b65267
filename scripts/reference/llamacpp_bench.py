#!/usr/bin/env python3
"""llama.cpp speed of GGUF files, measured in one run: prompt processing (pp: one batch of --prompt tokens, as
llama-bench's pp512) and generation (tg: --gen tokens decoded one at a time after an empty cache, as llama-bench's
tg128), in tokens per second, median of --repeats runs after one warm-up. Models are measured in turn within each
repeat, so load from other processes affects them alike. Prints a Markdown table (or --json).

Uses the llama-cpp-python binding's low-level calls (llama_decode), so Python adds only a call per token.
Set-up: see llamacpp_perplexity.py. Example:
    /root/llamavenv/bin/python scripts/reference/llamacpp_bench.py dense.f32.gguf p20.f32.gguf dense.q8_0.gguf p20.q8_0.gguf
"""
import argparse
import json
import os
import statistics
import time

import llama_cpp.llama_cpp as C
from llama_cpp import Llama

from llamacpp_common import VERSION, configure_extra_buffers


def decode(llm, tokens):
    ids = (C.llama_token * len(tokens))(*tokens)  # kept alive until llama_decode returns
    batch = C.llama_batch_get_one(ids, len(tokens))  # positions continue from the KV cache
    rc = C.llama_decode(llm.ctx, batch)
    if rc != 0:
        raise RuntimeError("llama_decode returned %d" % rc)


def clear(llm):
    mem = C.llama_get_memory(llm.ctx)
    C.llama_memory_clear(mem, True)


def measure(llm, prompt, gen):
    vocab = llm.n_vocab()
    tokens = [(i * 7919 + 13) % vocab for i in range(prompt)]
    clear(llm)
    t = time.perf_counter()
    decode(llm, tokens)
    C.llama_synchronize(llm.ctx)
    pp = prompt / (time.perf_counter() - t)
    clear(llm)
    t = time.perf_counter()
    for i in range(gen):
        decode(llm, [tokens[i % prompt]])
    C.llama_synchronize(llm.ctx)
    tg = gen / (time.perf_counter() - t)
    return pp, tg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--extra-bufts", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    extra = configure_extra_buffers(args.extra_bufts)
    models = [Llama(model_path=m, n_ctx=args.prompt + args.gen, n_batch=args.prompt, n_ubatch=args.prompt,
                    n_threads=args.threads, n_threads_batch=args.threads, verbose=False) for m in args.models]
    for llm in models:
        measure(llm, args.prompt, 8)  # warm-up
    runs = {m: ([], []) for m in args.models}
    for _ in range(args.repeats):
        for m, llm in zip(args.models, models):
            pp, tg = measure(llm, args.prompt, args.gen)
            runs[m][0].append(pp)
            runs[m][1].append(tg)
    rows = []
    for m in args.models:
        pp, tg = runs[m]
        rows.append({"model": m, "bytes": os.path.getsize(m), "pp": statistics.median(pp), "tg": statistics.median(tg),
                     "pp_runs": pp, "tg_runs": tg})
    meta = {"llama_cpp_python": VERSION, "threads": args.threads, "prompt": args.prompt, "gen": args.gen,
            "repeats": args.repeats, "extra_bufts": extra}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    print("llama.cpp (llama-cpp-python %s), %d threads, median of %d; extra buffer types %s"
          % (VERSION, args.threads, args.repeats, "on" if extra else "off"))
    print("| model | size (MB) | pp%d (tok/s) | tg%d (tok/s) |" % (args.prompt, args.gen))
    print("|---|---:|---:|---:|")
    for r in rows:
        print("| %s | %.1f | %.1f | %.1f |" % (os.path.basename(r["model"]), r["bytes"] / 1e6, r["pp"], r["tg"]))


if __name__ == "__main__":
    main()
