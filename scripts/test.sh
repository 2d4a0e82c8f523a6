#!/usr/bin/env bash
# Builds and runs every protoseg test on a fresh Debian 12 machine:
#   1. installs the Debian packages it needs (when missing),
#   2. configures the optimised build, builds tests, benchmarks and examples,
#   3. runs CTest (unit tests, header check, API tour, install + consumer),
#   4. rebuilds the tensor and autograd tests under ASan + UBSan and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
jobs=${PROTOSEG_JOBS:-2}
cmake --preset release
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"
cmake --preset asan
cmake --build --preset asan -j "$jobs"
ctest --preset asan -j "$jobs"
