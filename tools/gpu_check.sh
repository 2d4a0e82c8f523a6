#!/usr/bin/env bash
# One short check of the cuda policy on a GPU machine, from binaries built on a
# machine without a GPU by tools/gpu_build.sh (never rebuilt here). Every stage
# has its own timeout, and the whole fits one device call (BUDGET seconds,
# default 540: a stage that would start past it is skipped). Logs go to $WORK;
# $OUT (the device tool's folder, default out/gpu_check) gets results.txt (the
# summary), bench.json and logs.tgz (every log), so a stage that fails or
# times out leaves the others' results.
#
#   0  environment: GPU, driver, toolkit libraries the binaries need, tools
#   1  cpu-vs-cuda parity suites on the GPU (junit), under compute-sanitizer
#      memcheck when it is present (a second, smaller run)
#   2  benchmarks (medians of 5): Sinkhorn, the prototype step, the layers
#   3  protoseg-train --device cuda on the main job, timed, with its counters
#   4  the PyTorch CUDA peers in the same call: mit_torch.py (MiT-B0 + SegFormer +
#      ProtoSeg, batch 8, 512x512, with and without prototype learning) and
#      train_torch.py (the main job's model), with TF32 settings printed
#   5  nsys profile of a few training steps, when nsys is present
#
# Usage (device tool): run(command="bash tools/gpu_check.sh", carry=["gpu_kit"])
# Environment: OUT, WORK (default /tmp/gpu_check), KIT (default gpu_kit), BUDGET,
# ITERS (main job iterations, default 500).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
KIT=${KIT:-gpu_kit}
OUT=${OUT:-out/gpu_check}
WORK=${WORK:-/tmp/gpu_check}
ITERS=${ITERS:-500}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT" "$WORK"
res="$OUT/results.txt"
: >"$res"
bin="$KIT/bin"
export FASHION_MNIST_DIR="$root/$KIT/data/fashion-mnist"

say() { echo "$*" | tee -a "$res"; }
# stage NAME SECONDS COMMAND...: runs it under a timeout, output to $OUT/NAME.log.
stage() {
  local name=$1 secs=$2
  shift 2
  if ((SECONDS + secs > BUDGET)); then
    say "== $name skipped: ${SECONDS} s spent, its ${secs} s would pass the budget of ${BUDGET} s"
    return 0
  fi
  say "== $name (timeout ${secs}s): $*"
  local t0=$SECONDS
  timeout --kill-after=5 "$secs" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  say "   exit $rc after $((SECONDS - t0)) s$([[ $rc == 124 || $rc == 137 ]] && echo ' (TIMED OUT)')"
  tail -n 15 "$WORK/$name.log" | sed 's/^/   | /' >>"$res"
  return 0
}
finish() {
  say "== done $(date -u +%FT%TZ), ${SECONDS} s"
  [[ -f $WORK/bench.json ]] && cp "$WORK/bench.json" "$OUT/"
  tar czf "$OUT/logs.tgz" -C "$WORK" --exclude='*.safetensors' --exclude='*.nsys-rep' --exclude='*.sqlite' . 2>/dev/null
}
trap finish EXIT

[[ -d $bin ]] || { say "gpu_check: no $bin (run tools/gpu_build.sh and carry $KIT)"; exit 1; }

# ---- 0: environment -----------------------------------------------------------
say "== environment $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv 2>&1 | tee -a "$res"
say "nvcc: $(command -v nvcc || echo none)  compute-sanitizer: $(command -v compute-sanitizer || echo none)  nsys: $(command -v nsys || echo none)"
say "python torch: $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "tf32 matmul", torch.backends.cuda.matmul.allow_tf32, "tf32 cudnn", torch.backends.cudnn.allow_tf32)' 2>&1 | tail -1)"
missing=0
for b in "$bin"/*; do
  if ldd "$b" | grep -q "not found"; then
    say "$(basename "$b") misses libraries:"; ldd "$b" | grep "not found" | tee -a "$res"; missing=1
  fi
done
if [[ $missing == 1 ]]; then
  # The toolkit's libraries may be inside PyTorch's wheels (nvidia-* packages).
  extra=$(python3 - <<'EOF' 2>/dev/null
import glob, os, site
dirs = set()
for s in site.getsitepackages():
    for f in glob.glob(os.path.join(s, "nvidia", "*", "lib", "*.so*")):
        dirs.add(os.path.dirname(f))
print(":".join(sorted(dirs)))
EOF
)
  export LD_LIBRARY_PATH="${extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "LD_LIBRARY_PATH from the PyTorch wheels: $extra"
  for b in "$bin"/*; do ldd "$b" | grep "not found" | sed "s|^|   still missing for $(basename "$b"): |" | tee -a "$res"; done
fi

# ---- 1: parity suites -----------------------------------------------------------
stage parity_cuda 60 "$bin/test_cuda_gpu" --reporters=junit --out="$WORK/test_cuda_gpu.xml"
stage parity_cuda_nn 60 "$bin/test_cuda_nn_gpu" --reporters=junit --out="$WORK/test_cuda_nn_gpu.xml"
if command -v compute-sanitizer >/dev/null; then
  stage memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 3 "$bin/test_cuda_gpu" \
    --test-case="*sinkhorn*,*prototype*"
fi

# ---- 2: benchmarks ----------------------------------------------------------------
stage bench 90 "$bin/bench_cuda_gpu" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$WORK/bench.json" --benchmark_out_format=json

# ---- 3: the main job on the GPU -----------------------------------------------------
data=()
[[ -d $FASHION_MNIST_DIR ]] && data=(--data-root "$FASHION_MNIST_DIR")
stage train_cuda 120 "$bin/protoseg-train" --device cuda --iters "$ITERS" --log-every 100 --eval-every 0 \
  --embedding none --out "$WORK/run" "${data[@]}"
grep -E "^device|trained|^mIoU|cuda per training step" "$WORK/train_cuda.log" | sed 's/^/   /' | tee -a "$res"

# ---- 4: PyTorch peers on the same card ------------------------------------------------
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null && [[ -d $KIT/peers ]]; then
  stage torch_mit_proto 45 python3 "$KIT/peers/mit_torch.py" 1 512 8 cuda 1
  stage torch_mit_ce 45 python3 "$KIT/peers/mit_torch.py" 1 512 8 cuda 0
  stage torch_train 90 python3 "$KIT/peers/train_torch.py" proto "$ITERS" 1 resnet18 cuda
else
  say "== PyTorch peers skipped (no torch with CUDA, or no $KIT/peers)"
fi

# ---- 5: profile ----------------------------------------------------------------------------
if command -v nsys >/dev/null; then
  stage nsys 45 nsys profile --stats=true -o "$WORK/train" --force-overwrite true "$bin/protoseg-train" \
    --device cuda --iters 5 --log-every 1 --eval-every 0 --embedding none --eval-limit 8 --out "$WORK/prof" \
    "${data[@]}"
fi
