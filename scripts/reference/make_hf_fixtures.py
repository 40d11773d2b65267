#!/usr/bin/env python3
"""Hugging Face model directories and transformers references for Topiary's HF loader tests (HFLoadTests).

Reads SmolLM2-135M-Instruct and Gemma 3 270M from their GGUF files with transformers (`from_pretrained(dir,
gguf_file=...)`, which dequantizes to fp32 and converts the tokenizer) and writes, under OUT:

    smollm2-f32/  smollm2-bf16/  smollm2-f32-sharded/      config.json, model.safetensors (or shards + index),
    gemma3-f32/   gemma3-bf16/   gemma3-f32-sharded/       tokenizer.json, tokenizer_config.json, generation_config.json
    smollm2-reference.json  gemma3-reference.json          token ids, logits, perplexities (small)

The tests read them when TOPIARY_HF_FIXTURES=OUT is set (they skip otherwise; the directories are ~3 GB, never in git):

    python3 -m venv /tmp/hf-venv && /tmp/hf-venv/bin/pip install torch transformers accelerate gguf safetensors sentencepiece
    /tmp/hf-venv/bin/python scripts/reference/make_hf_fixtures.py /tmp/hf-fixtures \
        --models checkpoints/models --data ../shared/data
    TOPIARY_HF_FIXTURES=/tmp/hf-fixtures swift test -c release --filter HFLoadTests

SmolLM2's tokenizer: transformers' GGUF converter gives a plain ByteLevel pre-tokenizer; the original SmolLM2
tokenizer.json isolates digits first (Digits(individual_digits) + ByteLevel, llama.cpp's `smollm`), which this script
restores so that the directory is what the Hub has. Gemma 3's converted tokenizer is the Hub's form (Replace " " → "▁",
BPE with byte_fallback and merges generated from the SentencePiece scores).

The references (transformers on CPU, eager attention):
- ids_head / ids_tail / count: the WikiText-2 test text tokenized by the `tokenizers` library (no special tokens);
- logits: the f32 model in float64 on the first 16 ids (32 columns, logsumexp, argmax);
- ppl_f32 / ppl_bf16: perplexity of the first two 512-token windows (Topiary's protocol: independent windows, nothing
  prepended, logits at t score token t+1), the f32 model in float32 and the bf16 model in bfloat16.

`--check-export DIR` instead loads a directory written by `topiary export --format safetensors-hf` with transformers
(AutoModelForCausalLM + AutoTokenizer) and prints its perplexity on the same windows, tokenized by the exported
tokenizer.json, to compare with Topiary's.
"""
import argparse
import json
import math
import os

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}


def perplexity(model, ids, window=512, windows=2):
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in range(windows):
            chunk = torch.tensor([ids[w * window:(w + 1) * window]])
            logits = model(input_ids=chunk).logits[0].double()
            logp = torch.log_softmax(logits[:-1], dim=-1)
            target = chunk[0, 1:]
            nll -= float(logp[torch.arange(len(target)), target].sum())
            count += len(target)
    return math.exp(nll / count)


def reference(model, tok, text, dtype_name):
    ids = tok(text, add_special_tokens=False).input_ids
    out = {"count": len(ids), "ids_head": ids[:2048], "ids_tail": ids[-512:]}
    head = ids[:16]
    with torch.no_grad():
        logits = model.to(torch.float64)(input_ids=torch.tensor([head])).logits[0]
    model.to(torch.float32)
    vocab = logits.shape[1]
    columns = list(range(0, vocab, vocab // 32))[:32]
    out.update({
        "logits_ids": head, "columns": columns,
        "logits": [[round(float(logits[t, j]), 6) for j in columns] for t in range(len(head))],
        "logsumexp": [round(float(v), 6) for v in torch.logsumexp(logits, dim=1)],
        "argmax": [int(v) for v in logits.argmax(dim=1)],
        "max_abs_logit": round(float(logits.abs().max()), 6),
        "ppl_" + dtype_name: perplexity(model, ids),
    })
    return out, ids


def save(model, tok, path, **kwargs):
    model.save_pretrained(path, safe_serialization=True, **kwargs)
    tok.save_pretrained(path)
    print("wrote", path, sorted(os.listdir(path)))


def make(name, args, text):
    gguf = MODELS[name]
    tok = AutoTokenizer.from_pretrained(args.models, gguf_file=gguf)
    if name == "smollm2":
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    loaded = AutoModelForCausalLM.from_pretrained(args.models, gguf_file=gguf, dtype=torch.float32,
                                                  attn_implementation="eager")
    # transformers marks a model read from GGUF as quantized and refuses to save it: the same weights (already
    # dequantized to fp32) in a fresh model of the same config save normally.
    config = loaded.config
    for key in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, key):
            delattr(config, key)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    del loaded
    model.eval()
    save(model, tok, f"{args.out}/{name}-f32")
    save(model, tok, f"{args.out}/{name}-f32-sharded", max_shard_size="100MB")
    ref, ids = reference(model, tok, text, "f32")
    ref["gguf"] = gguf
    bf16 = model.to(torch.bfloat16)
    save(bf16, tok, f"{args.out}/{name}-bf16")
    ref["ppl_bf16"] = perplexity(bf16, ids)
    with open(f"{args.out}/{name}-reference.json", "w") as f:
        json.dump(ref, f, separators=(",", ":"))
    print(name, {k: ref[k] for k in ("count", "ppl_f32", "ppl_bf16", "max_abs_logit")})


def check_export(path, text):
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ids = tok(text, add_special_tokens=False).input_ids
    print(json.dumps({"export": path, "class": type(model).__name__, "count": len(ids), "ids_head": ids[:16],
                      "ppl": perplexity(model, ids)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", help="folder for the model directories and reference JSON")
    ap.add_argument("--models", default="checkpoints/models", help="folder with the GGUF files")
    ap.add_argument("--data", default="../shared/data", help="folder with wikitext-2-raw/test.txt")
    ap.add_argument("--only", choices=sorted(MODELS), help="one model only")
    ap.add_argument("--check-export", help="a topiary safetensors-hf export to load with transformers")
    args = ap.parse_args()
    torch.set_num_threads(2)
    text = open(os.path.join(args.data, "wikitext-2-raw/test.txt"), encoding="utf-8").read()
    if args.check_export:
        return check_export(args.check_export, text)
    if not args.out:
        ap.error("give the output folder")
    os.makedirs(args.out, exist_ok=True)
    for name in ([args.only] if args.only else sorted(MODELS)):
        make(name, args, text)


if __name__ == "__main__":
    main()
