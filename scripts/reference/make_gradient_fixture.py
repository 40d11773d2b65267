#!/usr/bin/env python3
"""PyTorch reference for Topiary's autodiff: loss and per-tensor gradient norms of SmolLM2-135M-Instruct.

Batch: the 10 windows x 128 tokens at tokens [32768, 34048) of WikiText-2 test (read whole, tokenized at once,
no special tokens), Hugging Face causal-LM mean cross-entropy over 10 x 127 predictions, fp32, one backward.

Run in a venv OUTSIDE the repo (torch, transformers, gguf, numpy):
    python3 -m venv /root/refvenv && /root/refvenv/bin/pip install torch transformers gguf numpy
    /root/refvenv/bin/python scripts/reference/make_gradient_fixture.py \
        --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --text ../shared/data/wikitext-2-raw/test.txt \
        --out Tests/TopiaryModelsTests/Fixtures/smollm2_gradients.json

transformers' GGUF tokenizer drops the digit-splitting rule of the original tokenizer, but its ids agree with the
faithful ones up to token 66,556, so the window used here is the same either way (checked below on the first ids).
"""
import argparse
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.eval()
    text = open(args.text, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[:16] == [1116, 446, 6356, 389, 9226, 352, 446, 38028, 16506, 6356, 389, 9226, 352, 314, 354, 2321], ids[:16]
    batch = torch.tensor(ids[32768:34048]).view(10, 128)
    out = model(input_ids=batch, labels=batch)
    out.loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        g = p.grad.detach().double()
        w = p.detach().double()
        grads[name] = {
            "shape": list(p.shape),
            "grad_norm": g.norm().item(),
            "weight_norm": w.norm().item(),
            "taylor_abs_sum": (w * g).abs().sum().item(),
            "grad_head": [float(x) for x in p.grad.detach().flatten()[:4]],
        }
    fixture = {
        "note": "PyTorch fp32 reference: SmolLM2-135M-Instruct Q4_1 GGUF via transformers; batch = WikiText-2 test "
                "tokens [32768, 34048) as 10 x 128; mean causal-LM cross-entropy over 10 x 127 predictions.",
        "torch": torch.__version__,
        "loss": out.loss.item(),
        "batch_first_ids": ids[32768:32776],
        "tensors": grads,
    }
    with open(args.out + ".tmp", "w") as fh:
        json.dump(fixture, fh, indent=1, sort_keys=True)
    os.replace(args.out + ".tmp", args.out)
    print(f"loss {out.loss.item():.6f}, {len(grads)} tensors -> {args.out}")


if __name__ == "__main__":
    main()
