#!/usr/bin/env python3
"""Golden fixtures for protoseg::ot (tests/test_ot.cpp).

A line-by-line PyTorch transcription of Algorithm 1 of the ProtoSeg
supplementary ("Pseudo-code of Online Clustering Algorithm in the
PyTorch-like style"), evaluated in float64 on inputs that are exactly
representable in float32, so the same fixture checks the float and the double
solver. Writes small .npy files into tests/fixtures/sinkhorn/:

  <case>_scores.npy   K x N scores (P^T X for the online cases)
  <case>_P.npy        D x K prototypes   (online cases only)
  <case>_X.npy        D x N embeddings   (online cases only)
  <case>_params.npy   [iters, kappa]
  <case>_Q.npy        K x N assignment of Algorithm 1 (float64)
  <case>_labels.npy   argmax prototype per pixel (int64, N)
  <case>_X_rows.npy, <case>_P_rows.npy  X^T (N x D) and P^T (K x D), the
                      layout protoseg-cluster reads (online cases only)

Run: /usr/bin/python3 tools/gen_sinkhorn_fixtures.py  (any python3 with torch)
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "sinkhorn")


def online_clustering_scores(L, iters=3, kappa=0.05):
    """Algorithm 1 from `L = torch.exp(L / kappa)` on (L = P^T X given)."""
    L = torch.exp(L / kappa)
    L /= torch.sum(L)
    K, N = L.shape
    for _ in range(iters):
        # normalize each row
        L /= torch.sum(L, dim=1, keepdim=True)
        L /= K
        # normalize each column
        L /= torch.sum(L, dim=0, keepdim=True)
        L /= N
    # make sure the sum of each column to be 1
    L *= N
    return L


def online_clustering(P, X, iters=3, kappa=0.05):
    """Algorithm 1: P (D x K) prototypes, X (D x N) embeddings."""
    L = torch.mm(P.t(), X)
    return online_clustering_scores(L, iters, kappa)


def f32(t):
    """Round to float32 and back: inputs the float and double tests share."""
    return t.to(torch.float32).to(torch.float64)


def save(name, arr):
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(arr))


def scores_case(name, K, N, iters, kappa, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    S = f32((torch.rand(K, N, generator=g, dtype=torch.float64) * 2 - 1) * scale)
    Q = online_clustering_scores(S.clone(), iters, kappa)
    assert torch.isfinite(Q).all(), name
    save(name + "_scores", S.numpy())
    save(name + "_params", np.array([iters, kappa], dtype=np.float64))
    save(name + "_Q", Q.numpy())
    # argmax prototype per pixel (the published code's target index), for the
    # protoseg-cluster round-trip test (compared byte for byte).
    save(name + "_labels", torch.argmax(Q, dim=0).to(torch.int64).numpy())


def online_case(name, D, K, N, iters, kappa, seed):
    g = torch.Generator().manual_seed(seed)
    P = f32(torch.nn.functional.normalize(torch.randn(D, K, generator=g, dtype=torch.float64), dim=0))
    X = f32(torch.nn.functional.normalize(torch.randn(D, N, generator=g, dtype=torch.float64), dim=0))
    Q = online_clustering(P, X, iters, kappa)
    save(name + "_P", P.numpy())
    save(name + "_X", X.numpy())
    save(name + "_scores", torch.mm(P.t(), X).numpy())
    save(name + "_params", np.array([iters, kappa], dtype=np.float64))
    save(name + "_Q", Q.numpy())
    # protoseg-cluster takes embeddings N x D and prototypes K x D.
    save(name + "_X_rows", X.t().contiguous().numpy())
    save(name + "_P_rows", P.t().contiguous().numpy())
    save(name + "_labels", torch.argmax(Q, dim=0).to(torch.int64).numpy())


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    scores_case("default", K=4, N=37, iters=3, kappa=0.05, seed=1)
    scores_case("one_iter", K=3, N=20, iters=1, kappa=0.05, seed=2)
    scores_case("many_iters", K=6, N=50, iters=10, kappa=0.1, seed=3)
    scores_case("wide", K=10, N=64, iters=3, kappa=0.05, seed=4)
    # exp(score / kappa) overflows float32 here (|score| / kappa up to 200):
    # Algorithm 1 in float32 gives inf / NaN; the float64 reference is finite.
    scores_case("small_kappa", K=5, N=40, iters=3, kappa=0.005, seed=5)
    online_case("online", D=16, K=5, N=33, iters=3, kappa=0.05, seed=6)
    # Proof that the small-kappa case overflows in float32 (documented in the test).
    S = torch.from_numpy(np.load(os.path.join(OUT, "small_kappa_scores.npy"))).to(torch.float32)
    bad = online_clustering_scores(S, 3, 0.005)
    assert not torch.isfinite(bad).all()
    print("wrote fixtures to", os.path.normpath(OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
