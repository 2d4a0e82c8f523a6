#!/usr/bin/python3
"""Golden values for the core ops, from PyTorch (Debian python3-torch).

Writes tests/fixtures/core/cross_entropy.txt: logits (N, C, H, W), labels with
ignored positions, class weights, F.cross_entropy (mean reduction) without
and with weights, and the gradient of each loss with respect to the logits.
Run: /usr/bin/python3 tools/gen_core_fixtures.py (from the repository root).
"""
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
N, C, H, W, IGNORE = 2, 5, 3, 4, 255
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "core")
os.makedirs(root, exist_ok=True)

logits = (torch.randn(N, C, H, W, dtype=torch.float64) * 2).requires_grad_(True)
labels = torch.randint(0, C, (N, H, W))
labels[0, 0, :2] = IGNORE
labels[1, 2, 3] = IGNORE
weights = torch.rand(C, dtype=torch.float64) + 0.25

loss_u = F.cross_entropy(logits, labels, ignore_index=IGNORE)
(grad_u,) = torch.autograd.grad(loss_u, logits)
loss_w = F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE)
(grad_w,) = torch.autograd.grad(loss_w, logits)


def line(t):
    return " ".join(repr(float(v)) for v in t.detach().reshape(-1).tolist())


with open(os.path.join(root, "cross_entropy.txt"), "w") as f:
    f.write(f"{N} {C} {H} {W} {IGNORE}\n")
    f.write(line(logits) + "\n")
    f.write(" ".join(str(int(v)) for v in labels.reshape(-1).tolist()) + "\n")
    f.write(line(weights) + "\n")
    f.write(f"{float(loss_u)!r} {float(loss_w)!r}\n")
    f.write(line(grad_u) + "\n")
    f.write(line(grad_w) + "\n")
print("wrote", os.path.join(root, "cross_entropy.txt"))
