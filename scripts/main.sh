#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine (as root, or with sudo):
#   1. installs the Debian packages it needs (when missing), including the
#      Fashion-MNIST data (dataset-fashion-mnist),
#   2. configures the optimised build and builds protoseg-fashion-demo,
#   3. trains the ProtoSeg-style prototype classifier on Fashion-MNIST,
#      evaluates it on the test set and writes its metrics and pictures into
#      runs/fashion-demo (or --out DIR).
# Extra arguments go to the demo, e.g. `scripts/main.sh --head softmax --out runs/fashion-softmax`
# (`build/release/examples/protoseg-fashion-demo --help` lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cmake --preset release
cmake --build --preset release --target protoseg-fashion-demo
out=runs/fashion-demo
args=("$@")
for a in "${args[@]}"; do
  [[ $a == --help || $a == -h ]] && exec build/release/examples/protoseg-fashion-demo --help
done
for ((i = 0; i < ${#args[@]}; ++i)); do
  case ${args[i]} in
    --out) out=${args[i + 1]:-$out} ;;
    --out=*) out=${args[i]#--out=} ;;
  esac
done
build/release/examples/protoseg-fashion-demo --out "$out" "$@"
echo
echo "protoseg main job done. Outputs in $out/:"
for f in metrics.json confusion_matrix.png prototypes.png; do
  [[ -f $out/$f ]] && echo "  $out/$f"
done
