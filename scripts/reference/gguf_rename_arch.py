#!/usr/bin/env python3
"""Copies a GGUF file with general.architecture and its "<arch>." keys renamed, tensors unchanged: shows which
architectures llama.cpp accepts for a model with per-layer shapes. With Topiary's `deci` export of a pruned model:
    python gguf_rename_arch.py p20.f32.gguf p20.as-llama.gguf llama
llama.cpp (llama-cpp-python 0.3.36) then refuses the file: "check_tensor_dims: tensor 'blk.3.attn_q.weight' has wrong
shape; expected 576, 576, got 576, 384" -- its `llama` architecture reads the per-layer arrays but creates every
layer's tensors with layer 0's sizes -- while it loads the `deci` original. Needs gguf-py (pip install gguf pyyaml,
or PYTHONPATH=<llama.cpp>/gguf-py)."""
import sys

import gguf
if len(sys.argv) != 4:
    sys.exit(__doc__)
src, dst, new = sys.argv[1:4]
r = gguf.GGUFReader(src)
old = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")
w = gguf.GGUFWriter(dst, new)
for name, f in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    key = new + name[len(old):] if name.startswith(old + ".") else name
    vt = f.types[0]
    if vt == gguf.GGUFValueType.ARRAY:
        et = f.types[1]
        if et == gguf.GGUFValueType.STRING:
            val = [str(bytes(f.parts[i]), "utf-8") for i in f.data]
        else:
            val = [f.parts[i].tolist()[0] for i in f.data]
        w.add_key_value(key, val, vt, sub_type=et)
    elif vt == gguf.GGUFValueType.STRING:
        w.add_key_value(key, str(bytes(f.parts[-1]), "utf-8"), vt)
    else:
        w.add_key_value(key, f.parts[-1].tolist()[0], vt)
for t in r.tensors:
    w.add_tensor(t.name, t.data, raw_shape=list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", dst)
