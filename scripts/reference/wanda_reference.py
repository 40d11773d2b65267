#!/usr/bin/env python3
"""PyTorch reference for Topiary's Wanda ([T6]) and SparseGPT, unstructured or N:M ([T19]), to compare masks and
perplexity with `topiary sparsify --method wanda|sparsegpt [--nm N:M]`.

The algorithms are the papers' code, written again here:
- Wanda (Sun et al., github.com/locuslab/wanda, `prune_wanda`): forward hooks on the seven linears keep the running
  mean of ||x_j||^2 per input column ("scaler_row", one calibration window per forward, fp32); metric
  |W| * sqrt(scaler_row). Unstructured: per output row, the int(cols * sparsity) smallest go (stable sort). N:M
  (prune_n/prune_m): per row, in every block of M input columns (ii % M == 0), the N smallest go (torch.topk).
- SparseGPT (Frantar & Alistarh, github.com/IST-DASLab/sparsegpt, `SparseGPT.add_batch` / `fasterprune`): Hessian
  H = 2/nsamples * sum X^T X by the running update of add_batch (fp32); dead columns (H_jj = 0) zeroed; dampening
  1% of mean(diag H); Hinv = upper Cholesky factor of H^-1; blocks of 128 columns; unstructured: block-wide
  threshold on W1^2 / diag(Hinv1)^2 (`tmp <= sort(tmp)[int(numel * sparsity)]`); N:M (prunen/prunem): at column
  i of a block with i % M == 0, tmp = W1[:, i:i+M]^2 / diag(Hinv1)[i:i+M]^2 on the block's current (already
  OBS-updated) weights, the N smallest per row go (torch.topk); OBS error propagation inside the block column by
  column, then to the later columns with Err1 @ Hinv[i1:i2, i2:].
Both run layer by layer in the papers' (and Topiary's default) order: each layer's seven linears are calibrated
together on the layer's input (the outputs of the already-pruned layers before it), pruned, then the pruned layer runs
again to give the next layer its input.

Model: SmolLM2-135M-Instruct (Q4_1 GGUF dequantized by transformers), fp32. Token ids: --ids FILE, Topiary's own
tokenization (`topiary tokenize --file TEXT --json --head 1000000 > FILE`; transformers' GGUF tokenizer gives 304,986
tokens for WikiText-2 test instead of Topiary's 304,978); without --ids the text is tokenized by transformers.
Calibration: --windows x --length tokens from token --offset of the ids. Perplexity: the first --eval-windows
non-overlapping windows of --length tokens of the same ids, NLL summed in float64 over windows x (length - 1)
predictions.

--compare DIR (a Topiary checkpoint pruned with the same settings) prints, per layer and tensor, the fraction of
weights whose kept/pruned decision (weight == 0) differs between the two, and the total. With --follow, the reference
still makes (and counts) its own decision at every decision point — per row, each group of M columns (N:M), or each
row (Wanda unstructured) — but then applies Topiary's, so that one differing decision does not change everything after
it (SparseGPT's later columns in the row, every later layer); each differing decision is printed with its margin:
how far, relative, the reference's own scores put Topiary's choice from its own (0: an exact tie; ~1e-6: float
rounding).

Run in a venv OUTSIDE the repo (torch, transformers, gguf, safetensors):
    /root/refvenv/bin/python scripts/reference/wanda_reference.py \
        --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf --text ../shared/data/wikitext-2-raw/test.txt \
        [--method wanda|sparsegpt] [--nm 2:4 | --sparsity 0.5] [--ids FILE] [--compare DIR [--follow]] [--eval-windows 64]
"""
import argparse
import json
import math
import os
import sys
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


