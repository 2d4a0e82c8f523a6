#!/usr/bin/env python3
"""PyTorch peer of benchmarks/bench_tensor.cpp: the same shapes, dtype and
thread count, timed the same way (median of repetitions of a timed loop).

  matmul/<n>   torch.mm(a, b) for n x n float32 matrices (n = 128, 256, 512)
  chain/1024   torch.exp(a * b + c).sum(1) on 1024 x 1024 float32

Prints one JSON object: {"torch": version, "threads": n, "results":
{name: {"median_us": ..., "min_us": ..., "repetitions": r}}}.
Used by tools/bench_tensor.sh; run it alone with --help for the options.
"""
import argparse
import json
import statistics
import sys
import time


def time_loop(fn, min_time, repetitions):
    """Per-call times (microseconds) of `repetitions` timed loops, each
    running at least `min_time` seconds (after a calibration run)."""
    fn()
    n, t = 1, 0.0
    while True:  # calibrate the number of calls per loop
        start = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - start
        if t >= min_time or n >= 1 << 20:
            break
        n = max(n * 2, int(n * min_time / max(t, 1e-9) * 1.2))
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return samples


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per timed loop (default 0.5)")
    p.add_argument("--repetitions", type=int, default=10, help="timed loops; the median is reported (default 10)")
    args = p.parse_args()
    if args.threads < 1 or args.min_time <= 0 or args.repetitions < 1:
        p.error("--threads and --repetitions must be >= 1 and --min-time > 0")
    try:
        import torch
    except ImportError:
        sys.exit("bench_tensor_torch.py: PyTorch is not installed (Debian: apt-get install python3-torch)")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)

    def rand(n, lo=-1.0, hi=1.0):
        return torch.rand(n, n, generator=g, dtype=torch.float32) * (hi - lo) + lo

    results = {}
    with torch.no_grad():
        for n in (128, 256, 512):
            a, b = rand(n), rand(n)
            out = torch.empty(n, n)
            samples = time_loop(lambda: torch.mm(a, b, out=out), args.min_time, args.repetitions)
            results[f"matmul/{n}"] = samples
        n = 1024
        a, b, c = rand(n, -0.5, 0.5), rand(n, -0.5, 0.5), rand(n, -0.5, 0.5)
        results[f"chain/{n}"] = time_loop(lambda: torch.exp(a * b + c).sum(1), args.min_time, args.repetitions)

    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": {k: {"median_us": statistics.median(v), "min_us": min(v), "repetitions": len(v)}
                    for k, v in results.items()},
    }))


if __name__ == "__main__":
    main()
