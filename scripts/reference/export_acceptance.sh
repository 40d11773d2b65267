#!/usr/bin/env bash
# The acceptance run of `topiary export` (issue T10): llama.cpp's perplexity of Topiary's GGUF exports against
# Topiary's own, on WikiText-2 test, 64 windows x 512 tokens, with the same protocol (see llamacpp_perplexity.py),
# and llama.cpp's speed of the dense and the pruned exports, measured in one run.
#
#   scripts/reference/export_acceptance.sh [WORKDIR]      (default /tmp/topiary-export; steps already done are skipped)
#
# Environment: TOPIARY (binary, default .build/release/topiary), LLAMA_PYTHON (a python with llama-cpp-python,
# default /root/llamavenv/bin/python; set-up in llamacpp_perplexity.py), TOPIARY_MODEL, TOPIARY_DATA, THREADS.
# Model: SmolLM2-135M-Instruct pruned 20% (Taylor, layers 3-27: 6 of 9 heads and 1215 of 1536 FFN channels in
# those layers) and recovered with a short LoRA run (20 steps, merged) as a quick stand-in for the full recovery.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${1:-/tmp/topiary-export}
T=${TOPIARY:-.build/release/topiary}
PY=${LLAMA_PYTHON:-/root/llamavenv/bin/python}
MODEL=${TOPIARY_MODEL:-checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${TOPIARY_DATA:-../shared/data}
THREADS=${THREADS:-$(nproc)}
TEXT=$DATA/wikitext-2-raw/test.txt
mkdir -p "$W"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

[ -d "$W/smollm2-p20" ] || { log prune; $T prune --model "$MODEL" --data "$DATA" --importance taylor --ratio 0.2 --layers 3-27 --out "$W/smollm2-p20"; }
[ -d "$W/smollm2-p20-lora/model" ] || { log finetune; $T finetune --model "$W/smollm2-p20" --out "$W/smollm2-p20-lora" --text "$TEXT" --data-offset 32768 --steps 20 --merge; }
P=$W/smollm2-p20-lora/model
for t in f32 q8_0; do
    [ -f "$W/p20-lora.$t.gguf" ] || { log "export p20-lora $t"; $T export --model "$P" --out "$W/p20-lora.$t.gguf" --type $t; }
    [ -f "$W/dense.$t.gguf" ] || { log "export dense $t"; $T export --model "$MODEL" --out "$W/dense.$t.gguf" --type $t; }
done

for m in p20-lora.f32 p20-lora.q8_0; do
    [ -s "$W/llamacpp-$m.json" ] || { log "llama.cpp ppl $m"; $PY scripts/reference/llamacpp_perplexity.py --model "$W/$m.gguf" --text "$TEXT" --threads "$THREADS" --json > "$W/llamacpp-$m.json"; }
done
[ -s "$W/topiary-p20-lora.json" ] || { log "topiary ppl p20-lora"; $T perplexity --model "$P" --data "$DATA" --threads "$THREADS" --json > "$W/topiary-p20-lora.json"; }
for m in dense.f32 dense.q8_0; do
    [ -s "$W/llamacpp-$m.json" ] || { log "llama.cpp ppl $m"; $PY scripts/reference/llamacpp_perplexity.py --model "$W/$m.gguf" --text "$TEXT" --threads "$THREADS" --json > "$W/llamacpp-$m.json"; }
done
[ -s "$W/topiary-dense.json" ] || { log "topiary ppl dense"; $T perplexity --model "$MODEL" --data "$DATA" --threads "$THREADS" --json > "$W/topiary-dense.json"; }

python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
def ppl(name): return json.load(open(f"{w}/{name}.json"))["ppl"]
print("| model | Topiary ppl (checkpoint, fp32) | export | llama.cpp ppl | difference | bound | |")
print("|---|---:|---|---:|---:|---:|---|")
ok = True
for label, ref in [("dense SmolLM2-135M", "topiary-dense"), ("20% pruned + LoRA", "topiary-p20-lora")]:
    stem = "dense" if ref == "topiary-dense" else "p20-lora"
    for t, bound in [("f32", 0.005), ("q8_0", 0.02)]:
        a, b = ppl(ref), ppl(f"llamacpp-{stem}.{t}")
        d = (b - a) / a
        ok &= abs(d) <= bound
        print(f"| {label} | {a:.4f} | {t.upper()} | {b:.4f} | {100*d:+.3f}% | {100*bound:.1f}% | {'pass' if abs(d) <= bound else 'FAIL'} |")
print("all within bounds" if ok else "SOME OUTSIDE BOUNDS")
PY

[ -s "$W/bench.md" ] || { log "llama.cpp speed"; $PY scripts/reference/llamacpp_bench.py "$W/dense.f32.gguf" "$W/p20-lora.f32.gguf" "$W/dense.q8_0.gguf" "$W/p20-lora.q8_0.gguf" --threads "$THREADS" > "$W/bench.md"; }
cat "$W/bench.md"
