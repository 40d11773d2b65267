#!/usr/bin/env python3
"""PyTorch timings of what `topiary bench` measures for autodiff (T2), on the same machine, for comparison.

Model: the SmolLM2-135M-Instruct GGUF loaded by transformers in fp32; batch 10 x 128 tokens (the same token ids
as `topiary bench`: (i * 7919) mod vocab), Hugging Face causal-LM mean cross-entropy. Three measurements,
interleaved round by round so that a slow minute of the machine hits all three alike:

  forward            torch.no_grad() forward with logits on every row (what inference costs)
  forward+backward   loss.backward() with every parameter trainable
  taylor             gradients for layers 3..L-3 only (norms excluded), then |w * g| summed per output row,
                     as LLM-Pruner's Taylor calibration pass over those layers does

Each round prints its times; the summary gives the best of each and the ratios. Run in a venv OUTSIDE the repo
(torch, transformers, gguf):
    /root/llamavenv/bin/python scripts/reference/autodiff_timing_reference.py \
        --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf --rounds 5
"""
import argparse
import os
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d, f = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.eval()
    cfg = model.config
    batch, seq = 10, 128
    ids = torch.tensor([(i * 7919) % cfg.vocab_size for i in range(batch * seq)]).view(batch, seq)
    layers = cfg.num_hidden_layers
    taylor = {n for n, _ in model.named_parameters()
              if any(n.startswith(f"model.layers.{l}.") for l in range(3, layers - 2)) and not n.endswith("layernorm.weight")}

    def forward():
        with torch.no_grad():
            model(input_ids=ids)

    def set_trainable(names):
        for n, p in model.named_parameters():
            p.requires_grad_(names is None or n in names)
            p.grad = None

    def forward_backward(names):
        set_trainable(names)
        model(input_ids=ids, labels=ids).loss.backward()
        if names is not None:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if p.grad is not None:
                        (p * p.grad).abs().sum(dim=-1)
        set_trainable(None)

    forward()  # warm up
    forward_backward(None)
    best = {"forward": float("inf"), "forward+backward": float("inf"), "taylor": float("inf")}
    for r in range(args.rounds):
        row = []
        for name, fn in (("forward", forward), ("forward+backward", lambda: forward_backward(None)),
                         ("taylor", lambda: forward_backward(taylor))):
            t = time.perf_counter()
            fn()
            t = time.perf_counter() - t
            best[name] = min(best[name], t)
            row.append(f"{name} {t:.3f} s")
        print(f"round {r + 1}: " + ", ".join(row), flush=True)
    fw = best["forward"]
    print(f"best: forward {fw:.3f} s, forward+backward {best['forward+backward']:.3f} s "
          f"({best['forward+backward'] / fw:.2f}x), taylor (layers 3-{layers - 3}) {best['taylor']:.3f} s "
          f"({best['taylor'] / fw:.2f}x); torch {torch.__version__}, {args.threads} threads")


if __name__ == "__main__":
    main()
