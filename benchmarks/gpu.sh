#!/usr/bin/env bash
# The whole GPU session of the STiCA benchmarks on one H100 / H200, in at most TOTAL_S=530 s:
# JAX (stica_jax) and PyTorch (benchmarks/torch_baseline.py) at the same batch sizes in the
# same run, profiles of both, the candidate fixes one at a time, and compile times.
#
# Needs on the machine: python3 with jax[cuda], flax, optax, einops, absl-py, PyYAML, torch,
# torchvision, safetensors (the device image has them all) and ml_collections, which the image
# lacks: carry it as a wheel in benchmarks/wheels/ (README.md, "On a GPU machine"). Nothing
# is downloaded. Run from anywhere: bash benchmarks/gpu.sh.
#
# Phases (each under `timeout`, each skipped when the time left is too short):
#   0. nvidia-smi; ml_collections from benchmarks/wheels/ if missing; an import check (JAX
#      and torch both see the GPU, no TensorFlow).
#   1. In the background, on CPU cores 4.. (taskset): the JAX compile farm. FARM_PARALLEL
#      `train_step.py --compile_only` processes compile the SOTA step from shapes with
#      FAST_FLAGS (--xla_gpu_autotune_level=0: no cuDNN/Triton autotuning, so no GPU time)
#      into the persistent cache $CACHE: the baseline at each of BATCH_SIZES and every fix of
#      FIXES at FIX_BATCH. Meanwhile, in the foreground on cores 0-3 and the GPU:
#   2. PyTorch: torch_baseline.py, eager, TORCH_LAYOUTS × BATCH_SIZES (cudnn.benchmark's
#      autotuning is in its compile_s), with a torch.profiler summary at FIX_BATCH; then
#   3. JAX with XLA's default autotuning at AUTOTUNE_BATCH, compiled cold into a fresh cache
#      $CACHE_AT (compile time with autotuning, and the step with autotuned kernels).
#   4. JAX timing processes (FAST_FLAGS, $CACHE: compile_s is now the cache load): the
#      baseline at BATCH_SIZES with a jax.profiler summary and the optimised-HLO counts at
#      FIX_BATCH, then each fix at FIX_BATCH; then the autotuned program again in a new
#      process (warm persistent + autotune cache).
#   5. torch.compile of the model (TORCH_COMPILE=1) at FIX_BATCH, first layout, if time.
#   6. benchmarks/compare.py: the tables (JAX / PyTorch ratio per batch size, fixes, compiles)
#      into summary.md and the end of the log.
# On one GPU the collectives are no-ops, so the fixes measured here are those that change the
# work of one device (one-pass BN statistics, padded channels, and both with one gradient psum
# per parameter); per-device BN and the gradient psum alone only change collectives (their
# counts: benchmarks/hlo_stats.py on fake CPU devices, RESULTS.md).
# What comes back in $OUT (else /tmp/stica_gpu_bench): gpu.log (everything), summary.md
# (the tables), jax_sota.json, torch.json, results.tgz (every JSON, log and the traces).
# Exit status non-zero if a check or a benchmark failed.
# Knobs (environment): BATCH_SIZES=8,16,32 FIX_BATCH=16 AUTOTUNE_BATCH=8 STEPS=10 WARMUP=2
#   FIX_STEPS=10 PROFILE_STEPS=3 PEAK_TFLOPS=989 TOTAL_S=530 FARM_PARALLEL=6 FAST_FLAGS=...
#   TORCH_LAYOUTS=...
#   TORCH_COMPILE=1 FIXES="name:--flag ..." CACHE=/tmp/stica_jax_cache PYTHON=python3.
# Dry run of the logic on a CPU (slow there; fails only its nvidia-smi steps):
#   ALLOW_CPU=1 DRY_RUN=1 PYTHON=python bash benchmarks/gpu.sh
set -u -o pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT:-/tmp/stica_gpu_bench}
WORK=$OUT_DIR/work
mkdir -p "$WORK/json" "$WORK/logs" "$WORK/profiles"
PY=${PYTHON:-python3}
BATCH_SIZES=${BATCH_SIZES:-8,16,32}
FIX_BATCH=${FIX_BATCH:-16}
AUTOTUNE_BATCH=${AUTOTUNE_BATCH:-8}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
FIX_STEPS=${FIX_STEPS:-10}
PROFILE_STEPS=${PROFILE_STEPS:-3}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
TOTAL_S=${TOTAL_S:-530}
FARM_PARALLEL=${FARM_PARALLEL:-6}
FAST_FLAGS=${FAST_FLAGS:---xla_gpu_autotune_level=0}
TORCH_LAYOUTS=${TORCH_LAYOUTS:-channels_last_3d,ncdhw}
TORCH_COMPILE=${TORCH_COMPILE:-1}
FIXES=${FIXES:-bn_one_pass:--bn_one_pass pad8:--conv_channel_multiple=8 combined:--bn_one_pass,--conv_channel_multiple=8,--sum_grads_once}
CACHE=${CACHE:-/tmp/stica_jax_cache}
CACHE_AT=${CACHE}_autotune
JAX_EXTRA=${JAX_EXTRA:-}
TORCH_EXTRA=${TORCH_EXTRA:-}
if [[ -n ${DRY_RUN:-} ]]; then  # the logic on a CPU: tiny inputs, one size, one fix
  BATCH_SIZES=2 FIX_BATCH=2 AUTOTUNE_BATCH=2 STEPS=1 WARMUP=0 FIX_STEPS=1 FARM_PARALLEL=2
  PROFILE_STEPS=1
  FIXES="bn_one_pass:--bn_one_pass" TORCH_LAYOUTS=channels_last_3d TORCH_COMPILE=0
  JAX_EXTRA="--tiny" TORCH_EXTRA="--tiny --device=cpu --dtype=float32"
