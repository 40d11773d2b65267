#!/usr/bin/env python3
"""Golden token ids for the Qwen2 (DeepSeek-R1-Distill-Qwen) tokenizer, from llama.cpp (llama-cpp-python,
vocab only). llama.cpp will not open the first part of the split download alone, so the ids come from the
synthetic 7B-shaped model, which carries the same tokenizer metadata (`topiary synthesize --like` the first part):
  make qwen7b-model   # part 0000 is enough for the header
  topiary synthesize --like checkpoints/models/qwen7b-parts/model_part_0000 --out checkpoints/models/qwen2-7b-synthetic.gguf
  /root/llamavenv/bin/python scripts/reference/make_qwen2_tokenizer_fixture.py \
      --model checkpoints/models/qwen2-7b-synthetic.gguf
Writes Tests/TopiaryExportTests/Fixtures/qwen2_strings.json.
"""
import argparse, json, os

from llama_cpp import Llama

from make_tokenizer_fixtures import STRINGS

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../Tests/TopiaryExportTests/Fixtures/qwen2_strings.json"))
args = ap.parse_args()
llm = Llama(model_path=args.model, vocab_only=True, verbose=False)
strings = [s for s in STRINGS if "<|" not in s]  # special-token parsing is not part of this check
cases = [{"text": s, "ids": llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)} for s in strings]
json.dump({"source": "llama-cpp-python " + __import__("llama_cpp").__version__ + ", vocab_only, add_bos=False, special=False",
           "pre_tokenizer": "deepseek-r1-qwen", "cases": cases}, open(args.out, "w"), ensure_ascii=False, indent=1)
print(f"{len(cases)} strings → {args.out}")
