#!/usr/bin/env bash
# `make lint`: the committed .swift-format (swift-format ships with the Swift toolchain) must leave the code unchanged,
# and no line of Swift is longer than 140 characters (string literals included, which the formatter cannot break).
set -euo pipefail
cd "$(dirname "$0")/.."
swift format lint --strict --recursive Sources Tests Package.swift
long=$(find Sources Tests -name '*.swift' -print0 | xargs -0 awk 'length > 140 { print FILENAME ":" FNR ": " length " characters" }')
if [ -n "$long" ]; then
    echo "lines over 140 characters:" >&2
    echo "$long" >&2
    exit 1
fi
big=$(find Sources -name '*.swift' -print0 | xargs -0 wc -l | awk '$2 != "total" && $1 > 600 { print $2 ": " $1 " lines" }')
if [ -n "$big" ]; then
    echo "files over 600 lines (split them):" >&2
    echo "$big" >&2
    exit 1
fi
echo "lint: clean"