fi
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-1}
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-.9}

# CPU pinning: the foreground (GPU work) on cores 0-3, the compile farm on the rest.
FG=() BG=()
CORES=$(nproc 2>/dev/null || echo 1)
if command -v taskset >/dev/null && ((CORES >= 8)); then
  FG=(taskset -c 0-3) BG=(taskset -c "4-$((CORES - 1))")
fi

run() {  # run LIMIT_S NAME CMD...: one timed, logged step; keeps the worst exit status.
  local limit=$1 name=$2; shift 2
  local left=$((TOTAL_S - SECONDS - 5))
  if ((left < limit)); then limit=$left; fi
  if ((limit < 10)); then
    echo "=== [$(date +%T)] $name: SKIPPED, no time left (${SECONDS}s used of ${TOTAL_S}s)"
    STATUS=1; return 1
  fi
  echo "=== [$(date +%T)] $name (timeout ${limit}s, at ${SECONDS}s): $*"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "=== [$(date +%T)] $name: rc=$rc$( ((rc == 124 || rc == 137)) && echo ' (timed out)')"
  if ((rc != 0)); then STATUS=1; fi
  return $rc
}

left() { echo $((TOTAL_S - SECONDS - 5)); }

jax_bench() {  # jax_bench NAME JSON ARGS...: train_step.py with the fast flags and the cache
  local name=$1 json=$2; shift 2
  XLA_FLAGS="$FAST_FLAGS" run "$(left)" "$name" "${FG[@]}" "$PY" -m benchmarks.train_step \
    --peak_tflops="$PEAK_TFLOPS" --compilation_cache_dir="$CACHE" --json="$json" \
    --time_budget_s=$(($(left) - 20)) $JAX_EXTRA "$@"
}

jax_autotune() {  # jax_autotune cold|warm LIMIT_S: the baseline with XLA's default autotuning
  # shellcheck disable=SC2086
  run "$2" "jax-autotune-$1" "${FG[@]}" \
    "$PY" -m benchmarks.train_step --batch_sizes="$AUTOTUNE_BATCH" --steps="$FIX_STEPS" \
    --warmup=2 --variant="autotune_$1" --peak_tflops="$PEAK_TFLOPS" \
    --compilation_cache_dir="$CACHE_AT" --json="$WORK/json/autotune_$1.json" $JAX_EXTRA
}

