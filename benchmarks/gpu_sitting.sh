#!/usr/bin/env bash
# The accelerator sitting: every GPU figure of docs/benchmarks.md ("Accelerator
# features on a GPU") in one run, the steps of known cost first.
#
#   bash benchmarks/gpu_sitting.sh [DEADLINE_SECONDS]
#
# Steps already finished (a marker in $SITTING, or named in $SKIP) are skipped,
# so a second call on the same machine continues where a first one ran out of
# time. With $ONLY set, only the steps it names run, besides the smoke run;
# the 10-minute character model runs only when named there (ONLY=char_gpu),
# as a lease of its own. Multi30k's steps are multi30k_float32 and the like.
# Each step's log and the JSON rows collect in $SITTING, with the profiled
# steps' kernel times (NAME.kernels) and the bench_gpu step's optimized HLO; a
# summary table is printed last, and with $OUT set all of it is packed there.
# Packages missing from the machine can come as wheels in .whl/base (installed
# first) and .whl/pin (flax, optax and orbax at the project's pins, tried when
# the machine's own fail the smoke run).
set -u
cd "$(dirname "$0")/.."
START=$(date +%s)
DEADLINE=$((START + ${1:-540}))
SITTING=${SITTING:-/tmp/sitting}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export SEQLAB_DATA=${SEQLAB_DATA:-../shared/data}
mkdir -p "$SITTING"
for name in ${SKIP:-}; do touch "$SITTING/$name.done"; done  # done on an earlier machine.

left() { echo $((DEADLINE - $(date +%s))); }
# skipped NAME: done already, or not among $ONLY (the smoke run always runs).
skipped() {
  [ -e "$SITTING/$1.done" ] ||
    { [ -n "${ONLY:-}" ] && [ "$1" != smoke ] && [[ " $ONLY " != *" $1 "* ]]; }
}

