#!/usr/bin/env bash
# The trainer against the PyTorch peer (../shared/peers/train_torch.py) on the
# Fashion-MNIST scenes, same data recipe, same budget (ITERS iterations,
# the peer's 4000 training scenes, batch 16, 64x64, AdamW 1e-3, poly,
# flips), ResNet-18, both heads, one run
# after the other on an otherwise idle machine.
#   tools/bench_trainer.sh BUILD_DIR [ITERS] [THREADS]
# Prints, per head: seconds per iteration and validation mIoU of both.
set -euo pipefail
build=${1:?usage: tools/bench_trainer.sh BUILD_DIR [ITERS] [THREADS]}
iters=${2:-300}
threads=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
peers=$(cd "$here/../shared/peers" && pwd)
py=/usr/bin/python3
out=$(mktemp -d)
for head in proto softmax; do
  echo "== PyTorch peer, ResNet-18, $head head, $iters iterations, $threads threads"
  (cd "$peers" && "$py" train_torch.py "$head" "$iters" "$threads" resnet18) | tail -2
  echo "== protoseg-train, ResNet-18 + MLP decoder (width 128), $head head, batch 16, $iters iterations"
  "$build/examples/protoseg-train" --head "$head" --iters "$iters" --batch 16 --scenes-train 4000 --threads "$threads" \
    --workers 1 --resnet-width 64 --eval-flip off --eval-every 0 --checkpoint-every 0 --log-every "$iters" --embedding none \
    --out "$out/$head" | grep -E "^train $iters/|^trained|^mIoU"
done
rm -rf "$out"
