#!/usr/bin/env python3
"""Golden dequantization values for Topiary's GGUF reader, made with the `gguf` Python package.

Writes Tests/TopiaryGGUFTests/Fixtures/quants.gguf (one small tensor per block type: F32, F16, BF16, Q4_0, Q4_1,
Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and quants.json (every tensor's dequantized values as
gguf.quants.dequantize computes them), plus smollm2_tensors.json (checksums of real-model tensors) when --model is
given. Run in a venv outside the repo:  /root/refvenv/bin/python scripts/reference/make_gguf_fixtures.py \
    --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf

--kquants instead reads Tests/TopiaryGGUFTests/Fixtures/kquants.gguf, which Topiary writes (a fixed input and Topiary's
Q4_K, Q5_K, Q6_K, Q5_0 and Q5_1 blocks of it:  TOPIARY_RECORD_FIXTURES=1 swift test --filter KQuantTests), and writes
kquants_reference.gguf next to it: gguf.<type> (F32, gguf.quants.dequantize of Topiary's blocks), ggufq.q5_0/q5_1
(gguf.quants.quantize of the input) and llama.<type> (llama.cpp's own K-quant blocks of the input, from ggml's
ggml_quantize_chunk in the library llama-cpp-python bundles). It also prints llama.cpp's RMSE on Gaussian weights.
Needs numpy, gguf and llama-cpp-python:  python3 -m venv /tmp/kq-venv && /tmp/kq-venv/bin/pip install numpy gguf \
    llama-cpp-python && /tmp/kq-venv/bin/python scripts/reference/make_gguf_fixtures.py --kquants
"""
import argparse
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "TopiaryGGUFTests", "Fixtures")


