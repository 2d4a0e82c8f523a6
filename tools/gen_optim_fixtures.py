#!/usr/bin/python3
"""Golden fixtures for protoseg's optimisers, schedules and metrics
(tests/test_optim.cpp), from Debian's PyTorch.

Run:  /usr/bin/python3 tools/gen_optim_fixtures.py   (from anywhere)

Optimiser cases (tests/fixtures/optim/<case>.safetensors), each run twice,
once in float32 ("f32." keys) and once in float64 ("f64." keys):
  group           I64 [P]   the group of each parameter, flat order
  lr_mult         F64 [G]   the groups' learning-rate multipliers
  decay_mult      F64 [G]   the groups' weight-decay multipliers
  lr              F64 [S]   base learning rate set before each step (a poly
                            schedule with warmup, so set_lr is exercised)
  <d>.p0.<k>      initial value of parameter k
  <d>.g.<s>.<k>   its gradient at step s (absent: no gradient that step)
  <d>.p.<s>.<k>   its value after step s
  <d>.state.<name>.<k>   torch's optimiser state after the last step
"__metadata__" holds the options. Parameter 1 is 1-D and sits alone in a
group with lr_mult 10 and decay_mult 0 (mmseg's head / norm settings); the
other group has lr_mult 0.5, so its decay uses the group's lr.

schedule.safetensors: iterations and the lr of poly + linear warmup (mmcv's
formula, evaluated through torch.optim.lr_scheduler.LambdaLR).

metrics.safetensors: a random prediction / label pair with ignored pixels,
a class absent from both (NaN IoU) and one only predicted (NaN accuracy),
and the confusion matrix and metrics computed with numpy as
mmseg.core.evaluation.metrics does (intersect_and_union + nanmean).
"""
import os

import numpy as np
import torch

from safetensors_py import write_safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optim")
STEPS = 5
SHAPES = [(3, 4), (4,), (2, 3)]
GROUP = [0, 1, 0]
LR_MULT = [0.5, 10.0]
DECAY_MULT = [1.0, 0.0]
NO_GRAD = {(2, 0)}  # (step, parameter) without a gradient


def poly_warmup(base, it, max_iters, power, min_lr, warmup, ratio):
    lr = (base - min_lr) * (1 - it / max_iters) ** power + min_lr
    if it < warmup:
        lr *= 1 - (1 - it / warmup) * (1 - ratio)
    return lr


def base_lrs(base):
    return [poly_warmup(base, s, 8, 0.9, base * 0.01, 2, 0.1) for s in range(STEPS)]


def run_case(name, seed, make_opt, base, meta, state_names):
    g = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    # Gradients shrink over the steps, so amsgrad's running maximum matters.
    grads = [[torch.randn(s, generator=g, dtype=torch.float64) * (2.0 / (1 + st)) for s in SHAPES]
             for st in range(STEPS)]
    lrs = base_lrs(base)
    out = {"group": torch.tensor(GROUP, dtype=torch.int64),
           "lr_mult": torch.tensor(LR_MULT, dtype=torch.float64),
           "decay_mult": torch.tensor(DECAY_MULT, dtype=torch.float64),
           "lr": torch.tensor(lrs, dtype=torch.float64)}
    for dname, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        params = [t.to(dtype).clone().requires_grad_(True) for t in init]
        groups = [{"params": [p for p, gi in zip(params, GROUP) if gi == k], "lr_mult": LR_MULT[k],
                   "decay_mult": DECAY_MULT[k]} for k in range(len(LR_MULT))]
        opt = make_opt(groups)
        for k, p in enumerate(params):
            out[f"{dname}.p0.{k}"] = p.detach().clone()
        for st in range(STEPS):
            for grp in opt.param_groups:
                grp["lr"] = lrs[st] * grp["lr_mult"]
                grp["weight_decay"] = meta["weight_decay"] * grp["decay_mult"]
            for k, p in enumerate(params):
                if (st, k) in NO_GRAD:
                    p.grad = None
                else:
                    p.grad = grads[st][k].to(dtype).clone()
                    out[f"{dname}.g.{st}.{k}"] = p.grad.clone()
            opt.step()
            for k, p in enumerate(params):
                out[f"{dname}.p.{st}.{k}"] = p.detach().clone()
        for k, p in enumerate(params):
            s = opt.state[p]
            for sn in state_names:
                if sn in s:
                    v = s[sn]
                    v = v.reshape(1).to(dtype) if sn == "step" else v
                    out[f"{dname}.state.{sn}.{k}"] = v.detach().clone()
    write_safetensors(os.path.join(OUT, name + ".safetensors"), out, meta)


