#!/usr/bin/env bash
# Crash-safety test of `topiary run`: one clean run of a small recipe, then N runs (default 20) each killed with
# SIGKILL at a random moment and rerun until they finish. After every kill, each checkpoint directory that is
# visible (not a hidden temporary one) must verify against its manifest (`topiary verify`), so a partial checkpoint
# can never be loaded; after every rerun, results.json's metrics must equal the clean run's.
#   scripts/sigkill-test.sh [N]          (needs .build/release/topiary; MODEL, DATA, WORK may be set)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
T=${TOPIARY:-$PWD/.build/release/topiary}
MODEL=${MODEL:-$PWD/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DATA:-$PWD/../shared/data}
WORK=${WORK:-$(mktemp -d /tmp/topiary-sigkill.XXXXXX)}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
[ -x "$T" ] || { echo "sigkill-test: build first: swift build -c release --product topiary" >&2; exit 2; }
mkdir -p "$WORK"
cat > "$WORK/tiny.yaml" <<YAML
version: 1
name: sigkill
model: $MODEL
data: $DATA
seed: 1
stages:
  importance:
    criterion: l2
  prune:
    ratio: 0.5
    layers: 3-27
  finetune:
    data: wikitext2
    steps: 12
    batch: 1
    length: 32
    lr: 1.0e-3
    save_every: 1
    eval_every: 0
    val_windows: 0
  merge: {}
  evaluate:
    models: [pruned, final]
    perplexity: { datasets: [wikitext2], window: 128, windows: 2 }
    tasks: [piqa]
    limit: 4
YAML

metrics() { python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["metrics"], sort_keys=True))' "$1/results.json"; }
same() {
    python3 - "$1" "$2" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
bad = [k for k in a if k not in b or (isinstance(a[k], (int, float)) and abs(a[k] - b[k]) > 1e-5 * max(1.0, abs(a[k]))) or (not isinstance(a[k], (int, float)) and a[k] != b[k])]
sys.exit(1 if bad or set(a) != set(b) else 0)
PY
}
# Every visible checkpoint directory (one holding model.safetensors or state.json) must verify.
check_no_partial() {
    local out=$1 d
    while IFS= read -r d; do
        case "$(basename "$d")" in .*) continue ;; esac
        "$T" verify "$d" > /dev/null 2>> "$WORK/verify.err" || { echo "partial or damaged checkpoint visible: $d"; cat "$WORK/verify.err"; return 1; }
    done < <(find "$out" \( -name model.safetensors -o -name state.json \) -not -path '*/.*' -printf '%h\n' | sort -u)
}

start=$(date +%s.%N)
"$T" run "$WORK/tiny.yaml" --out "$WORK/clean" --quiet 2> "$WORK/clean.log"
clean_seconds=$(python3 -c "import time; print(round(time.time() - $start, 1))")
expected=$(metrics "$WORK/clean")
echo "clean run: ${clean_seconds}s, metrics $expected"

passed=0
for i in $(seq 1 "$N"); do
    out=$WORK/run-$i
    delay=$(python3 -c "import random; random.seed($i); print(round(random.uniform(0.2, $clean_seconds), 2))")
    "$T" run "$WORK/tiny.yaml" --out "$out" --quiet 2> "$WORK/run-$i.killed.log" &
    pid=$!
    sleep "$delay"
    if kill -KILL "$pid" 2> /dev/null; then killed=yes; else killed="no (finished first)"; fi
    wait "$pid" 2> /dev/null || true
    ok=1
    check_no_partial "$out" || ok=0
    stage=$(ls "$out" 2> /dev/null | grep -E '^[0-9]{2}-' | while read -r s; do [ -f "$out/$s/manifest.json" ] || { echo "$s"; break; }; done)
    reruns=0
    until "$T" run "$WORK/tiny.yaml" --out "$out" --quiet 2> "$WORK/run-$i.rerun.log"; do
        reruns=$((reruns + 1))
        [ $reruns -ge 3 ] && { echo "run $i: rerun keeps failing:"; tail -3 "$WORK/run-$i.rerun.log"; ok=0; break; }
    done
    check_no_partial "$out" || ok=0
    got=$(metrics "$out" 2> /dev/null || echo '{}')
    same "$expected" "$got" || { echo "run $i: metrics differ: $got"; ok=0; }
    [ $ok = 1 ] && passed=$((passed + 1))
    echo "run $i: killed after ${delay}s: $killed, in ${stage:-(after the stages)}; rerun $( [ $ok = 1 ] && echo 'matches the clean run' || echo FAILED )"
    rm -rf "$out"
done
echo "SIGKILL test: $passed/$N passed (work dir $WORK)"
[ "$passed" = "$N" ]
