#!/usr/bin/env bash
# Issue 19's GPU proof, run on the device tool's GPU machine, a few steps per call:
#   bash tools/gpu/proof.sh STEP...     (carry: .whl .gpu; see tools/gpu/README.md)
# Steps: gpu-tests suite bench prepare smoke study quickstart eam-profile. Each writes its logs
# (and results) under $OUT, which comes back, and stops at its own time limits (seconds in the
# environment, e.g. SUITE_S=300) so that a call returns what it finished. Every step runs even if
# one before failed; $OUT/steps.txt lists each command's exit, and the exit status is the number
# that failed. torchcodec decodes in every step (setup links it to PyAV's FFmpeg 8).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export HARNESS_SHARED=/tmp/shared HARNESS_CACHE=/tmp/harness-cache
export HARNESS_GIT_COMMIT=$(cat .gpu/commit 2>/dev/null || echo unknown)
CORES=$(nproc)
WORK=/tmp/proof  # outside the checkout; the study's store lives here (its artifact paths too)
LOGS=$WORK/logs  # each step's log; $OUT/logs.tar gathers them ($OUT returns 8 files at most)
mkdir -p "$WORK" "$LOGS"

setup() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${WHEELS:-.whl}"/*.whl || return 1
  export PYTHONPATH=/tmp/site
  mkdir -p "$HARNESS_SHARED" && tar -xJf .gpu/shared.tar.xz -C "$HARNESS_SHARED" || return 1
  tar -xJf .gpu/torchcodec.tar.xz -C /tmp/site && ffmpeg_from_pyav /tmp/ffmpeg || return 1
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || return 1
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "cores: $CORES; commit: $HARNESS_GIT_COMMIT"
    python3 tools/gpu/environment.py
  } 2>&1 | tee "$OUT/environment.txt"
}

ffmpeg_from_pyav() {  # ffmpeg_from_pyav DIR: FFmpeg's libraries under the names torchcodec
  # loads (libavutil.so.60 …), linked to the copies PyAV's wheel bundles under hashed names
  local lib base
  mkdir -p "$1"
  for lib in /tmp/site/av.libs/lib{avutil,avcodec,avformat,avdevice,avfilter,swscale,swresample}-*; do
    base=$(basename "$lib")
    ln -sf "$lib" "$1/${base%%-*}.so.$(sed -E 's/.*\.so\.([0-9]+).*/\1/' <<<"$base")"
  done
  export LD_LIBRARY_PATH=$1:/tmp/site/av.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
}

harness() { python3 -m harness "$@"; }

timed() {  # timed NAME SECONDS COMMAND...: runs it under a time limit, logs to $LOGS/NAME.log
  local name=$1 limit=$2 started=$SECONDS
  shift 2
  timeout --kill-after=20 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local code=$?
  echo "$name: exit $code in $((SECONDS - started)) s" | tee -a "$OUT/steps.txt"
  tar -rf "$OUT/logs.tar" -C "$LOGS" "$name.log"  # appended as each step ends
  return $code
}

step_gpu_tests() {  # NCCL's warnings, should the one-rank NCCL group fail in this machine
  NCCL_DEBUG=WARN timed gpu-tests "${GPU_TESTS_S:-300}" python3 -m pytest -m gpu -q -rs \
    -p no:cacheprovider
  tail -n 15 "$LOGS/gpu-tests.log"
}

step_suite() {  # the rest of the suite, on the CPU path (tests/conftest.py); the gpu tests ran
  # alone in gpu-tests: their timings beside 15 busy workers would measure the contention
  timed suite "${SUITE_S:-420}" python3 -m pytest -q -n "$CORES" --dist load -rs -m "not gpu" \
    -p no:cacheprovider --junitxml="$OUT/suite.xml"
  grep -E "^(FAILED|ERROR)|passed|failed" "$LOGS/suite.log" | tail -n 40
}

step_bench() {  # training throughput, EAM's overhead, then the data path against it
  local bench=$WORK/bench
  timed bench-train-r50 "${BENCH_S:-150}" harness bench train resnet3d_50 --frames 16 \
    --size 112 --batch 32 --json
  timed bench-train-r50-eam "${BENCH_S:-150}" harness bench train resnet3d_50 --frames 16 \
    --size 112 --batch 32 --attention eam --placement stage_output --json
  timed synth-bench "${SYNTH_S:-120}" harness data synth --preset bench --out "$bench"
  timed prepare-bench "${SYNTH_S:-120}" harness data prepare synthetic --root "$bench/UCF-101" \
    --out "$bench/frames"
  timed cache-bench "${SYNTH_S:-120}" harness data cache synthetic --root "$bench/UCF-101" \
    --out "$bench/cache"
  timed bench-train-cache "${BENCH_S:-150}" harness bench train resnet3d_50 --frames 16 \
    --size 112 --batch 32 --cache "$bench/cache" --json
  local rate
  rate=$(python3 tools/gpu/environment.py --clips-per-s "$LOGS/bench-train-r50.log")
  timed bench-data "${BENCH_S:-150}" harness bench data synthetic --root "$bench/UCF-101" \
    --split-dir "$bench/ucfTrainTestlist" --prepared "$bench/frames" --cache "$bench/cache" \
    --workers "$CORES" --cores "$CORES" --train-rate "${rate:-1000}"
  tail -n 30 "$LOGS"/bench-train-*.log "$LOGS/bench-data.log" | grep -v '^ *"' | tail -n 60
}