def load_ids(path):
    """Token ids from `topiary tokenize --json --head N` (all of them: N >= count) or whitespace-separated integers."""
    text = open(path, encoding="utf-8").read().strip()
    if text.startswith("{"):
        report = json.loads(text)
        ids = report["ids_head"]
        if len(ids) != report["count"]:
            raise SystemExit(f"{path}: {len(ids)} of {report['count']} ids; run `topiary tokenize` with --head >= {report['count']}")
        return ids
    return [int(t) for t in text.split()]


class Follow:
    """Counts the reference's decisions that differ from a Topiary checkpoint's, with their margins."""

    def __init__(self):
        self.decisions = 0      # keep/prune decisions (weights) compared
        self.differ = 0         # weights whose decision differs
        self.groups = 0         # decision groups (N:M groups, or rows) compared
        self.groups_differ = 0
        self.bad_groups = 0     # Topiary groups without exactly N zeros
        self.margins = []       # (tensor, row, column, relative margin) per differing group

    def check(self, name, scores, mine, theirs, col0, n=None, zero=None):
        """scores [rows, g]: the reference's own scores (lowest go); mine/theirs [rows, g] bool (True = pruned);
        zero: the weights that were already zero before pruning (pruned or kept, they read as zero in a checkpoint).
        Records the decisions that differ and, per group, the margin of Topiary's choice under the reference's scores."""
        if zero is not None:
            mine = mine | zero
        self.decisions += mine.numel()
        self.groups += mine.shape[0]
        if n is not None:  # (a weight that was zero and is kept, with no error yet to update it, reads as pruned)
            self.bad_groups += (theirs.sum(dim=1) != n).sum().item()
        rows = (mine != theirs).any(dim=1).nonzero().flatten()
        if len(rows) == 0:
            return
        self.differ += (mine != theirs).sum().item()
        self.groups_differ += len(rows)
        inf = torch.tensor(float("inf"), dtype=torch.float64)
        for r in rows.tolist():
            s, t = scores[r].double(), theirs[r]
            real = ~zero[r] if zero is not None else torch.ones_like(t)
            worst_pruned = torch.where(t & real, s, -inf).max()  # Topiary's choice is consistent with these scores iff
            best_kept = torch.where(~t, s, inf).min()            # every pruned score <= every kept score
            margin = ((worst_pruned - best_kept) / worst_pruned.abs().clamp_min(1e-30)).item()
            first = (mine[r] != t).nonzero().flatten()[0].item()
            self.margins.append((name, r, col0 + first, margin))


def wanda_prune(w, scaler, sparsity, nm, name, theirs, follow):
    metric = w.to(scaler.dtype).abs() * torch.sqrt(scaler.reshape(1, -1))
    zero = w == 0
    mask = torch.zeros_like(metric, dtype=torch.bool)
    if nm:
        n, m = nm
        for ii in range(0, w.shape[1], m):  # prune_wanda: `if ii % prune_m == 0`
            tmp = metric[:, ii:ii + m]
            mask.scatter_(1, ii + torch.topk(tmp, n, dim=1, largest=False)[1], True)
    else:
        order = torch.sort(metric, dim=-1, stable=True)[1]
        mask.scatter_(1, order[:, :int(w.shape[1] * sparsity)], True)
    if follow is not None:
        if nm:
            n, m = nm
            for ii in range(0, w.shape[1], m):
                follow.check(name, metric[:, ii:ii + m], mask[:, ii:ii + m], theirs[:, ii:ii + m], ii, zero=zero[:, ii:ii + m])
        else:
            follow.check(name, metric, mask, theirs, 0, zero=zero)
        mask = theirs
    w[mask] = 0


