"""GPU timings in PyTorch of the work that benchmarks/bench_cuda.cu times:
the ProtoSeg prototype step of ../shared/peers/proto_step_torch.py (the
official per-class loop) and Algorithm 1 of ../shared/peers/sinkhorn_torch.py,
the same algorithms moved to the GPU (tensors on 'cuda', the clock read after
torch.cuda.synchronize()).

Usage: python3 tools/bench_gpu_torch.py
"""
import statistics
import time

import torch
import torch.nn.functional as F

dev = torch.device("cuda")


def sinkhorn(out, iters=3, eps=0.05):
    L = torch.exp(out / eps).t()
    B, K = L.shape[1], L.shape[0]
    L /= torch.sum(L)
    for _ in range(iters):
        L /= torch.sum(L, dim=1, keepdim=True); L /= K
        L /= torch.sum(L, dim=0, keepdim=True); L /= B
    L *= B
    L = L.t()
    idx = torch.argmax(L, dim=1)
    return F.gumbel_softmax(L, tau=0.5, hard=True), idx


def proto_learning(c, seg_logits, gt, masks, protos, M, gamma=0.999):
    C = protos.shape[0]
    pred = seg_logits.argmax(1)
    correct = gt == pred
    logits = c @ protos.view(-1, protos.shape[-1]).t()
    target = gt.clone().float()
    protos = protos.clone()
    for k in range(C):
        sel = gt == k
        init_q = masks[..., k][sel]
        if init_q.shape[0] == 0:
            continue
        q, idx = sinkhorn(init_q)
        m_k = correct[sel].float()
        m_q = q * m_k[:, None]
        c_q = c[sel] * m_k[:, None]
        f = m_q.t() @ c_q
        n = m_q.sum(0)
        if n.sum() > 0:
            f = F.normalize(f, dim=-1)
            protos[k, n != 0] = gamma * protos[k, n != 0] + (1 - gamma) * f[n != 0]
        target[sel] = idx.float() + M * k
    return logits, target, F.normalize(protos, dim=-1)


def online_clustering(P, X, iters=3, kappa=0.05):
    L = torch.exp((P.t() @ X) / kappa)
    L /= torch.sum(L)
    K, N = L.shape
    for _ in range(iters):
        L /= torch.sum(L, dim=1, keepdim=True); L /= K
        L /= torch.sum(L, dim=0, keepdim=True); L /= N
    L *= N
    return L


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
