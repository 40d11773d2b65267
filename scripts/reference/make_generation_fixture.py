#!/usr/bin/env python3
"""Greedy generation and weight-layout golden values from transformers (fp32) on SmolLM2-135M-Instruct GGUF.

Writes Tests/TopiaryModelsTests/Fixtures/smollm2_generation.json. Run in a venv outside the repo:
    /root/refvenv/bin/python scripts/reference/make_generation_fixture.py --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    prompt = "University is"
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=32, do_sample=False)
        logits = model(ids).logits[0, -1]
    new = out[0, ids.shape[1]:].tolist()
    sd = model.state_dict()
    fixture = {
        "prompt": prompt,
        "prompt_ids": ids[0].tolist(),
        "generated_ids": new,
        "generated_text": tok.decode(new),
        "last_logits_head": [float(x) for x in logits[:8]],
        "q_proj_layer0_row1_head": [float(x) for x in sd["model.layers.0.self_attn.q_proj.weight"][1, :4]],
        "k_proj_layer0_row33_head": [float(x) for x in sd["model.layers.0.self_attn.k_proj.weight"][33, :4]],
    }
    out_path = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "TopiaryModelsTests", "Fixtures", "smollm2_generation.json")
    with open(out_path, "w") as fh:
        json.dump(fixture, fh, indent=1)
    print(new, repr(fixture["generated_text"]))


if __name__ == "__main__":
    main()