smoke_one() {  # smoke_one SPEC: its smoke run into its own store, two trials at a time in a
  # pool of 16 slots (a one-at-a-time sweep would claim the GPU's only slot machine-wide,
  # harness.execute.gpus); a line in smoke.txt as it ends
  local name begun=$SECONDS
  name=$(basename "$1" .yaml)
  timeout --kill-after=10 "${SMOKE_S:-240}" python3 -m harness run "$1" --smoke --no-progress \
    --jobs 2 --per-gpu 16 --tracking-uri "sqlite:///$WORK/smoke/$name.db" \
    >"$LOGS/smoke-$name.log" 2>&1
  echo "$name exit $? in $((SECONDS - begun)) s" | tee -a "$OUT/smoke.txt"
  flock "$WORK/logs.lock" tar -rf "$OUT/logs.tar" -C "$LOGS" "smoke-$name.log"  # one at a time
}

step_smoke() {  # every spec's smoke run, SMOKE_P at a time; SMOKE_TOTAL_S bounds the step, and
  # a spec without its line in smoke.txt by then counts as failed
  local started=$SECONDS specs
  specs=$(ls experiments/*.yaml | wc -l)
  mkdir -p "$WORK/smoke"
  rm -f "$LOGS"/smoke-*.log "$WORK"/smoke/*.db  # a warm machine's last call left its own
  export -f smoke_one
  export WORK LOGS OUT SMOKE_S
  ls experiments/*.yaml | timeout "${SMOKE_TOTAL_S:-400}" xargs -P "${SMOKE_P:-8}" -n 1 \
    bash -c 'smoke_one "$0"'
  pkill -f "harness run experiments/.* --smoke" && sleep 5  # each spec's timeout, cut short
  local passed
  passed=$(grep -c " exit 0 in" "$OUT/smoke.txt" 2>/dev/null)
  echo "smoke (every spec): exit $((specs - ${passed:-0})) in $((SECONDS - started)) s" \
    | tee -a "$OUT/steps.txt"
}

step_prepare() {  # the study's `large` preset and clip cache, built with every core before
  # its trials start; a call that ends with it leaves them in a warm machine for the next call
  timed prepare-study "${PREPARE_S:-300}" python3 tools/gpu/environment.py --prepare \
    experiments/study_table4_r50_synthetic.yaml
}

step_study() {  # EAM Table 4's ResNet-50 rows, 3 seeds, on synthetic `large`
  local spec=experiments/study_table4_r50_synthetic.yaml
  step_prepare  # quick where an earlier call on this machine built them
  local epochs=()  # the spec's own, unless EPOCHS overrides it (the report then needs the same)
  [ -n "${EPOCHS:-}" ] && epochs=(--set "train.epochs=$EPOCHS")
  (cd "$WORK" && timed study "${STUDY_S:-420}" python3 -m harness run "$OLDPWD/$spec" \
    --no-progress --jobs "${JOBS:-3}" --per-gpu "${JOBS:-3}" "${epochs[@]}")
  tail -n 25 "$LOGS/study.log"
  tar -czf "$OUT/study-store.tgz" -C "$WORK" mlflow.db mlruns 2>/dev/null
}

step_quickstart() {  # the README's main job on the GPU, and its data/compute split
  (cd "$WORK" && timed quickstart "${QUICKSTART_S:-300}" python3 -m harness run \
    "$OLDPWD/experiments/quickstart.yaml" --no-progress --tracking-uri sqlite:///quick.db)
  python3 tools/gpu/environment.py --split "sqlite:///$WORK/quick.db" quickstart \
    | tee "$OUT/quickstart-split.txt"
}

step_eam_profile() {  # EAM's forward + backward per stage output, each way of writing it
  timed eam-profile "${EAM_S:-120}" python3 tools/gpu/eam_profile.py --json "$OUT/eam-profile.json"
  cat "$LOGS/eam-profile.log"
}

setup || { echo "setup failed" | tee -a "$OUT/steps.txt"; exit 100; }
for step in "$@"; do
  case $step in
    gpu-tests | suite) "step_${step//-/_}" ;;  # a suite test needs the copy's .git as it is
    # the copy's .git may be the commit the session began at: the runs take .gpu/commit
    *) (export GIT_DIR=$PWD/.gpu/no-git && "step_${step//-/_}") ;;
  esac
done
echo "--- $OUT/steps.txt"
cat "$OUT/steps.txt"
exit "$(grep -cv ": exit 0 in" "$OUT/steps.txt")"
