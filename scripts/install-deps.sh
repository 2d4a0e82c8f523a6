#!/usr/bin/env bash
# Installs the Debian packages protoseg builds and runs with, when missing.
# Usage: scripts/install-deps.sh [build|peers]
#   build  compilers, CMake, Eigen, doctest, Google Benchmark, stb, zlib,
#          Fashion-MNIST (default)
#   peers  the above plus Debian's PyTorch for fixtures and peer timings
set -euo pipefail
what=${1:-build}
pkgs=(g++ cmake make libeigen3-dev doctest-dev libbenchmark-dev libstb-dev zlib1g-dev dataset-fashion-mnist)
if [[ $what == peers ]]; then
  pkgs+=(python3-torch python3-numpy libopenblas0-pthread)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "protoseg: installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
