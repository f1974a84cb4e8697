#!/usr/bin/env bash
# The 2-core sitting: the CPU targets of docs/benchmarks.md ("Accelerator
# features on 2 CPU cores") in one run. Each benchmark runs beside its PyTorch
# peer, peer first, twice, since absolute timings drift between sittings and
# ratios within one do not; then the default run and the float32 tiny presets'
# params_sha256. Nothing else should run meanwhile.
#
#   PEER_PYTHON=VENV/bin/python bash benchmarks/cpu_sitting.sh [OUT]
#
# PEER_PYTHON is a Python with the peers' packages (pip install torch==2.13.0);
# without it the peers are skipped. Logs collect in OUT (/tmp/cpu-sitting); a
# summary is printed last.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/cpu-sitting}
PY=${PYTHON:-python3}
PEER=${PEER_PYTHON:-}
BENCH=${PEER_BENCH:-../shared/bench}
export PYTHONUNBUFFERED=1
export SEQLAB_DATA=${SEQLAB_DATA:-../shared/data}
mkdir -p "$OUT"

# timed NAME COMMAND...: under /usr/bin/time -v, its output in OUT/NAME.log.
timed() {
  local name=$1; shift
  /usr/bin/time -v "$@" >"$OUT/$name.log" 2>&1
  echo "$name: rc $?"
}

# rate NAME: tokens/s of a peer's line (tgt_tokens/s=N) or a benchmark row, and peak RSS.
rate() {
  local log=$OUT/$1.log tps
  tps=$(grep -ho 'tokens/s=[0-9]*' "$log" | tail -1 | cut -d= -f2)
  [ -z "$tps" ] && tps=$(grep '^{' "$log" | tail -1 | $PY -c \
    'import json, sys; print(round(json.load(sys.stdin)["tokens_per_second"]))' 2>/dev/null)
  echo "${tps:-?} tokens/s, peak RSS $(awk '/Maximum resident/ {print int($6 / 1024)}' "$log") MB"
}

for i in 1 2; do
  if [ -n "$PEER" ]; then timed "torch_transformer-$i" "$PEER" "$BENCH/torch_transformer.py"; fi
  timed "transformer-$i" "$PY" launch.py --config=configs/transformer.py:bench --mode=benchmark
done
for i in 1 2; do  # torch_gpt.py eager, then through torch.compile (needs a C++ compiler).
  if [ -n "$PEER" ]; then
    timed "torch_gpt-$i" "$PEER" "$BENCH/torch_gpt.py"
    timed "torch_gpt_compile-$i" "$PEER" "$BENCH/torch_gpt.py" --compile
  fi
  timed "lm-$i" "$PY" launch.py --config=configs/lm.py:bench --mode=benchmark
done
for i in 1 2; do
  if [ -n "$PEER" ]; then
    timed "torch_rnn-$i" "$PEER" "$BENCH/torch_rnn_attention.py" --steps 10
  fi
  timed "seq2seq-$i" "$PY" launch.py --config=configs/seq2seq.py:bench --mode=benchmark
done
rm -rf "$OUT/dates"
timed dates "$PY" launch.py --workdir="$OUT/dates"
"$PY" benchmarks/tiny_hashes.py --out="$OUT/tiny" >"$OUT/tiny.log" 2>&1
echo "tiny presets: rc $?"

echo
echo "commit $(git rev-parse --short HEAD), $(date -u +%F), $(nproc) cores," \
  "$(lscpu | sed -n 's/^Model name: *//p')"
for name in torch_transformer-1 transformer-1 torch_transformer-2 transformer-2 \
            torch_gpt-1 torch_gpt_compile-1 lm-1 torch_gpt-2 torch_gpt_compile-2 lm-2 \
            torch_rnn-1 seq2seq-1 torch_rnn-2 seq2seq-2; do
  [ -e "$OUT/$name.log" ] && echo "$name: $(rate "$name")"
done
$PY - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
try:
  r = json.load(open(os.path.join(out, 'dates', 'results.json')))
except OSError:
  sys.exit('dates: no results.json')
first = next((m for m in map(json.loads, open(os.path.join(out, 'dates', 'metrics.jsonl')))
              if m.get('validation/exact_match', 0) >= 0.99), {})
print(f"dates: test exact match {r.get('test/exact_match')}; validation >= 0.99 at step "
      f"{first.get('step')}, {first.get('time/elapsed_seconds', 0):.1f} s into the run; "
      f"wall_seconds {r.get('wall_seconds', 0):.1f}; params_sha256 {r['params_sha256'][:12]}")
PY
awk '/Elapsed \(wall/ {print "dates: " $NF " whole"}' "$OUT/dates.log"
tail -1 "$OUT/tiny.log"