def sparsegpt_prune(layer_weight, H, sparsity, nm, name, theirs, follow, blocksize=128, percdamp=0.01):
    """SparseGPT.fasterprune (prunen/prunem when nm is set), fp32, in place on layer_weight."""
    W = layer_weight.clone().to(H.dtype)
    rows, columns = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    prunen, prunem = nm if nm else (0, 0)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
            if follow is not None:
                t = theirs[:, i1:i2]
                follow.decisions += mask1.numel()
                follow.differ += (mask1 != t).sum().item()
                mask1 = t.clone()
        else:
            mask1 = torch.zeros_like(W1) == 1
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
                if follow is not None:
                    t = theirs[:, i1 + i:i1 + i + prunem]
                    follow.check(name, tmp, mask1[:, i:i + prunem], t, i1 + i, prunen, zero=W1[:, i:i + prunem] == 0)
                    mask1[:, i:i + prunem] = t
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    layer_weight.copy_(W.reshape(layer_weight.shape).to(layer_weight.dtype))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--ids", help="token ids of --text from Topiary (`topiary tokenize --json --head 1000000`)")
    ap.add_argument("--method", choices=["wanda", "sparsegpt"], default="wanda")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--nm", help="N:M pattern instead of --sparsity (e.g. 2:4)")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--offset", type=int, default=32768)
    ap.add_argument("--eval-windows", type=int, default=64, help="0: no perplexity (to time the pruning alone)")
    ap.add_argument("--compare", help="a Topiary checkpoint directory pruned with the same settings")
    ap.add_argument("--follow", action="store_true", help="with --compare: count own decisions, apply Topiary's")
    ap.add_argument("--precision", choices=["float32", "float64"], default="float32",
                    help="the pruning arithmetic (statistics, metric, Cholesky, OBS updates; the model's forward stays fp32): "
                         "float64 tells which decisions of the fp32 runs are rounding")
    args = ap.parse_args()
    torch.set_num_threads(2)
    nm = tuple(int(x) for x in args.nm.split(":")) if args.nm else None
    dtype = torch.float64 if args.precision == "float64" else torch.float32
    if args.follow and not args.compare:
        raise SystemExit("--follow needs --compare DIR")
    d, f = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    if args.ids:
        ids = load_ids(args.ids)
    else:
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        ids = tok(open(args.text, encoding="utf-8").read(), add_special_tokens=False)["input_ids"]
    print(f"{len(ids)} token ids ({'Topiary, ' + args.ids if args.ids else 'transformers'})")
    calib = torch.tensor(ids[args.offset:args.offset + args.windows * args.length]).view(args.windows, args.length)
    theirs = None
    if args.compare:
        from safetensors import safe_open
        theirs = safe_open(os.path.join(args.compare, "model.safetensors"), "pt")
    follow = Follow() if args.follow else None

    with torch.no_grad():
        # Check that layer-by-layer running reproduces the model's own forward (dense, one window).
        h = model.model.embed_tokens(calib[:1])
        for layer in model.model.layers:
            h = run_layer(model, layer, h)
        ref = model(input_ids=calib[:1]).logits
        mine = model.lm_head(model.model.norm(h))
        assert torch.allclose(ref, mine, atol=1e-3), (ref - mine).abs().max()

        t0 = time.time()
        kept_mismatch = 0  # Wanda: weights both sides keep whose values differ (the dense weights must be identical)
        hidden = [model.model.embed_tokens(calib[j:j + 1]) for j in range(args.windows)]
        for l, layer in enumerate(model.model.layers):
            stat = {}
            count = {n: 0 for n in LINEARS}

            def hook(name):
                def add_batch(mod, inp, _out):
                    x = inp[0].detach()
                    if len(x.shape) == 2:
                        x = x.unsqueeze(0)
                    tmp = x.shape[0]
                    x = x.reshape(-1, x.shape[-1]).t().to(dtype)
                    if args.method == "wanda":  # WrappedGPT.add_batch
                        s = stat.setdefault(name, torch.zeros(mod.in_features, dtype=dtype))
                        s *= count[name] / (count[name] + tmp)
                        count[name] += tmp
                        s += torch.norm(x, p=2, dim=1) ** 2 / count[name]
                    else:  # SparseGPT.add_batch
                        H = stat.setdefault(name, torch.zeros(mod.in_features, mod.in_features, dtype=dtype))
                        H *= count[name] / (count[name] + tmp)
                        count[name] += tmp
                        x = math.sqrt(2 / count[name]) * x
                        H += x.matmul(x.t())
                return add_batch

            handles = [module(layer, n).register_forward_hook(hook(n)) for n in LINEARS]
            for j in range(args.windows):
                run_layer(model, layer, hidden[j])
            for hd in handles:
                hd.remove()
            for n in LINEARS:
                w = module(layer, n).weight.data
                key = f"model.layers.{l}.{n}.weight"
                t = theirs.get_tensor(key).float() if theirs is not None else None
                tz = (t == 0) if t is not None else None
                if args.method == "wanda":
                    dense = w.clone()
                    wanda_prune(w, stat[n], args.sparsity, nm, key, tz, follow)
                    if t is not None:
                        both = (w != 0) & (t != 0)
                        kept_mismatch += (dense[both] != t[both]).sum().item()
                else:
                    sparsegpt_prune(w, stat[n], args.sparsity, nm, key, tz, follow)
                del stat[n]
            hidden = [run_layer(model, layer, hidden[j]) for j in range(args.windows)]
            so_far = f", {follow.differ} differing decisions so far" if follow is not None else ""
            print(f"layer {l:2d} pruned ({time.time() - t0:.0f} s){so_far}", file=sys.stderr, flush=True)
        seconds = time.time() - t0

        nll, predictions = 0.0, 0
        for j in range(args.eval_windows):
            x = torch.tensor(ids[j * args.length:(j + 1) * args.length]).unsqueeze(0)
            logits = model(input_ids=x).logits[0, :-1].double()
            nll -= logits.log_softmax(-1).gather(1, x[0, 1:].unsqueeze(1)).sum().item()
            predictions += args.length - 1
    what = f"{args.nm}" if nm else f"{args.sparsity:.2f}"
    ppl = (f"ppl {math.exp(nll / predictions):.4f} (w{args.length} x {args.eval_windows}, {predictions} predictions)"
           if predictions else "no evaluation")
    print(f"{args.method} {what}{' (Topiary masks followed)' if follow else ''}, {args.precision} pruning: pruned in {seconds:.1f} s "
          f"(after the model was loaded); {ppl}")

    if theirs is not None:
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
        print(f"decisions that differ (weight == 0 on one side only): {differ} of {total} ({differ / total:.3e})")
        if args.method == "wanda":
            print(f"weights kept by both whose values differ: {kept_mismatch}")
        else:
            num, den, worst = 0.0, 0.0, 0.0
            for l, layer in enumerate(model.model.layers):
                for n in LINEARS:
                    a = module(layer, n).weight.data.double()
                    b = theirs.get_tensor(f"model.layers.{l}.{n}.weight").double()
                    num += ((a - b) ** 2).sum().item()
                    den += (b ** 2).sum().item()
                    worst = max(worst, ((a - b).abs().max() / b.abs().max()).item())
            print(f"pruned weights: ||ref - topiary|| / ||topiary|| = {math.sqrt(num / den):.3e}; "
                  f"worst tensor max|diff| / max|w| = {worst:.3e}")
    if follow is not None:
        if args.method == "sparsegpt" and not nm:
            print(f"followed: {follow.differ} of {follow.decisions} decisions differ (block-wide thresholds: no margins)")
        else:
            extra = (f"; Topiary's groups without exactly N zeros: {follow.bad_groups}" if args.method == "sparsegpt"
                     else " (weights already zero before pruning count as pruned on both sides)")
            print(f"followed: {follow.differ} of {follow.decisions} decisions differ, in {follow.groups_differ} of "
                  f"{follow.groups} {'groups' if nm else 'rows'}{extra}")
        for name, r, c, margin in follow.margins:
            print(f"  {name} row {r} column {c}: Topiary's choice is {margin:+.3e} (relative) from the reference's own")


if __name__ == "__main__":
    main()
