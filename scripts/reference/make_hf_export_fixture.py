#!/usr/bin/env python3
"""transformers reference for `topiary export --format safetensors-hf`: loads the export directory with
`LlamaForCausalLM.from_pretrained` (fp32) and records its logits (computed in float64) on the first WikiText-2 test tokens, as Topiary's
tokenizer makes them, for Tests/TopiaryExportTests (which recomputes the same model in Topiary and compares, 1e-4).

The model is SmolLM2-135M-Instruct pruned uniformly (20% of non-embedding parameters by l2 importance in every
layer, so every layer keeps the same head count and FFN width and transformers' LlamaConfig can describe it):
    T=.build/release/topiary; M=checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf
    $T prune --model $M --importance l2 --ratio 0.2 --layers 0-29 --out /tmp/u20
    $T export --model /tmp/u20 --format safetensors-hf --out /tmp/u20-hf
    $T tokenize --model $M --file ../shared/data/wikitext-2-raw/test.txt --head 64 --json > /tmp/ids.json
    /root/llamavenv/bin/python scripts/reference/make_hf_export_fixture.py --export /tmp/u20-hf --ids /tmp/ids.json \
        --out Tests/TopiaryExportTests/Fixtures/hf_export_uniform20.json
(venv: pip install torch transformers safetensors; a CPU torch wheel is enough.)
"""
import argparse
import json

import torch
from transformers import LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True, help="directory written by topiary export --format safetensors-hf")
    ap.add_argument("--ids", required=True, help="JSON of `topiary tokenize --json` (ids_head)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    # float64: the reference is the exact function, not one more fp32 rounding of it. transformers' own fp32 logits
    # differ from its fp64 ones by up to ~3e-3 on this model (logits up to ~33), i.e. ~1e-4 of the logit scale.
    model = LlamaForCausalLM.from_pretrained(args.export, torch_dtype=torch.float64)
    model.eval()
    ids = json.load(open(args.ids))["ids_head"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    vocab = logits.shape[1]
    columns = list(range(0, vocab, vocab // 32))[:32]
    c = model.config
    fixture = {
        "transformers_class": type(model).__name__,
        "dtype": "float64",
        "max_abs_logit": round(float(logits.abs().max()), 6),
        "config": {"num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
                   "intermediate_size": c.intermediate_size, "head_dim": c.head_dim, "num_hidden_layers": c.num_hidden_layers},
        "ids": ids,
        "columns": columns,
        "logits": [[round(float(logits[t, j]), 6) for j in columns] for t in range(len(ids))],
        "logsumexp": [round(float(v), 6) for v in torch.logsumexp(logits, dim=1)],
        "argmax": [int(v) for v in logits.argmax(dim=1)],
    }
    with open(args.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print("wrote %s: %d positions, heads %d (KV %d), FFN %d" % (args.out, len(ids), c.num_attention_heads,
                                                            c.num_key_value_heads, c.intermediate_size))


if __name__ == "__main__":
    main()
