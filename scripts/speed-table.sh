#!/usr/bin/env bash
# BENCHMARKS.md, "Depth, width and both" ([T15]): SmolLM2-135M pruned by width (~20%), by depth (7 of 30 blocks) and
# by both at depth's parameter count, each recovered by the same 60 distillation steps (recipes/speed/*.yaml); the
# dense model and each final model exported to Q8_0 and Q4_K_M and timed in llama.cpp in one interleaved run (prompt
# 512, decode 128, 5 repeats, medians); Topiary's fp32 speed side by side with the dense model.
#
#   LLAMA_PY=/path/to/venv/bin/python scripts/speed-table.sh [topiary binary]
#
# LLAMA_PY: a Python with llama-cpp-python (set-up: scripts/reference/llamacpp_perplexity.py). Outputs under
# checkpoints/speed/ (git-ignored); the recipes resume where a run stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.build/release/topiary}
PY=${LLAMA_PY:?set LLAMA_PY to a python with llama-cpp-python}
MODEL=${MODEL:-checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=checkpoints/speed
ROWS=(width-20 width-20-k256 depth-25 mixed-25)
for r in "${ROWS[@]}"; do "$BIN" run "recipes/speed/$r.yaml" --out "$OUT/$r" --quiet; done
mkdir -p "$OUT/gguf"
for m in dense "${ROWS[@]}"; do
    src=$OUT/$m/model
    [ "$m" = dense ] && src=$MODEL
    for t in q8_0 q4_k_m; do
        [ -f "$OUT/gguf/$m.$t.gguf" ] || "$BIN" export --model "$src" --type "$t" --out "$OUT/gguf/$m.$t.gguf"
    done
done
ls -l "$OUT"/gguf/*.gguf
echo "## llama.cpp"
files=()
for t in q8_0 q4_k_m; do for m in dense "${ROWS[@]}"; do files+=("$OUT/gguf/$m.$t.gguf"); done; done
"$PY" scripts/reference/llamacpp_bench.py --repeats 5 "${files[@]}"
echo "## Topiary fp32 (each against the dense model in the same run)"
for r in "${ROWS[@]}"; do "$BIN" bench --model "$OUT/$r/model" --baseline "$MODEL" --skip-backward --repeats 5; done
# Gemma 3 270M, speed only (shapes of a uniform 20% width plan at multiples of 256, and 4 of 18 blocks), when its
# GGUFs were made (see BENCHMARKS.md for the commands).
if ls "$OUT"/gguf-gemma/*.gguf >/dev/null 2>&1; then
    echo "## llama.cpp, Gemma 3 270M"
    "$PY" scripts/reference/llamacpp_bench.py --repeats 5 "$OUT"/gguf-gemma/dense.q8_0.gguf "$OUT"/gguf-gemma/width-20.q8_0.gguf \
        "$OUT"/gguf-gemma/depth-4.q8_0.gguf "$OUT"/gguf-gemma/dense.q4_k_m.gguf "$OUT"/gguf-gemma/width-20.q4_k_m.gguf \
        "$OUT"/gguf-gemma/depth-4.q4_k_m.gguf
fi
