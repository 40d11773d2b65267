#!/usr/bin/env bash
# Runs Topiary's commands inside a memory cgroup (default 1 GiB; [T17]): each must either run or refuse with one clear
# line — never be killed by the kernel's OOM killer (exit 137) or crash. Needs root and a writable cgroup hierarchy
# (v2: /sys/fs/cgroup with the memory controller; v1: /sys/fs/cgroup/memory). Prints a Markdown table.
#   scripts/cgroup-limit.sh [LIMIT_MIB] [topiary binary]
set -uo pipefail
cd "$(dirname "$0")/.."
LIMIT_MIB=${1:-1024}
BIN=$(realpath "${2:-.build/release/topiary}")
DATA=${DATA:-../shared/data}
OUT=$(mktemp -d /tmp/topiary-cgroup.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CG=/sys/fs/cgroup/topiary-limit-$$; mkdir "$CG" || exit 1
    echo $((LIMIT_MIB << 20)) > "$CG/memory.max"; echo 0 > "$CG/memory.swap.max" 2>/dev/null
    PEAK=memory.peak
else
    CG=/sys/fs/cgroup/memory/topiary-limit-$$; mkdir "$CG" || exit 1
    echo $((LIMIT_MIB << 20)) > "$CG/memory.limit_in_bytes"
    PEAK=memory.max_usage_in_bytes
fi
trap 'rm -rf "$OUT"; rmdir "$CG" 2>/dev/null' EXIT
M=(--model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf)
TEXT=$DATA/wikitext-2-raw/test.txt
cmds=(
    "inspect ${M[*]}"
    "perplexity ${M[*]} --data $DATA --windows 4"
    "generate ${M[*]} --prompt University --max-tokens 8"
    "prune ${M[*]} --data $DATA --ratio 0.2 --layers 3-27 --out $OUT/obs"
    "prune ${M[*]} --data $DATA --ratio 0.2 --layers 3-27 --importance taylor --out $OUT/taylor"
    "prune ${M[*]} --data $DATA --blocks 3 --block-criterion influence --calibration-windows 4 --calibration-length 128 --out $OUT/d3"
    "sparsify ${M[*]} --data $DATA --method wanda --sparsity 0.5 --out $OUT/wanda"
    "finetune ${M[*]} --data $TEXT --data-offset 32768 --steps 2 --out $OUT/ft"
    "distill ${M[*]} --teacher ${M[1]} --data $TEXT --data-offset 32768 --steps 2 --out $OUT/kd"
    "export ${M[*]} --type q8_0 --out $OUT/m.gguf"
    "export ${M[*]} --format safetensors-hf --out $OUT/hf"
    "evaluate ${M[*]} --data $DATA --tasks piqa --limit 5 --out $OUT/eval"
    "bench ${M[*]} --skip-backward --repeats 1"
)
echo "| command | exit | peak MiB | outcome |"
echo "|---|---:|---:|---|"
for c in "${cmds[@]}"; do
    # A fresh start for each command: drop the group's page cache and its peak.
    [ -f "$CG/memory.force_empty" ] && echo 0 > "$CG/memory.force_empty"
    [ -f "$CG/memory.max_usage_in_bytes" ] && echo 0 > "$CG/memory.max_usage_in_bytes"
    # shellcheck disable=SC2086
    sh -c "echo \$\$ > $CG/cgroup.procs && exec $BIN $c" > "$OUT/stdout" 2> "$OUT/stderr"
    rc=$?
    peak=$(( $(cat "$CG/$PEAK" 2>/dev/null || echo 0) >> 20 ))
    if [ $rc -eq 0 ]; then what="ran"
    elif [ $rc -eq 137 ]; then what="KILLED (out of memory, no message)"
    else what="refused: $(grep -m1 'error:' "$OUT/stderr" | cut -c1-200)"; fi
    if grep -q "Fatal error\|Stack dump" "$OUT/stderr"; then what="CRASH: $(grep -m1 'Fatal error' "$OUT/stderr")"; fi
    echo "| \`topiary ${c%% *}${c#* --model checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf}\` | $rc | $peak | $what |" \
        | sed "s#$OUT#OUT#g; s#$DATA#DATA#g"
done
