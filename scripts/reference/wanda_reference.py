#!/usr/bin/env python3
"""PyTorch reference for Topiary's Wanda ([T6]), to compare masks and perplexity with `topiary sparsify --method wanda`.

The algorithm of Sun et al.'s `prune_wanda` (github.com/locuslab/wanda), written again here: layer by layer, each layer
calibrated on the outputs of the already-pruned layers before it; forward hooks on the seven linears keep the running
mean of ||x_j||^2 per input column ("scaler_row", one calibration window per forward, fp32); metric |W| * sqrt(scaler_row);
per output row, the int(cols * sparsity) smallest go (stable sort); then the layer runs again, pruned, to give the next
layer its inputs. Model: SmolLM2-135M-Instruct (Q4_1 GGUF dequantized by transformers), fp32. Calibration: 32 windows x
512 tokens from tokens [32768, 49152) of WikiText-2 test (read whole, tokenized at once, no special tokens). Perplexity:
the first 64 non-overlapping windows of 512 tokens of the same text, mean NLL over 64 x 511 predictions.

--compare DIR (a Topiary checkpoint from `topiary sparsify --method wanda --sparsity 0.5 --out DIR`) prints, per
tensor, the fraction of weights whose kept/pruned decision differs between the two, and where the differences begin.

Run in a venv OUTSIDE the repo (torch, transformers, gguf, safetensors):
    /root/refvenv/bin/python scripts/reference/wanda_reference.py \
        --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf --text ../shared/data/wikitext-2-raw/test.txt \
        [--compare DIR] [--eval-windows 64]
"""
import argparse
import math
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def module(layer, dotted):
    m = layer
    for part in dotted.split("."):
        m = getattr(m, part)
    return m


def run_layer(model, layer, hidden):
    """One decoder layer on [1, T, D] with causal attention (SDPA, no mask tensor) and RoPE from positions 0..T-1."""
    positions = torch.arange(hidden.shape[1]).unsqueeze(0)
    emb = model.model.rotary_emb(hidden, positions)
    out = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=emb)
    return out[0] if isinstance(out, tuple) else out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--offset", type=int, default=32768)
    ap.add_argument("--eval-windows", type=int, default=64, help="0: no perplexity (to time the pruning alone)")
    ap.add_argument("--compare", help="a Topiary checkpoint directory pruned with the same settings")
    args = ap.parse_args()
    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    ids = tok(open(args.text, encoding="utf-8").read(), add_special_tokens=False)["input_ids"]
    calib = torch.tensor(ids[args.offset:args.offset + args.windows * args.length]).view(args.windows, args.length)

    with torch.no_grad():
        # Check that layer-by-layer running reproduces the model's own forward (dense, one window).
        h = model.model.embed_tokens(calib[:1])
        for layer in model.model.layers:
            h = run_layer(model, layer, h)
        ref = model(input_ids=calib[:1]).logits
        mine = model.lm_head(model.model.norm(h))
        assert torch.allclose(ref, mine, atol=1e-3), (ref - mine).abs().max()

        t0 = time.time()

        hidden = [model.model.embed_tokens(calib[j:j + 1]) for j in range(args.windows)]
        for l, layer in enumerate(model.model.layers):
            scaler = {n: torch.zeros(module(layer, n).in_features) for n in LINEARS}
            count = {n: 0 for n in LINEARS}

            def hook(name):
                def add_batch(_mod, inp, _out):
                    x = inp[0].detach().reshape(-1, inp[0].shape[-1]).t().float()
                    scaler[name] *= count[name] / (count[name] + 1)
                    count[name] += 1
                    scaler[name] += torch.norm(x, p=2, dim=1) ** 2 / count[name]
                return add_batch

            handles = [module(layer, n).register_forward_hook(hook(n)) for n in LINEARS]
            for j in range(args.windows):
                run_layer(model, layer, hidden[j])
            for hd in handles:
                hd.remove()
            for n in LINEARS:
                w = module(layer, n).weight.data
                metric = w.abs() * torch.sqrt(scaler[n].reshape(1, -1))
                order = torch.sort(metric, dim=-1, stable=True)[1]
                mask = torch.zeros_like(metric, dtype=torch.bool)
                mask.scatter_(1, order[:, :int(w.shape[1] * args.sparsity)], True)
                w[mask] = 0
            hidden = [run_layer(model, layer, hidden[j]) for j in range(args.windows)]
        seconds = time.time() - t0

        nll, count = 0.0, 0
        for j in range(args.eval_windows):
            x = torch.tensor(ids[j * args.length:(j + 1) * args.length]).unsqueeze(0)
            loss = model(input_ids=x, labels=x).loss.item()
            nll += loss * (args.length - 1)
            count += args.length - 1
    ppl = f"ppl {math.exp(nll / count):.4f} (w{args.length} x {args.eval_windows}, {count} predictions)" if count else "no evaluation"
    print(f"wanda {args.sparsity:.2f}: pruned in {seconds:.1f} s (after the model was loaded); {ppl}")

    if args.compare:
        from safetensors import safe_open
        theirs = safe_open(os.path.join(args.compare, "model.safetensors"), "pt")
        total, differ = 0, 0
        for l, layer in enumerate(model.model.layers):
            row = []
            for n in LINEARS:
                a = module(layer, n).weight.data == 0
                b = theirs.get_tensor(f"model.layers.{l}.{n}.weight") == 0
                diff = (a != b).sum().item()
                total += a.numel()
                differ += diff
                row.append(f"{n.split('.')[-1]} {diff / a.numel():.2e}")
            print(f"layer {l:2d}: " + ", ".join(row))
        print(f"decisions that differ: {differ} of {total} ({differ / total:.3e})")


if __name__ == "__main__":
    main()