farm() {  # the compile-only processes, FARM_PARALLEL at a time, in the background
  local todo=()
  IFS=, read -ra sizes <<<"$BATCH_SIZES"
  for b in "${sizes[@]}"; do todo+=("baseline_b$b:--batch_sizes=$b"); done
  for fix in $FIXES; do todo+=("${fix%%:*}_b$FIX_BATCH:--batch_sizes=$FIX_BATCH ${fix#*:}"); done
  # A fix's flags are comma-separated in FIXES (one word each): spaces here.
  for job in "${todo[@]}"; do
    while (($(jobs -rp | wc -l) >= FARM_PARALLEL)); do wait -n; done
    local name=${job%%:*} flags=${job#*:}
    flags=${flags//,/ }
    echo "=== [$(date +%T)] farm: compiling $name ($flags)"
    # shellcheck disable=SC2086
    XLA_FLAGS="$FAST_FLAGS" XLA_PYTHON_CLIENT_PREALLOCATE=false "${BG[@]}" "$PY" \
      -m benchmarks.train_step --compile_only --compilation_cache_dir="$CACHE" \
      --variant="${name%_b*}" --json="$WORK/json/farm_$name.json" $JAX_EXTRA $flags \
      >"$WORK/logs/farm_$name.log" 2>&1 &
  done
  wait
  echo "=== [$(date +%T)] farm: done"
}

main() {
  STATUS=0
  run 15 nvidia-smi nvidia-smi
  run 10 gpu-query nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit \
    --format=csv

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
  if ! run 90 imports "$PY" -c "
import os, sys
import torch, torchvision, safetensors
import jax, flax, optax, einops, absl, yaml, ml_collections
import stica_jax.step, stica_jax.models.summary, configs.sota, tests.tiny
import stica_jax.export.torch_modules
bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'clu') if m in sys.modules]
print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__,
      'optax', optax.__version__, 'torch', torch.__version__, 'torchvision',
      torchvision.__version__, 'devices', jax.devices(), 'cuda', torch.cuda.is_available())
