#!/usr/bin/env python3
"""Golden token ids for Topiary's BPE tokenizer, from the Hugging Face `tokenizers` library.

The reference tokenizer is rebuilt from the GGUF vocabulary and merges with SmolLM2's ORIGINAL pre-tokenizer,
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)] (transformers' GGUF
converter drops the Digits step). Writes Tests/TopiaryModelsTests/Fixtures/smollm2_strings.json.
Run:  /root/refvenv/bin/python scripts/reference/make_tokenizer_fixtures.py \
          --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf --text ../shared/data/wikitext-2-raw/test.txt
"""
import argparse
import hashlib
import json
import os

import gguf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

STRINGS = [
    "", "Hello world", " Hello  world ", "12345", "3.14159 and 2,718", "year 2024: 99 bottles",
    "don't I'll we've they're she'd it's", "DON'T 'S 'quoted'", "naïve café résumé", "日本語のテキスト",
    "emoji 🙂👍🏽 done", "tabs\tand\nnewlines\r\n", "\n\n\nHello", "   leading spaces", "trailing spaces   ",
    "a  b   c    d", "symbols !@#$%^&*()_+-=[]{}|;':\",./<>?", "<|im_start|>user\nhi<|im_end|>",
    "x<|endoftext|>y", "mixed123abc456", "Ⅻ roman ² superscript ½ fraction", "١٢٣ arabic digits",
    "\u00a0nbsp\u2003emspace", "e\u0301 combining", "NUL\u0000byte", "ÿþý high latin", "über straße",
    "Привет мир", "     ", "\t", "a", "ab", "The quick brown fox jumps over the lazy dog.",
    " = Valkyria Chronicles III = \n", "@-@ 1 @,@ 000 @.@ 5", "http://example.com/path?q=1&r=2",
    "def f(x):\n    return x**2  # square", "“smart quotes” — em dash … ellipsis",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    args = ap.parse_args()
    r = gguf.GGUFReader(args.model)
    field = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    mf = r.fields["tokenizer.ggml.merges"]
    merges = [tuple(bytes(mf.parts[i]).decode("utf-8").split(" ", 1)) for i in mf.data]
    tf = r.fields["tokenizer.ggml.token_type"]
    types = [int(tf.parts[i][0]) for i in tf.data]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens(specials)
    cases = []
    for s in STRINGS:
        plain = tok.encode(s, add_special_tokens=False).ids  # specials parsed (added tokens always match)
        cases.append({"text": s, "ids_parse_special": plain})
    # Without special parsing: encode the pieces between specials is what we do; the reference for that is the
    # same tokenizer without added tokens.
    tok_nospecial = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok_nospecial.pre_tokenizer = tok.pre_tokenizer
    for c in cases:
        c["ids"] = tok_nospecial.encode(c["text"], add_special_tokens=False).ids
    text = open(args.text, encoding="utf-8").read()
    ids = tok_nospecial.encode(text, add_special_tokens=False).ids
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()
    out = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "TopiaryModelsTests", "Fixtures",
                       "smollm2_strings.json")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"cases": cases, "wikitext_count": len(ids), "wikitext_head": ids[:16],
                   "wikitext_ids_sha256": digest, "wikitext_ids_sum": sum(ids),
                   "wikitext_ids_weighted_sum": sum(i * v for i, v in enumerate(ids)) % (1 << 61)}, fh,
                  ensure_ascii=False, indent=1)
    print(len(ids), ids[:16])


if __name__ == "__main__":
    main()
