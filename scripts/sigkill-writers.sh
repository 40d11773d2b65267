#!/usr/bin/env bash
# Crash-safety of every command that writes a model or a table (prune, sparsify, finetune, distill, export, sweep): each is
# killed with SIGKILL at N random moments (default 20) within the time a clean run takes. After every kill, whatever
# is visible under the output's name must be complete (a checkpoint passes `topiary verify`, a GGUF equals the clean
# one, a sweep has no table or the clean table); then the same command is run again (finetune, distill with --resume) and its
# output must equal the clean run's.   scripts/sigkill-writers.sh [N] [COMMANDS…]   (needs .build/release/topiary)
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
shift || true
COMMANDS=${*:-prune sparsify finetune distill export sweep}
T=${TOPIARY:-$PWD/.build/release/topiary}
MODEL=${MODEL:-$PWD/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DATA:-$PWD/../shared/data}
WORK=${WORK:-$(mktemp -d /tmp/topiary-sigkill-writers.XXXXXX)}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
[ -x "$T" ] || { echo "sigkill-writers: build first: swift build -c release --product topiary" >&2; exit 2; }
mkdir -p "$WORK"

args() {  # the command line of $1 writing to $2
    case $1 in
        prune) echo prune --model "$MODEL" --data "$DATA" --out "$2" --ratio 0.2 --layers 3-27 --importance l2 --force ;;
        sparsify) echo sparsify --model "$MODEL" --data "$DATA" --out "$2" --method magnitude --sparsity 0.5 --force ;;
        finetune) echo finetune --model "$MODEL" --data "$DATA" --out "$2" --steps 8 --batch 1 --length 32 --save-every 1 \
            --eval-every 0 --val-windows 0 ;;
        # The student is the dense model itself (crash-safety, not quality); --top-k makes it write the teacher cache too.
        distill) echo distill --model "$MODEL" --teacher "$MODEL" --data "$DATA" --out "$2" --steps 8 --batch 1 --length 32 \
            --save-every 1 --eval-every 0 --val-windows 0 --top-k 16 ;;
        export) echo export --model "$MODEL" --out "$2" --type q8_0 --force ;;
        sweep) echo sweep --model "$MODEL" --data "$DATA" --out "$2" --methods magnitude,random --levels 0.3,0.6 --window 128 \
            --windows 2 --quiet ;;
    esac
}
output() { case $1 in export) echo "$WORK/$1-$2.gguf" ;; *) echo "$WORK/$1-$2" ;; esac; }
# What must equal the clean run's: the weights, the adapters, the GGUF or the table.
digest() {
    case $1 in
        prune | sparsify) sha256sum "$2/model.safetensors" 2>/dev/null | cut -d' ' -f1 ;;
        finetune | distill) sha256sum "$2/adapter_model.safetensors" 2>/dev/null | cut -d' ' -f1 ;;
        export) sha256sum "$2" 2>/dev/null | cut -d' ' -f1 ;;
        sweep) sha256sum "$2/02-sweep/sweep.csv" 2>/dev/null | cut -d' ' -f1 ;;
    esac
}
# Whatever a kill left under the final name is complete, or nothing is there.
visible_ok() {
    case $1 in
        prune | sparsify) [ ! -e "$2" ] || "$T" verify "$2" >/dev/null 2>&1 ;;
        finetune | distill) [ ! -e "$2/adapter_model.safetensors" ] || [ "$(digest finetune "$2")" = "$3" ] ;;
        export) [ ! -e "$2" ] || [ "$(digest export "$2")" = "$3" ] ;;
        sweep) [ ! -e "$2/02-sweep/sweep.csv" ] || [ "$(digest sweep "$2")" = "$3" ] ;;
    esac
}

status=0
for c in $COMMANDS; do
    clean=$(output "$c" clean)
    start=$(date +%s.%N)
    # shellcheck disable=SC2046
    "$T" $(args "$c" "$clean") >"$WORK/$c-clean.log" 2>&1 || { echo "$c: the clean run failed (see $WORK/$c-clean.log)"; exit 1; }
    duration=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    want=$(digest "$c" "$clean")
    ok=0
    for i in $(seq "$N"); do
        out=$(output "$c" "k$i")
        moment=$(awk -v d="$duration" -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 0.05 + rand() * d * 0.95 }')
        # shellcheck disable=SC2046
        "$T" $(args "$c" "$out") >"$WORK/$c-k$i.log" 2>&1 &
        pid=$!
        sleep "$moment"
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        if ! visible_ok "$c" "$out" "$want"; then
            echo "$c kill $i at ${moment}s: a partial output is visible under $out"
            status=1
            continue
        fi
        extra=""
        { [ "$c" = finetune ] || [ "$c" = distill ]; } && [ -d "$out/checkpoint" ] && extra="--resume"
        # shellcheck disable=SC2046
        if ! "$T" $(args "$c" "$out") $extra >>"$WORK/$c-k$i.log" 2>&1; then
            echo "$c kill $i at ${moment}s: the rerun failed (see $WORK/$c-k$i.log)"
            status=1
            continue
        fi
        if [ "$(digest "$c" "$out")" != "$want" ]; then
            echo "$c kill $i at ${moment}s: the rerun's output differs from the clean run's"
            status=1
            continue
        fi
        ok=$((ok + 1))
        rm -rf "$out"
    done
    printf '%s: %d/%d kills (at random moments within %.1f s) left no partial output and reran to the clean result\n' \
        "$c" "$ok" "$N" "$duration"
done
[ $status = 0 ] && rm -rf "$WORK"
exit $status