assert not bad, f'imported {bad}'
cpu_ok = os.environ.get('ALLOW_CPU')
assert jax.devices()[0].platform == 'gpu' or cpu_ok, 'JAX sees no GPU'
assert torch.cuda.is_available() or cpu_ok, 'torch sees no GPU'
"; then
    echo "=== imports failed: stopping"; return 1
  fi
  echo "=== cores=$CORES foreground=${FG[*]:-all} farm=${BG[*]:-all} cache=$CACHE"

  # 1. The compile farm, in the background (its own limit: it must leave time to time).
  local farm_limit=$(($(left) - 200))
  ((farm_limit < 60)) && farm_limit=60
  (timeout --kill-after=10 "$farm_limit" bash -c "$(declare -f farm); $(declare -p \
      BATCH_SIZES FIXES FIX_BATCH FARM_PARALLEL FAST_FLAGS CACHE WORK PY JAX_EXTRA BG); farm" \
    >"$WORK/logs/farm.log" 2>&1) &
  local farm_pid=$!

  # 2. PyTorch on the GPU meanwhile.
  # shellcheck disable=SC2086
  run $(($(left) / 3)) torch-eager "${FG[@]}" "$PY" -m benchmarks.torch_baseline \
    --batch_sizes="$BATCH_SIZES" --steps="$STEPS" --warmup="$WARMUP" \
    --layouts="$TORCH_LAYOUTS" --modes=eager --peak_tflops="$PEAK_TFLOPS" \
    --time_budget_s=$(($(left) / 3 - 20)) --profile_dir="$WORK/profiles/torch" \
    --profile_batch="$FIX_BATCH" --profile_steps="$PROFILE_STEPS" \
    --json="$WORK/json/torch.json" $TORCH_EXTRA

  # 3. XLA's default autotuning, cold, while the farm may still be compiling on other cores.
  rm -rf "$CACHE_AT"
  # It must leave ~180 s for the JAX timing of step 4. Compiling at batch 8 took 106 s on an
  # H100 before, plus ~30 s of start, initialisation and tracing.
  local autotune_limit=$(($(left) - 180))
  if [[ -z ${DRY_RUN:-} ]] && ((autotune_limit >= 100)); then
    jax_autotune cold "$autotune_limit"
  else
    echo "=== jax-autotune-cold skipped ($(left) s left)"
  fi

  echo "=== [$(date +%T)] waiting for the compile farm (pid $farm_pid)"
  wait "$farm_pid" || { echo "=== farm: rc=$? (timed out or failed)"; STATUS=1; }
  cat "$WORK/logs/farm.log"
  grep -h "compile_s\|ERROR\|Error" "$WORK"/logs/farm_*.log 2>/dev/null | grep -v "^train_step"

  # 4. JAX timing from the cache: the baseline, each fix, the autotuned program warm.
  jax_bench jax-baseline "$WORK/json/jax_sota.json" --batch_sizes="$BATCH_SIZES" \
    --steps="$STEPS" --warmup="$WARMUP" --variant=baseline \
    --profile_dir="$WORK/profiles/jax" --profile_batch="$FIX_BATCH" \
    --profile_steps="$PROFILE_STEPS" --hlo_stats
  local flags
  for fix in $FIXES; do
    flags=${fix#*:}
    # shellcheck disable=SC2086
    jax_bench "jax-${fix%%:*}" "$WORK/json/fix_${fix%%:*}.json" --batch_sizes="$FIX_BATCH" \
      --steps="$FIX_STEPS" --warmup=2 --variant="${fix%%:*}" ${flags//,/ }
  done
  if [[ -d $CACHE_AT ]] && (($(left) > 45)); then
    jax_autotune warm "$(left)"
  else
    echo "=== jax-autotune-warm skipped ($(left) s left)"
  fi

  # 5. torch.compile, if time is left.
  if ((TORCH_COMPILE)) && (($(left) > 120)); then
    # shellcheck disable=SC2086
    run "$(left)" torch-compile "${FG[@]}" "$PY" -m benchmarks.torch_baseline \
      --batch_sizes="$FIX_BATCH" --steps="$FIX_STEPS" --warmup=2 \
      --layouts="${TORCH_LAYOUTS%%,*}" --modes=compile --peak_tflops="$PEAK_TFLOPS" \
      --json="$WORK/json/torch_compile.json" $TORCH_EXTRA
  else
    echo "=== torch.compile skipped (TORCH_COMPILE=$TORCH_COMPILE, $(left) s left)"
  fi

  # 6. The tables.
  local fixes_json="" compile_json=""
  for fix in $FIXES; do fixes_json+="$WORK/json/fix_${fix%%:*}.json,"; done
  for f in "$WORK"/json/farm_*.json; do [[ -e $f ]] && compile_json+="$f,"; done
  compile_json+="$WORK/json/jax_sota.json,$fixes_json$WORK/json/autotune_cold.json,"
  compile_json+="$WORK/json/autotune_warm.json"
  "$PY" -m benchmarks.compare --jax="$WORK/json/jax_sota.json" \
    --torch="$WORK/json/torch.json,$WORK/json/torch_compile.json" \
    --fixes="$fixes_json" --compile="$compile_json" --baseline_batch="$FIX_BATCH" \
    --autotune="$WORK/json/autotune_cold.json,$WORK/json/autotune_warm.json" \
    --autotune_batch="$AUTOTUNE_BATCH" \
    --profiles="JAX=$WORK/profiles/jax/jax_profile_summary.json,PyTorch=$WORK/profiles/torch/torch_profile_summary.json" \
    | tee "$OUT_DIR/summary.md"

  echo "=== [$(date +%T)] done in ${SECONDS}s, status=$STATUS"
  grep -h "^summary:" "$OUT_DIR/gpu.log" 2>/dev/null
  return $STATUS
}

main 2>&1 | tee "$OUT_DIR/gpu.log"
rc=${PIPESTATUS[0]}
cp "$WORK/json/jax_sota.json" "$WORK/json/torch.json" "$OUT_DIR/" 2>/dev/null
# At most 16 MiB per file comes back: the traces go first if the archive would be larger.
gzip -f "$WORK"/profiles/torch/*.json 2>/dev/null
tar czf "$OUT_DIR/results.tgz" -C "$OUT_DIR" --exclude='*.xplane.pb' --exclude='*.trace.json.gz' \
  work 2>/dev/null
if (($(stat -c %s "$OUT_DIR/results.tgz" 2>/dev/null || echo 0) > 15000000)); then
  tar czf "$OUT_DIR/results.tgz" -C "$OUT_DIR" --exclude='*trace*' --exclude='*.pb' work
fi
rm -rf "$WORK"
exit "$rc"