def block_bytes(qtype, nblocks, rng):
    """Random but valid blocks: random payload, scale fields set to modest f16 values."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    def f16(col, lo=0.001, hi=0.05):
        v = rng.uniform(lo, hi, size=nblocks).astype(np.float16).view(np.uint8).reshape(nblocks, 2)
        raw[:, col:col + 2] = v
    if qtype in (Q.Q4_0, Q.Q5_0, Q.Q8_0):
        f16(0)
    elif qtype in (Q.Q4_1, Q.Q5_1):
        f16(0); f16(2, -0.5, 0.5)
    elif qtype == Q.Q2_K:
        f16(80); f16(82)
    elif qtype == Q.Q3_K:
        f16(108)
    elif qtype in (Q.Q4_K, Q.Q5_K):
        f16(0); f16(2)
    elif qtype == Q.Q6_K:
        f16(208)
    elif qtype == Q.Q8_K:
        raw[:, 0:4] = rng.uniform(0.001, 0.05, size=nblocks).astype(np.float32).view(np.uint8).reshape(nblocks, 4)
    return raw


def llama_cpp_quantizer():
    """ggml's ggml_quantize_chunk (no importance matrix: the reference quantizers llama.cpp's quantize uses)."""
    import ctypes
    import glob
    import llama_cpp
    libs = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.*"))
    if not libs:
        raise SystemExit("libggml-base not found in the llama_cpp package")
    lib = ctypes.CDLL(libs[0])
    f = lib.ggml_quantize_chunk
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                  ctypes.c_void_p]

    def quantize(x, qtype):
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, cols = x.shape
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        out = np.zeros((rows, cols // block * size), dtype=np.uint8)
        n = f(int(qtype), x.ctypes.data, out.ctypes.data, 0, rows, cols, None)
        assert n == out.size, (n, out.size)
        return out
    return quantize, llama_cpp.__version__


def kquant_reference():
    src = os.path.join(OUT, "kquants.gguf")
    r = gguf.GGUFReader(src)
    tensors = {t.name: t for t in r.tensors}
    x = np.array(tensors["input"].data, dtype=np.float32)
    quantize, version = llama_cpp_quantizer()
    w = gguf.GGUFWriter(os.path.join(OUT, "kquants_reference.gguf"), "test")
    w.add_string("general.description", f"references for kquants.gguf: gguf {gguf.__version__ if hasattr(gguf, '__version__') else ''}"
                 f", llama-cpp-python {version}")
    for name in ["q4_k", "q5_k", "q6_k", "q5_0", "q5_1"]:
        t = tensors[name]
        qtype = t.tensor_type
        values = gguf.quants.dequantize(np.array(t.data), qtype).astype(np.float32).reshape(x.shape)
        w.add_tensor("gguf." + name, values)
        rmse = float(np.sqrt(np.mean((values - x) ** 2)))
        if qtype in (Q.Q5_0, Q.Q5_1):
            w.add_tensor("ggufq." + name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
            print(f"{name}: Topiary RMSE {rmse:.6g}")
            continue
        theirs = quantize(x, qtype)
        w.add_tensor("llama." + name, theirs, raw_dtype=qtype)
        ours = np.array(t.data).reshape(theirs.shape)
        size = gguf.GGML_QUANT_SIZES[qtype][1]
        same = int((ours.reshape(-1, size) == theirs.reshape(-1, size)).all(axis=1).sum())
        lrmse = float(np.sqrt(np.mean((gguf.quants.dequantize(theirs, qtype).reshape(x.shape) - x) ** 2)))
        print(f"{name}: Topiary RMSE {rmse:.6g}, llama.cpp {lrmse:.6g}; {same} of {ours.size // size} super-blocks identical")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    g = np.random.default_rng(7).standard_normal((1024, 256)).astype(np.float32)
    for qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        v = gguf.quants.dequantize(quantize(g, qtype), qtype).reshape(g.shape)
        print(f"llama.cpp {qtype.name} RMSE on 256K N(0,1) weights: {float(np.sqrt(np.mean((v - g) ** 2))):.5f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--kquants", action="store_true", help="write kquants_reference.gguf from kquants.gguf (see above)")
    args = ap.parse_args()
    if args.kquants:
        return kquant_reference()
    rng = np.random.default_rng(1234)
    os.makedirs(OUT, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(OUT, "quants.gguf"), "test")
    expected = {}
    for qtype, name in [(Q.F32, "f32"), (Q.F16, "f16"), (Q.BF16, "bf16")]:
        x = rng.standard_normal((2, 64)).astype(np.float32)
        data = gguf.quants.quantize(x, qtype)
        w.add_tensor(name, data, raw_dtype=qtype)
        expected[name] = {"type": qtype.name, "shape": list(x.shape),
                          "values": [float(v) for v in gguf.quants.dequantize(data, qtype).flatten()]}
    for qtype in [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nblocks = max(2, 512 // block)
        raw = block_bytes(qtype, nblocks, rng)
        rows = 2
        cols = nblocks * block // rows
        values = gguf.quants.dequantize(raw.reshape(rows, -1), qtype)
        name = qtype.name.lower()
        w.add_tensor(name, raw.reshape(rows, -1), raw_dtype=qtype)
        expected[name] = {"type": qtype.name, "shape": [rows, cols], "values": [float(v) for v in values.flatten()]}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "quants.json"), "w") as fh:
        json.dump(expected, fh)
    if args.model:
        r = gguf.GGUFReader(args.model)
        sums = {}
        for t in r.tensors:
            if t.name not in ("token_embd.weight", "blk.0.attn_q.weight", "blk.7.ffn_down.weight", "blk.29.ffn_norm.weight",
                              "output_norm.weight", "blk.3.attn_v.weight"):
                continue
            v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).flatten()
            sums[t.name] = {"type": t.tensor_type.name, "sum": float(v.sum()), "sum_squares": float((v * v).sum()),
                            "head": [float(x) for x in v[:8]], "count": int(v.size)}
        with open(os.path.join(OUT, "smollm2_tensors.json"), "w") as fh:
            json.dump({"tensor_count": len(r.tensors), "tensors": sums}, fh, indent=1, sort_keys=True)
    print("fixtures written to", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
