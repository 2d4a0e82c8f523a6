#!/usr/bin/env bash
# Times the whole model and the prototype step (benchmarks/bench_models.cpp)
# and the PyTorch peers (../shared/peers/mit_torch.py, proto_step_torch.py)
# in one run, on 2 threads, with the peak resident memory of each training
# step, and the main job's training step (no peer here: see
# tools/bench_trainer.sh), and prints the markdown table of
# docs/benchmarks.md "## Models".
#
# Usage: tools/bench_models.sh [BUILD_DIR]
#   BUILD_DIR defaults to build/bench; it must hold benchmarks/bench_models
#   (cmake -DPROTOSEG_BUILD_BENCHMARKS=ON, target bench_models).
#   SMOKE=1: 128x128 images and C <= 150 only, a quick check of the script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench}
smoke=${SMOKE:-0}
peers=$(cd "$root/../shared/peers" 2>/dev/null && pwd || true)
[[ -n $peers && -x $peers/run.sh ]] || { echo "bench_models.sh: no ../shared/peers/run.sh next to the repository" >&2; exit 1; }
bench=$build/benchmarks/bench_models
[[ -x $bench ]] || { echo "bench_models.sh: $bench not built (cmake --build $build --target bench_models)" >&2; exit 1; }
command -v /usr/bin/time > /dev/null || { echo "bench_models.sh: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
size=512
[[ $smoke == 1 ]] && size=128
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run_ours() {  # name filter
  echo "== protoseg bench_models $2" >&2
  BENCH_SIZE=$size /usr/bin/time -f "%M" -o "$out/$1.rss" "$bench" --benchmark_filter="$2" \
    --benchmark_format=console --benchmark_out="$out/$1.json" --benchmark_out_format=json >&2
}
run_ours train '^model/train_step'
run_ours forward '^model/forward'
if [[ $smoke == 1 ]]; then run_ours proto '^proto_step/C:(19|150)/'; else run_ours proto '^proto_step'; fi
run_ours main '^main_job_step'

echo "== PyTorch peer mit_torch.py 2 $size 2" >&2
/usr/bin/time -f "%M" -o "$out/torch_mit.rss" "$peers/run.sh" mit_torch.py 2 "$size" 2 | tee "$out/torch_mit.txt" >&2
echo "== PyTorch peer proto_step_torch.py 2" >&2
if [[ $smoke == 1 ]]; then echo "(skipped in a smoke run)" > "$out/torch_proto.txt"
else "$peers/run.sh" proto_step_torch.py 2 | tee "$out/torch_proto.txt" >&2; fi

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
python3 - "$out" "$size" "$cpu" "$smoke" <<'PY'
import json, os, re, sys, datetime
out, size, cpu, smoke = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

def medians(name):
    res = {}
    for b in json.load(open(os.path.join(out, name + ".json")))["benchmarks"]:
        if b.get("aggregate_name", "median") != "median":
            continue
        scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b.get("time_unit", "ms")]
        res[b.get("run_name", b["name"])] = b["real_time"] * scale
    return res

def rss(name):  # /usr/bin/time %M: kilobytes
    return int(open(os.path.join(out, name + ".rss")).read().split()[-1]) / 1024.0

train, fwd, proto, main = medians("train"), medians("forward"), medians("proto"), medians("main")
t = open(os.path.join(out, "torch_mit.txt")).read()
m = re.search(r"train step (\d+) ms, forward \(no grad\) (\d+) ms", t)
torch_train, torch_fwd = (float(m.group(1)), float(m.group(2))) if m else (float("nan"), float("nan"))
torch_proto = {}
for line in open(os.path.join(out, "torch_proto.txt")):
    m = re.search(r"C=(\d+) .*einsum ([\d.]+) ms, prototype learning ([\d.]+) ms", line)
    if m:
        torch_proto[int(m.group(1))] = float(m.group(2)) + float(m.group(3))

def ours(d, pat):
    for k, v in d.items():
        if re.match(pat, k):
            return v
    return float("nan")

print(f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {cpu}, 2 threads{' (SMOKE: provisional)' if smoke else ''}:\n")
print("| work (2 threads) | protoseg | PyTorch | protoseg / PyTorch | target |")
print("|---|---|---|---|---|")
a, b = ours(train, r"model/train_step"), torch_train
print(f"| MiT-B0 + SegFormer + ProtoSeg (C=150), batch 2, {size}x{size}, training step | {a/1e3:.2f} s | {b/1e3:.2f} s | {a/b:.2f}x | <= 0.7x |")
a, b = ours(fwd, r"model/forward"), torch_fwd
print(f"| the same, forward without gradients | {a/1e3:.2f} s | {b/1e3:.2f} s | {a/b:.2f}x | <= 0.6x |")
for C in (19, 150, 847):
    a = ours(proto, rf"proto_step/C:{C}/threads:2/full:0/")
    b = torch_proto.get(C, float("nan"))
    tgt = ">= 8x faster" if C != 19 else "-"
    print(f"| prototype step, N=32768, M=10, D=256, C={C} | {a:.1f} ms | {b:.1f} ms | {a/b:.3f}x ({b/a:.1f}x faster) | {tgt} |")
for C in (150, 847):
    a = ours(proto, rf"proto_step/C:{C}/threads:2/full:1/")
    b = torch_proto.get(C, float("nan"))
    print(f"| the same, C={C}, with the N x C*M scores materialised (as in training) | {a:.1f} ms | {b:.1f} ms | {a/b:.3f}x ({b/a:.1f}x faster) | - |")
m1, m2 = ours(main, r"main_job_step/threads:1"), ours(main, r"main_job_step/threads:2")
print(f"| the main job's model (ResNet-18 + MLP 128 + ProtoSeg, C=11), batch 8, 64x64, training step | {m2:.0f} ms ({m1:.0f} ms on 1 thread) | see the trainer section | - | - |")
print(f"| peak RSS of the training-step process | {rss('train'):.0f} MB | {rss('torch_mit'):.0f} MB | {rss('train')/rss('torch_mit'):.2f}x | <= 1x |")
PY
