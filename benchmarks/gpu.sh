#!/usr/bin/env bash
# STiCA train-step benchmark on one GPU (H100 / H200), in under 8 minutes all told:
#   1. nvidia-smi;  2. imports (ml_collections from benchmarks/wheels/ when missing);
#   3. correctness: the tiny config's train step on the GPU (loss, grad norm finite), and the
#      (2+1)D convolutions as 2-D folds vs 3-D kernels (benchmarks/conv2plus1d.py);
#   4. the SOTA step (60×112², bf16) at batch/device $BATCH_SIZES (the first, 2, is also the
#      check that one SOTA step is finite), clips/s + MFU, larger sizes skipped after an OOM
#      or when the time budget runs out. Each size compiles anew: on an H100 (jax 0.11.2)
#      77-100 s at 2, 106 s at 8, 143-156 s at 16 (over 5 min at 32), so with the default list
#      2,16,32 the budget runs 2 and 16 and skips 32 (measured: 425 s, status 0);
#      benchmarks/RESULTS.md has 4 and 8 from separate calls.
# Run from anywhere: bash benchmarks/gpu.sh. Logs and JSON go to $OUT (else /tmp/stica_gpu_bench):
#   gpu.log (everything), tiny.json, sota.json. Exit status non-zero if a check failed.
# Knobs (environment): BATCH_SIZES=2,16,32 STEPS=20 WARMUP=3 PEAK_TFLOPS=989
#   TOTAL_S=470 (hard limit for the whole script), PYTHON=python3.
# Dry run of this script's logic on a CPU (no GPU; the "SOTA" run made tiny):
#   ALLOW_CPU=1 PYTHON=/work/venv/bin/python BATCH_SIZES=1,2 STEPS=1 WARMUP=0 EXTRA_ARGS=--tiny \
#     bash benchmarks/gpu.sh
set -u -o pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT:-/tmp/stica_gpu_bench}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
BATCH_SIZES=${BATCH_SIZES:-2,16,32}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
TOTAL_S=${TOTAL_S:-470}
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-.9}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-1}

run() {  # run LIMIT_S NAME CMD...: one timed, logged step; keeps the worst exit status.
  local limit=$1 name=$2; shift 2
  local left=$((TOTAL_S - SECONDS - 5))
  if ((left < limit)); then limit=$left; fi
  if ((limit < 10)); then
    echo "=== [$(date +%T)] $name: SKIPPED, no time left (${SECONDS}s used of ${TOTAL_S}s)"
    STATUS=1; return 1
  fi
  echo "=== [$(date +%T)] $name (timeout ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "=== [$(date +%T)] $name: rc=$rc$( ((rc == 124 || rc == 137)) && echo ' (timed out)')"
  if ((rc != 0)); then STATUS=1; fi
  return $rc
}

main() {
  STATUS=0
  run 15 nvidia-smi nvidia-smi
  run 10 gpu-query nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv

  if ! "$PY" -c "import ml_collections" 2>/dev/null; then
    if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
      echo "=== ml_collections missing: installing benchmarks/wheels/*.whl into /tmp/stica_site"
      if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
          --target /tmp/stica_site benchmarks/wheels/*.whl; then
        export PYTHONPATH=/tmp/stica_site${PYTHONPATH:+:$PYTHONPATH}
      else  # pure-Python wheels import straight from the zip
        for w in benchmarks/wheels/*.whl; do PYTHONPATH=$PWD/$w${PYTHONPATH:+:$PYTHONPATH}; done
        export PYTHONPATH
      fi
    else
      echo "=== ml_collections missing and no benchmarks/wheels/*.whl: see benchmarks/README.md"
    fi
  fi
  if ! run 60 imports "$PY" -c "
import sys, jax, flax, optax, einops, absl, yaml, ml_collections
sys.path.insert(0, '.')
import stica_jax.step, stica_jax.models.summary, configs.sota, tests.tiny
bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'clu') if m in sys.modules]
print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__,
      'optax', optax.__version__, 'devices', jax.devices())
assert not bad, f'imported {bad}'
import os
assert jax.devices()[0].platform == 'gpu' or os.environ.get('ALLOW_CPU'), 'JAX sees no GPU'
"; then
    echo "=== imports failed: stopping"; return 1
  fi

  run 100 tiny-check "$PY" benchmarks/train_step.py --tiny --batch_sizes=2 --steps=2 --warmup=1 \
    --peak_tflops="$PEAK_TFLOPS" --json="$OUT_DIR/tiny.json"

  # 2-D fold vs 3-D kernels of the (2+1)D convolutions (stica_jax.models.layers.Conv).
  run 60 conv-fold "$PY" benchmarks/conv2plus1d.py --sota

  # The benchmark skips a batch size that would end after its budget; the timeout is the backstop.
  local left=$((TOTAL_S - SECONDS - 5))
  run "$left" sota-benchmark "$PY" benchmarks/train_step.py --batch_sizes="$BATCH_SIZES" \
    --steps="$STEPS" --warmup="$WARMUP" --peak_tflops="$PEAK_TFLOPS" \
    --time_budget_s=$((left - 30)) --json="$OUT_DIR/sota.json" ${EXTRA_ARGS:-}

  echo "=== [$(date +%T)] done in ${SECONDS}s, status=$STATUS"
  grep -h "^summary:" "$OUT_DIR/gpu.log" 2>/dev/null
  return $STATUS
}

main 2>&1 | tee "$OUT_DIR/gpu.log"
