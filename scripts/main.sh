#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine (as root, or with sudo):
#   1. installs the Debian packages it needs (when missing), including the
#      Fashion-MNIST data (dataset-fashion-mnist),
#   2. configures the optimised build and builds protoseg-train,
#   3. trains the default ProtoSeg model on the built-in Fashion-MNIST scenes
#      (2 threads), evaluates it on the 500 validation scenes and writes into
#      runs/fashion-scenes (or --out DIR): metrics.json, predictions.png,
#      curves.png, embedding.png, model.safetensors, checkpoint.safetensors,
#      log.csv, val.csv and config.json.
# Extra arguments go to protoseg-train and override the defaults, e.g. the
# paper's comparison with the parametric softmax head on the same budget:
#   bash scripts/main.sh --head softmax --out runs/fashion-scenes-softmax
# (`build/release/examples/protoseg-train --help` lists every option).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cmake --preset release
cmake --build --preset release --target protoseg-train protoseg-eval protoseg-infer
exe=build/release/examples/protoseg-train
out=runs/fashion-scenes
args=("$@")
for a in "${args[@]}"; do
  [[ $a == --help || $a == -h ]] && exec "$exe" --help
done
for ((i = 0; i < ${#args[@]}; ++i)); do
  case ${args[i]} in
    --out) out=${args[i + 1]:-$out} ;;
    --out=*) out=${args[i]#--out=} ;;
  esac
done
"$exe" --out "$out" "$@"
echo
echo "protoseg main job done. Outputs in $out/:"
for f in metrics.json predictions.png curves.png embedding.png model.safetensors; do
  [[ -f $out/$f ]] && echo "  $out/$f"
done