if [ -d .whl/base ] && [ ! -e "$SITTING/site.done" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITTING/site" .whl/base/*.whl && touch "$SITTING/site.done"
fi
[ -d "$SITTING/site" ] && export PYTHONPATH="$SITTING/site"

# step NAME MAX_SECONDS COMMAND...: runs COMMAND unless done, within its share of
# the time left; the last line of a benchmark's log is its JSON row.
step() {
  local name=$1 max=$2; shift 2
  skipped "$name" && return 0
  local budget; budget=$(left)
  [ "$budget" -gt "$max" ] && budget=$max
  if [ "$budget" -lt 30 ]; then echo "$name: skipped, ${budget}s left"; return 1; fi
  local t0; t0=$(date +%s)
  timeout "$budget" "$@" >"$SITTING/$name.log" 2>&1
  local rc=$?
  echo "$name: rc $rc in $(( $(date +%s) - t0 ))s"
  if [ $rc -eq 0 ]; then touch "$SITTING/$name.done"; else tail -5 "$SITTING/$name.log"; fi
  return $rc
}

bench() {  # bench NAME MAX ARGS...: launch.py --mode=benchmark.
  local name=$1 max=$2; shift 2
  step "$name" "$max" $PY launch.py --mode=benchmark --workdir="$SITTING/w-$name" "$@" || return 1
  local last; last=$(tail -1 "$SITTING/$name.log" 2>/dev/null)
  if [[ $last == '{'* ]]; then echo "$last" >"$SITTING/$name.json"; fi
}

# profile NAME MAX ARGS...: bench, then 3 steps traced, and the step's optimized HLO
# dumped (hlo-NAME/); their kernels and op groups in NAME.kernels.
profile() {
  local name=$1; shift
  skipped "$name" && return 0
  XLA_FLAGS="${XLA_FLAGS:-} --xla_dump_to=$SITTING/hlo-$name --xla_dump_hlo_as_text \
    --xla_dump_hlo_module_re=.*train_step.*" bench "$name" "$@" --config.bench.profile_steps=3 ||
    return 1
  local trace hlo
  trace=$(ls -t "$SITTING/w-$name"/tensorboard/plugins/profile/*/perfetto_trace.json.gz | head -1)
  hlo=$(ls "$SITTING/hlo-$name"/*train_step*after_optimizations.txt 2>/dev/null | head -1)
  cp "$trace" "$SITTING/$name.perfetto_trace.json.gz"
  $PY benchmarks/kernel_times.py "$SITTING/w-$name" 40 $hlo >"$SITTING/$name.kernels" 2>&1
  head -30 "$SITTING/$name.kernels"
}

if [ ! -e "$SITTING/env.done" ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    >"$SITTING/env.txt" 2>&1
  $PY -c 'import jax, flax, optax, orbax.checkpoint as o, sys; print(sys.version.split()[0],
jax.__version__, flax.__version__, optax.__version__, o.__version__, jax.devices())' \
    >>"$SITTING/env.txt" 2>&1 && touch "$SITTING/env.done"
  cat "$SITTING/env.txt"
fi

SMOKE=(--config=configs/lm.py:tiny --config.data.name=random --config.model.attention_impl=xla)
if ! bench smoke 90 "${SMOKE[@]}"; then
  echo "the machine's flax, optax and orbax failed the smoke run; the pinned ones next"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITTING/site" .whl/pin/*.whl
  bench smoke 90 "${SMOKE[@]}" || { tail -30 "$SITTING/smoke.log"; exit 1; }
fi

T=--config=configs/transformer.py:bench_gpu
LM=(--config=configs/lm.py:gpt2_small --config.data.name=random)
profile transformer_profile 150 $T
profile gpt2 170 "${LM[@]}"  # the preset makes its initial state on the host.
bench transformer_xla 90 $T --config.model.attention_impl=xla
bench transformer 150 $T
bench transformer_remat 120 $T --config.model.remat=True
bench transformer_mb4 120 $T --config.train.microbatches=4

# Multi30k in float32 and in bfloat16, side by side (each half the memory); the
# evaluations in between are skipped, which leaves the training unchanged.
m30k_pair() {  # m30k_pair NAME SEED
  local name=$1 seed=$2
  if [ -e "$SITTING/$name.done" ] || [ "$(left)" -le 120 ]; then return 0; fi
  for dtype in float32 bfloat16; do
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 step "${name}_$dtype" 600 $PY launch.py \
      --config=configs/transformer.py:multi30k --workdir="$SITTING/$name-$dtype" \
      --config.model.dtype=$dtype --config.eval.every=3000 --config.seed=$seed &
  done
  wait
  [ -e "$SITTING/${name}_float32.done" ] && [ -e "$SITTING/${name}_bfloat16.done" ] &&
    touch "$SITTING/$name.done"
}
m30k_pair multi30k 0
m30k_pair multi30k_seed1 1

bench gpt2_xla 300 "${LM[@]}" --config.model.attention_impl=xla
bench gpt2_remat 300 "${LM[@]}" --config.model.remat=True
XLA_FLAGS=--xla_gpu_enable_triton_gemm=false bench transformer_cublas 90 $T
# cuBLASLt folds bias adds and activations into the gemms' epilogues.
XLA_FLAGS=--xla_gpu_enable_cublaslt=true bench transformer_cublaslt 90 $T
XLA_FLAGS=--xla_gpu_enable_cublaslt=true bench gpt2_cublaslt 90 "${LM[@]}"
# The GPU character model: test bpc within 10 minutes, start-up and test included;
# only when ONLY names it, since it needs a command's whole time.
if [[ " ${ONLY:-} " == *" char_gpu "* ]]; then
  step char_gpu 590 $PY launch.py --config=configs/lm.py:char_gpu --workdir="$SITTING/char_gpu"
fi

echo "== rows"
for f in "$SITTING"/*.json; do
  [ -e "$f" ] || continue
  $PY - "$f" <<'EOF'
import json, os, sys
row = json.loads(open(sys.argv[1]).read())
keys = ('tokens_per_second', 'target_tokens_per_second', 'steps_per_second', 'mfu', 'step_gflops',
        'peak_device_memory_mb', 'dtype', 'init_seconds', 'first_step_seconds')
print(os.path.basename(sys.argv[1])[:-5], {k: row[k] for k in keys if k in row})
EOF
done
r=$SITTING/char_gpu/results.json
[ -e "$r" ] && $PY -c "import json; r=json.load(open('$r')); print('char_gpu', {k: r.get(k)
for k in ('test/bpc', 'validation/bpc', 'wall_seconds', 'time/start_to_trained_seconds')})"
for r in "$SITTING"/multi30k*-*/results.json; do
  [ -e "$r" ] && $PY -c "import json; r=json.load(open('$r')); print('$r'.split('/')[-2], {k: r.get(k)
for k in ('test/bleu_lowercase', 'test/bleu', 'validation/bleu', 'wall_seconds',
          'time/start_to_trained_seconds')})"
done
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/sitting.tar.gz" -C "$SITTING" --exclude=site --exclude='w-*' --exclude='hlo-*' \
    --exclude='checkpoints' --exclude='tensorboard' . 2>/dev/null
  (cd "$SITTING" && ls -d hlo-*/*train_step*after_optimizations.txt 2>/dev/null) |
    tar czf "$OUT/hlo.tar.gz" -C "$SITTING" -T - 2>/dev/null
fi
echo "sitting: $(( $(date +%s) - START ))s"
