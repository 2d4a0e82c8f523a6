#!/usr/bin/env bash
# Prepares the kit that tools/gpu_check.sh runs on a GPU machine, on a machine
# WITHOUT a GPU (ours): builds the cuda programs with nvcc for sm_90 (Hopper:
# H100 / H200), portable host code (no -march=native: the GPU machine's CPU may
# differ), and copies into gpu_kit/ (ignored by git):
#   gpu_kit/bin/    test_cuda_gpu, test_cuda_nn_gpu, bench_cuda_gpu, protoseg-train,
#                   protoseg-eval (stripped)
#   gpu_kit/peers/  the PyTorch peers from ../shared/peers (the checkout alone
#                   travels to the GPU machine), reading Fashion-MNIST from the kit
#   gpu_kit/data/fashion-mnist/  Debian's dataset-fashion-mnist files
# Then, with the device tool:  run(command="bash tools/gpu_check.sh", carry=["gpu_kit"])
#
# Usage: tools/gpu_build.sh [build_dir]   (default build/gpu)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build=${1:-build/gpu}
command -v nvcc >/dev/null || { echo "gpu_build: nvcc not found (install the CUDA toolkit)" >&2; exit 1; }
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPROTOSEG_NATIVE=OFF -DPROTOSEG_ENABLE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$build" -j 2 --target test_cuda_gpu test_cuda_nn_gpu bench_cuda_gpu protoseg-train protoseg-eval
kit=gpu_kit
rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/peers" "$kit/data"
for b in tests/test_cuda_gpu tests/test_cuda_nn_gpu benchmarks/bench_cuda_gpu examples/protoseg-train \
         examples/protoseg-eval; do
  cp "$build/$b" "$kit/bin/"
  strip "$kit/bin/$(basename "$b")"
done
peers="$root/../shared/peers"
if [[ -d $peers ]]; then
  cp "$peers"/*.py "$kit/peers/"
  # The peers find Fashion-MNIST through dpkg; on the GPU machine it is in the kit.
  sed -i 's|^def _root():|def _root():\n    if os.environ.get("FASHION_MNIST_DIR"): return os.environ["FASHION_MNIST_DIR"]|' \
    "$kit/peers/fashion_scenes.py"
else
  echo "gpu_build: no $peers; the PyTorch stages of gpu_check.sh will be skipped" >&2
fi
fm=/usr/share/datasets/fashion-mnist
[[ -d $fm ]] && cp -r "$fm" "$kit/data/fashion-mnist"
grep -qx '/gpu_kit/' .git/info/exclude 2>/dev/null || echo '/gpu_kit/' >> .git/info/exclude
du -sh "$kit" "$kit"/*
echo "gpu_build: kit ready in $kit/ (the device tool carries at most 64 MiB with the checkout)"
