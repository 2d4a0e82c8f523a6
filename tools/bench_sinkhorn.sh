#!/usr/bin/env bash
# Times Sinkhorn-Knopp clustering (benchmarks/bench_sinkhorn.cpp) and the
# PyTorch peers (../shared/peers/sinkhorn_torch.py, proto_step_torch.py) in
# one run, at 1 and 2 threads, and writes the table of medians and ratios
# into docs/benchmarks.md under "## Sinkhorn-Knopp clustering" (the rest of
# the file is kept; the file is created if missing).
#
# Usage: tools/bench_sinkhorn.sh [BUILD_DIR] [extra Google Benchmark flags]
#   BUILD_DIR defaults to build/ot; it must hold benchmarks/bench_sinkhorn.
#   REPS=10 (repetitions, medians are reported), PEER_PROTO=1 (also time
#   proto_step_torch.py, slow for 847 classes), SMOKE=1 (a short run whose
#   table is marked provisional; also implied by --benchmark_min_time).
# Example smoke run: SMOKE=1 REPS=3 tools/bench_sinkhorn.sh build/ot --benchmark_min_time=0.01
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/ot}
[[ $# -gt 0 ]] && shift
extra=("$@")
reps=${REPS:-10}
smoke=${SMOKE:-0}
for a in "${extra[@]}"; do [[ $a == --benchmark_min_time* ]] && smoke=1; done
peers=$(cd "$root/../shared/peers" 2>/dev/null && pwd || true)
[[ -n $peers && -x $peers/run.sh ]] || { echo "bench_sinkhorn.sh: no ../shared/peers/run.sh next to the repository" >&2; exit 1; }
bench=$build/benchmarks/bench_sinkhorn
[[ -x $bench ]] || { echo "bench_sinkhorn.sh: $bench not built (cmake --build $build --target bench_sinkhorn)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== protoseg bench_sinkhorn ($reps repetitions)" >&2
"$bench" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
  --benchmark_format=console --benchmark_out="$out/protoseg.json" --benchmark_out_format=json "${extra[@]}" >&2
for t in 1 2; do
  echo "== PyTorch peer sinkhorn_torch.py, $t thread(s)" >&2
  "$peers/run.sh" sinkhorn_torch.py "$t" | tee "$out/torch_sinkhorn_$t.txt" >&2
done
if [[ ${PEER_PROTO:-1} == 1 ]]; then
  for t in 1 2; do
    echo "== PyTorch peer proto_step_torch.py, $t thread(s)" >&2
    "$peers/run.sh" proto_step_torch.py "$t" | tee "$out/torch_proto_$t.txt" >&2
  done
fi

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
cmdline="SMOKE=$smoke REPS=$reps tools/bench_sinkhorn.sh ${build#$root/} ${extra[*]}"
python3 - "$out" "$root/docs/benchmarks.md" "$smoke" "$cmdline" "$cpu" <<'PY'
import json, os, re, sys, datetime
out, doc, smoke, cmdline, cpu = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4], sys.argv[5]
runs = json.load(open(os.path.join(out, "protoseg.json")))
med = {}
for b in runs["benchmarks"]:
    if b.get("aggregate_name", "median") != "median":
        continue
    name = b.get("run_name", b["name"]).replace("_median", "")
    scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b.get("time_unit", "ms")]
    med[name] = b["real_time"] * scale

def ours(pattern):
    for k, v in med.items():
        if re.fullmatch(pattern, k):
            return v
    return None

torch_sk, torch_proto = {}, {}
for t in (1, 2):
    p = os.path.join(out, f"torch_sinkhorn_{t}.txt")
    for line in open(p):
        m = re.match(r"D=(\d+) K=(\d+) N=(\d+): sinkhorn\(scores\) ([\d.]+) ms\s+online_clustering ([\d.]+) ms", line)
        if m:
            D, K, N = map(int, m.group(1, 2, 3))
            torch_sk[(D, K, N, t)] = (float(m.group(4)), float(m.group(5)))
    p = os.path.join(out, f"torch_proto_{t}.txt")
    if os.path.exists(p):
        for line in open(p):
            m = re.match(r"C=(\d+) M=(\d+) D=(\d+) N=(\d+): similarity einsum ([\d.]+) ms, prototype learning ([\d.]+) ms", line)
            if m:
                torch_proto[(int(m.group(1)), t)] = float(m.group(6))

rows = []
def row(work, t, mine, peer, target, peer_note=""):
    f = lambda x: "n/a" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")
    ratio = "n/a" if (mine is None or peer is None) else (
        f"{peer / mine:.2g}x" if peer / mine < 100 else f"{peer / mine:.0f}x")
    rows.append(f"| {work} | {t} | {f(mine)} | {f(peer)}{peer_note} | {ratio} | {target} |")

for t in (1, 2):
    p = torch_sk.get((720, 10, 10000, t))
    row("Sinkhorn on scores, K=10, N=1e4", t, ours(rf"BM_sinkhorn_scores/K:10/N:10000/threads:{t}/log:0/real_time"),
        p[0] if p else None, "<= 0.05 ms (2 threads)")
for t in (1, 2):
    p = torch_sk.get((720, 10, 10000, t))
    row("Sinkhorn on scores, log domain, K=10, N=1e4", t,
        ours(rf"BM_sinkhorn_scores/K:10/N:10000/threads:{t}/log:1/real_time"), p[0] if p else None, "-", " (plain)")
for (D, K, N, target) in [(720, 10, 10000, "<= 1.0 ms (2 threads)"), (256, 10, 100000, "-"), (720, 10, 1000000, "<= 80 ms (2 threads)")]:
    for t in (1, 2):
        p = torch_sk.get((D, K, N, t))
        row(f"online clustering D={D}, K={K}, N={N:.0e}".replace("e+0", "e"), t,
            ours(rf"BM_online_clustering/D:{D}/K:{K}/N:{N}/threads:{t}/real_time"), p[1] if p else None, target)
for C in (19, 150, 847):
    for t in (1, 2):
        row(f"segmented Sinkhorn, C={C}, M=10, N=32768", t,
            ours(rf"BM_segmented/C:{C}/M:10/N:32768/threads:{t}/real_time"), torch_proto.get((C, t)),
            "<= 5 ms (2 threads)" if C == 150 else "-", " (per-class loop, whole step)")

when = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
lines = ["## Sinkhorn-Knopp clustering", ""]
if smoke:
    lines += ["**PROVISIONAL: smoke run on a shared, noisy machine (short minimum times, few repetitions).",
              "These figures only show that the script works end to end; they are not the measured results.**", ""]
lines += [f"Medians of real time in ms, protoseg (`benchmarks/bench_sinkhorn`, float32) and the PyTorch peers",
          f"(`../shared/peers/sinkhorn_torch.py`, `proto_step_torch.py`) measured in the same run; ratio = PyTorch / protoseg.",
          f"Run {when} on {cpu or 'unknown CPU'}, with:", "", "```", cmdline, "```", "",
          "| work | threads | protoseg (ms) | PyTorch (ms) | ratio | target |",
          "|---|---|---|---|---|---|"] + rows + ["",
          "Notes: the segmented peer is ProtoSeg's whole per-class prototype step (the N x C*M logits product,",
          "then Sinkhorn, Gumbel sampling and the momentum update in a Python loop over classes), so its ratio",
          "overstates the Sinkhorn part alone;",
          "protoseg's segmented solver is given the N x M scores. The log-domain row is compared with the",
          "plain PyTorch form (Algorithm 1 has no log-domain variant).", ""]
section = "\n".join(lines)
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
pat = re.compile(r"^## Sinkhorn-Knopp clustering\n.*?(?=^## |\Z)", re.S | re.M)
if pat.search(text):
    text = pat.sub(lambda _: section + "\n", text, count=1)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
os.makedirs(os.path.dirname(doc), exist_ok=True)
tmp = doc + ".tmp"
open(tmp, "w").write(text)
os.replace(tmp, doc)
print(f"wrote the Sinkhorn-Knopp section of {doc}", file=sys.stderr)
PY
