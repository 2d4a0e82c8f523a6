"""GPU timings in PyTorch of the work that benchmarks/bench_cuda.cu times:
the ProtoSeg prototype step of the peer proto_step_torch.py (the official
per-class loop) and Algorithm 1 of the peer sinkhorn_torch.py, moved to the
GPU (tensors on 'cuda', the clock read after torch.cuda.synchronize()). The
peers' functions are loaded from their files (their definitions only, not
their cpu timing loops), so the GPU runs exactly the peers' code.

Usage: python3 tools/bench_gpu_torch.py [PEERS_DIR]   (default ../shared/peers)
"""
import ast
import pathlib
import statistics
import sys
import time

import torch

dev = torch.device("cuda")
peers = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                     pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "peers")


def peer_functions(name):
    """The imports and function definitions of peers/NAME, without its top-level timing code."""
    tree = ast.parse((peers / name).read_text())
    tree.body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
    ns = {}
    exec(compile(tree, str(peers / name), "exec"), ns)
    return ns


step_peer = peer_functions("proto_step_torch.py")
cluster_peer = peer_functions("sinkhorn_torch.py")
proto_learning = step_peer["proto_learning"]
online_clustering = cluster_peer["online_clustering"]
F = torch.nn.functional


def bench(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
M, D, N = 10, 256, 2 * 128 * 128
for C in [19, 150, 847]:
    g = torch.Generator().manual_seed(0)
    c = F.normalize(torch.randn(N, D, generator=g), dim=1).to(dev)
    protos = F.normalize(torch.randn(C, M, D, generator=g), dim=-1).to(dev)
    gt = torch.randint(0, C, (N,), generator=g).to(dev)
    masks = torch.einsum('nd,kmd->nmk', c, protos)
    seg = masks.amax(1)
    t_mask = bench(lambda: torch.einsum('nd,kmd->nmk', c, protos).amax(1), 20)
    t = bench(lambda: proto_learning(c, seg, gt, masks, protos, M), 20)
    print(f"proto_step C={C} M={M} D={D} N={N}: similarity einsum + class max {t_mask:.2f} ms, "
          f"prototype learning {t:.2f} ms, together {t_mask + t:.2f} ms")
for (D, K, N) in [(256, 10, 100_000), (720, 10, 1_000_000)]:
    g = torch.Generator().manual_seed(0)
    P = F.normalize(torch.randn(D, K, generator=g), dim=0).to(dev)
    X = F.normalize(torch.randn(D, N, generator=g), dim=0).to(dev)
    print(f"online_clustering D={D} K={K} N={N}: {bench(lambda: online_clustering(P, X), 30):.3f} ms")