def optim_cases():
    for ams in (False, True):
        meta = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "amsgrad": int(ams)}
        run_case("adamw_amsgrad" if ams else "adamw", 11 + int(ams),
                 lambda groups, m=meta: torch.optim.AdamW(groups, lr=m["lr"], betas=(m["beta1"], m["beta2"]),
                                                          eps=m["eps"], weight_decay=m["weight_decay"],
                                                          amsgrad=bool(m["amsgrad"])),
                 meta["lr"], meta, ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"])
    for name, seed, mom, damp, nest in (("sgd_momentum", 21, 0.9, 0.1, False), ("sgd_nesterov", 22, 0.9, 0.0, True)):
        meta = {"lr": 0.05, "momentum": mom, "dampening": damp, "weight_decay": 0.01, "nesterov": int(nest)}
        run_case(name, seed,
                 lambda groups, m=meta: torch.optim.SGD(groups, lr=m["lr"], momentum=m["momentum"],
                                                        dampening=m["dampening"], weight_decay=m["weight_decay"],
                                                        nesterov=bool(m["nesterov"])),
                 meta["lr"], meta, ["momentum_buffer"])


def schedule_case():
    out = {}
    # A small run, and the SegFormer ADE20K schedule at a few iterations.
    for tag, base, max_iters, power, min_lr, warmup, ratio, iters in (
            ("small", 0.01, 20, 0.9, 1e-4, 5, 1e-6, list(range(21))),
            ("segformer", 6e-5, 160000, 1.0, 0.0, 1500, 1e-6,
             [0, 1, 2, 750, 1499, 1500, 1501, 80000, 159999, 160000])):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=base)
        fn = lambda it: poly_warmup(base, it, max_iters, power, min_lr, warmup, ratio) / base  # noqa: E731
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        lrs, it = [], 0
        for want in iters:
            while it < want:
                opt.step()
                sched.step()
                it += 1
            lrs.append(opt.param_groups[0]["lr"])
        out[f"{tag}.iters"] = torch.tensor(iters, dtype=torch.int64)
        out[f"{tag}.lr"] = torch.tensor(lrs, dtype=torch.float64)
        out[f"{tag}.config"] = torch.tensor([base, max_iters, power, min_lr, warmup, ratio], dtype=torch.float64)
    write_safetensors(os.path.join(OUT, "schedule.safetensors"), out)


def metrics_case():
    rng = np.random.default_rng(5)
    C, IGNORE, H, W = 6, 255, 23, 29
    label = rng.integers(0, 4, size=(H, W))          # classes 0..3 in the labels
    pred = label.copy()
    flip = rng.random((H, W)) < 0.35
    pred[flip] = rng.integers(0, 5, size=int(flip.sum()))  # class 4 only predicted, 5 nowhere
    label[rng.random((H, W)) < 0.1] = IGNORE
    mask = label != IGNORE
    p, l = pred[mask], label[mask]
    hist = np.bincount(l * C + p, minlength=C * C).reshape(C, C)
    inter = np.diag(hist).astype(np.float64)
    area_label, area_pred = hist.sum(1).astype(np.float64), hist.sum(0).astype(np.float64)
    union = area_label + area_pred - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / area_label
    out = {"pred": torch.from_numpy(pred.astype(np.int64)), "label": torch.from_numpy(label.astype(np.int64)),
           "hist": torch.from_numpy(hist.astype(np.int64)),
           "iou": torch.from_numpy(iou), "acc": torch.from_numpy(acc),
           "summary": torch.tensor([np.nanmean(iou), inter.sum() / area_label.sum(), np.nanmean(acc)],
                                   dtype=torch.float64)}
    write_safetensors(os.path.join(OUT, "metrics.safetensors"), out, {"num_classes": C, "ignore_index": IGNORE})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    optim_cases()
    schedule_case()
    metrics_case()
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))
