#!/usr/bin/env python3
"""llama.cpp's own quantization of a GGUF (llama_model_quantize through llama-cpp-python, no importance matrix), and a
tensor-by-tensor comparison with a file Topiary quantized from the same source: the type of every tensor and how many
of its bytes are identical. Used to check `topiary export --type q4_k_m` against llama.cpp's Q4_K_M (BENCHMARKS.md).

Optional, outside CI:  python3 -m venv /tmp/kq-venv && /tmp/kq-venv/bin/pip install llama-cpp-python numpy gguf
  topiary export --model M --type f32 --out m.f32.gguf && topiary export --model M --type q4_k_m --out m.topiary.gguf
  /tmp/kq-venv/bin/python scripts/reference/llamacpp_quantize.py --source m.f32.gguf --type q4_k_m \
      --out m.llamacpp.gguf --compare m.topiary.gguf
"""
import argparse
import ctypes
import json

import numpy as np
import gguf
import llama_cpp

# llama.h's llama_ftype values for the types Topiary writes.
FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q6_k": 18}

ap = argparse.ArgumentParser()
ap.add_argument("--source", required=True, help="an F32 GGUF (e.g. topiary export --type f32)")
ap.add_argument("--type", default="q4_k_m", choices=sorted(FTYPES))
ap.add_argument("--out", required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--compare", help="a GGUF Topiary quantized from the same model")
args = ap.parse_args()

params = llama_cpp.llama_model_quantize_default_params()
params.ftype = FTYPES[args.type]
params.nthread = args.threads
rc = llama_cpp.llama_model_quantize(args.source.encode(), args.out.encode(), ctypes.byref(params))
if rc != 0:
    raise SystemExit(f"llama_model_quantize failed ({rc})")
result = {"llama_cpp": llama_cpp.__version__, "source": args.source, "out": args.out, "type": args.type}

if args.compare:
    mine = {t.name: t for t in gguf.GGUFReader(args.compare).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(args.out).tensors}
    types_differ, identical, total = [], 0, 0
    counts = {}
    for name, t in theirs.items():
        m = mine.get(name)
        if m is None:
            types_differ.append(f"{name}: missing in {args.compare}")
            continue
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
        if m.tensor_type != t.tensor_type:
            types_differ.append(f"{name}: Topiary {m.tensor_type.name}, llama.cpp {t.tensor_type.name}")
            continue
        a, b = np.asarray(m.data).view(np.uint8).ravel(), np.asarray(t.data).view(np.uint8).ravel()
        identical += int((a == b).sum())
        total += a.size
    result["llama_cpp_types"] = counts
    result["types_differ"] = types_differ
    result["identical_bytes"] = identical / max(total, 1)
print(json.dumps(result, indent=2))
