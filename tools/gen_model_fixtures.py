#!/usr/bin/python3
"""Golden fixtures for protoseg's models and ProtoSeg head (tests/test_models.cpp).

Run with Debian's PyTorch:  /usr/bin/python3 tools/gen_model_fixtures.py [NAME ...]
(no NAME: every fixture; each seeds its own draws).

The reference MiT is the PyTorch peer ../shared/peers/mit_torch_lib.py (the
model the library must match); its parameters are renamed to the NVlabs /
mmsegmentation names the C++ modules use. The SegFormer decoder is written
here from the published architecture. The ProtoSeg head, step and loss and
the dilated ResNets are written here from the behaviour of the published
code (tfzhou/ProtoSeg, mmsegmentation), not from protoseg's C++: see the
comments above `PublishedProjection` and `MMSegResNetV1c` for what that
means point by point (the projection head and its width normalisation,
the -1 ignore label, Gumbel sampling of the updated prototype with the
variates recorded, align_corners=True, class weights, contracted dilation).

Parameters are not stored: both sides fill every parameter from its name
with the same formula (`fill` below and `fill_parameters` in the test), so
the fixtures stay small. Everything is computed in float64 from
float32-representable values. Files in tests/fixtures/models/:

  mit_b0_segformer.safetensors  MiT-B0 + SegFormer decoder (width 32, 5
      classes, train mode, no dropout / drop-path) on a 1x3x64x64 image: the
      four stage outputs, the logits, the weights w of the loss sum(w * logits),
      d loss / d image and d loss / d (a few parameters).
  proto_step.safetensors  one ProtoSeg training step of the published head
      (C=4, M=3, D=16, 2x16x8x8 features, labels 2x16x16 with void pixels,
      class-weighted CE): logits, prototype scores and targets, updated
      prototypes, CE / PPC / PPD / total, d total / d features and
      d total / d every head parameter, the Gumbel variates used.
  resnet18.safetensors  the peer's ResNet-18 (torchvision names, eval mode)
      on 2x3x32x32 images: the four stage outputs, the loss sum_s sum(w_s * out_s),
      d loss / d image and d loss / d (a few parameters).
  model_step.safetensors  one training step of the whole ProtoSeg model
      (MiT-B0, SegFormer decoder of width 16, the published head with C=4,
      M=3) on a 1x3x64x64 image with 1x64x64 labels: the same outputs as
      proto_step, d total / d image and d total / d (a few parameters), and
      in the metadata the largest relative value and gradient errors of
      PyTorch's own float32 run (this step is ill-conditioned in float).
  resnet_d8.safetensors  mmsegmentation's ResNetV1c-50 and -18 at output
      stride 8 with contract_dilation (eval mode) on a 1x3x32x32 image: the
      four stage outputs; for ResNet-18 also d / d image of sum_s sum(w_s * out_s).
  param_counts.safetensors  metadata: parameter counts of MiT-B0..B5 and
      ResNet-18/34/50/101 (without the classification layer).
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "models")
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "peers"))
from mit_torch_lib import MiT, ResNet18  # noqa: E402

torch.set_default_dtype(torch.float64)

from safetensors_py import write_safetensors  # noqa: E402


def f32(t):
    """Stored as float32 (the reference is float64; rounding adds ~6e-8)."""
    return t.detach().float()


def name_hash(name):
    return sum((j + 1) * ord(c) for j, c in enumerate(name)) % 9973


def fill(name, shape):
    """The deterministic parameter values both sides use (float32-representable)."""
    n = 1
    for s in shape:
        n *= s
    h = name_hash(name)
    base = [math.sin(0.7 * i + 0.001 * h + 0.3) for i in range(n)]
    if len(shape) >= 2:
        scale = 1.0 / math.sqrt(n // shape[0])
        vals = [scale * b for b in base]
    elif name.endswith("weight"):
        vals = [1.0 + 0.1 * b for b in base]
    else:
        vals = [0.1 * b for b in base]
    return torch.tensor(vals, dtype=torch.float64).reshape(shape).float().double()


gen = torch.Generator().manual_seed(4)


def rnd(*shape, scale=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).float().double()


# ---- MiT (peer) with NVlabs names -------------------------------------------------------

def nvlabs_name(peer):
    p = peer.split(".")
    if p[0] == "pe":
        return "patch_embed%d.%s.%s" % (int(p[1]) + 1, "proj" if p[2] == "0" else "norm", p[3])
    if p[0] == "norms":
        return "norm%d.%s" % (int(p[1]) + 1, p[2])
    assert p[0] == "blocks"
    head = "block%d.%s." % (int(p[1]) + 1, p[2])
    rest = ".".join(p[3:])
    table = {"n1.": "norm1.", "n2.": "norm2.", "attn.srconv.": "attn.sr.", "fc1.": "mlp.fc1.",
             "dw.": "mlp.dwconv.dwconv.", "fc2.": "mlp.fc2."}
    for k, v in table.items():
        if rest.startswith(k):
            return head + v + rest[len(k):]
    return head + rest


MIT = {
    "mit_b0": dict(dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "mit_b1": dict(dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    "mit_b2": dict(dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
    "mit_b3": dict(dims=(64, 128, 320, 512), depths=(3, 4, 18, 3)),
    "mit_b4": dict(dims=(64, 128, 320, 512), depths=(3, 8, 27, 3)),
    "mit_b5": dict(dims=(64, 128, 320, 512), depths=(3, 6, 40, 3)),
}


class SegFormerHead(nn.Module):
    """The all-MLP decoder (mmseg / NVlabs names), BN in train mode, no dropout."""

    def __init__(self, dims, E, classes):
        super().__init__()
        for i, d in enumerate(dims):
            setattr(self, "linear_c%d" % (i + 1), nn.Module())
            getattr(self, "linear_c%d" % (i + 1)).proj = nn.Linear(d, E)
        self.linear_fuse = nn.Module()
        self.linear_fuse.conv = nn.Conv2d(4 * E, E, 1, bias=False)
        self.linear_fuse.bn = nn.BatchNorm2d(E)
        self.linear_pred = nn.Conv2d(E, classes, 1)

    def forward(self, feats):
        H, W = feats[0].shape[2:]
        parts = []
        for i in (3, 2, 1, 0):
            f = feats[i]
            B, C, h, w = f.shape
            y = getattr(self, "linear_c%d" % (i + 1)).proj(f.flatten(2).transpose(1, 2))
            y = y.transpose(1, 2).reshape(B, -1, h, w)
            if i > 0:
                y = F.interpolate(y, size=(H, W), mode="bilinear", align_corners=False)
            parts.append(y)
        x = F.relu(self.linear_fuse.bn(self.linear_fuse.conv(torch.cat(parts, 1))))
        return self.linear_pred(x)


def mit_fixture():
    gen.manual_seed(4)
    enc = MiT(dims=MIT["mit_b0"]["dims"], depths=MIT["mit_b0"]["depths"]).double()
    dec = SegFormerHead(MIT["mit_b0"]["dims"], 32, 5).double()
    names = {}
    with torch.no_grad():
        for k, p in enc.named_parameters():
            n = "backbone." + nvlabs_name(k)
            names[n] = p
            p.copy_(fill(n, tuple(p.shape)))
        for k, p in dec.named_parameters():
            n = "decode_head." + k
            names[n] = p
            # the C++ linear_c*.proj weights have the Linear layout already
            p.copy_(fill(n, tuple(p.shape)))
    x = rnd(1, 3, 64, 64).requires_grad_(True)
    enc.train(); dec.train()
    outs = enc(x)
    logits = dec(outs)
    w = rnd(*logits.shape)
    (logits * w).sum().backward()
    t = {"input.x": f32(x), "output.logits": f32(logits), "weight": f32(w), "grad.input.x": f32(x.grad)}
    for i, o in enumerate(outs):
        t["output.stage%d" % (i + 1)] = f32(o)
    picked = ["backbone.patch_embed1.proj.weight", "backbone.block1.0.attn.q.weight", "backbone.block1.1.attn.sr.bias",
              "backbone.block2.0.mlp.dwconv.dwconv.weight", "backbone.block3.1.attn.kv.bias",
              "backbone.block4.1.mlp.fc2.bias", "backbone.norm4.weight", "decode_head.linear_c4.proj.weight",
              "decode_head.linear_fuse.conv.weight", "decode_head.linear_fuse.bn.weight", "decode_head.linear_pred.bias"]
    for n in picked:
        t["grad.param." + n] = f32(names[n].grad)
    write_safetensors(os.path.join(OUT, "mit_b0_segformer.safetensors"), t,
                      {"model": "mit_b0 + segformer_head(embed_dim 32, 5 classes)", "parameters": len(names)})


class Block(nn.Module):
    """torchvision BasicBlock / Bottleneck (stride on the 3x3 conv), for the counts."""

    def __init__(self, bottleneck, cin, planes, stride):
        super().__init__()
        out = planes * (4 if bottleneck else 1)
        if bottleneck:
            self.conv1 = nn.Conv2d(cin, planes, 1, bias=False); self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False); self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False); self.bn3 = nn.BatchNorm2d(out)
        else:
            self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))


def resnet_count(bottleneck, depths):
    m = nn.Module()
    m.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False); m.bn1 = nn.BatchNorm2d(64)
    cin = 64
    for i, d in enumerate(depths):
        blocks = []
        for j in range(d):
            blocks.append(Block(bottleneck, cin, 64 << i, 2 if (j == 0 and i > 0) else 1))
            cin = (64 << i) * (4 if bottleneck else 1)
        setattr(m, "layer%d" % (i + 1), nn.Sequential(*blocks))
    return sum(p.numel() for p in m.parameters())


def torchvision_name(peer):
    p = peer.split(".")
    if p[0] == "stem":
        return {"0": "conv1", "1": "bn1"}[p[1]] + "." + p[2]
    assert p[0] == "layers"
    head = "layer%d.%s." % (int(p[1]) + 1, p[2])
    rest = ".".join(p[3:])
    for k, v in {"c1.": "conv1.", "b1.": "bn1.", "c2.": "conv2.", "b2.": "bn2.", "down.": "downsample."}.items():
        if rest.startswith(k):
            return head + v + rest[len(k):]
    raise KeyError(peer)


def resnet_fixture():
    gen.manual_seed(5)
    net = ResNet18().double()
    names = {}
    with torch.no_grad():
        for k, p in net.named_parameters():
            n = torchvision_name(k)
            names[n] = p
            p.copy_(fill(n, tuple(p.shape)))
    net.eval()  # running statistics (0 / 1): batch statistics of 2 values per channel at stage 4 are ill-conditioned
    x = rnd(2, 3, 32, 32).requires_grad_(True)
    outs = net(x)
    ws = [rnd(*o.shape) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, ws)).backward()
    t = {"input.x": f32(x), "grad.input.x": f32(x.grad)}
    for i, (o, w) in enumerate(zip(outs, ws)):
        t["output.stage%d" % (i + 1)] = f32(o)
        t["weight.stage%d" % (i + 1)] = f32(w)
    for n in ["conv1.weight", "bn1.bias", "layer1.1.bn2.bias", "layer2.0.downsample.0.weight",
              "layer3.1.bn2.weight", "layer4.1.bn1.weight"]:
        t["grad.param." + n] = f32(names[n].grad)
    write_safetensors(os.path.join(OUT, "resnet18.safetensors"), t, {"model": "resnet18", "parameters": len(names)})


def param_counts():
    meta = {}
    for name, cfg in MIT.items():
        m = MiT(dims=cfg["dims"], depths=cfg["depths"])
        meta[name] = sum(p.numel() for p in m.parameters())
        print(name, meta[name])
    meta["resnet18"] = resnet_count(False, (2, 2, 2, 2))
    assert meta["resnet18"] == sum(p.numel() for p in ResNet18().parameters())  # the peer's
    meta["resnet34"] = resnet_count(False, (3, 4, 6, 3))
    meta["resnet50"] = resnet_count(True, (3, 4, 6, 3))
    meta["resnet101"] = resnet_count(True, (3, 4, 23, 3))
    # torchvision's published totals minus the 1000-way fc layer
    assert meta["resnet18"] == 11689512 - 513000 and meta["resnet50"] == 25557032 - 2049000
    assert meta["resnet101"] == 44549160 - 2049000
    print({k: v for k, v in meta.items() if k.startswith("resnet")})
    write_safetensors(os.path.join(OUT, "param_counts.safetensors"), {"unused": torch.zeros(1)}, meta)


# ---- the ProtoSeg step, as the published code computes it ------------------------------------
#
# Written from the behaviour of tfzhou/ProtoSeg (lib/models/nets/hrnet.py
# `HRNet_W48_Proto`, lib/models/modules/contrast.py `ProjectionHead`,
# lib/models/modules/sinkhorn.py `distributed_sinkhorn`, lib/loss/loss_proto.py
# `PixelPrototypeCELoss`), not from protoseg's C++:
#   * the projection head the published model builds is contrast.py's:
#     conv1x1 -> ReLU -> conv1x1, whose output is L2-normalised over the last
#     axis of the NCHW tensor (the image width);
#   * void pixels are relabelled -1 (the loader's ReLabel(255, -1)), and -1
#     is the ignore label of the step's targets and of every loss;
#   * the prototype each correct pixel moves is the hard Gumbel-softmax
#     sample (tau 0.5) of its Sinkhorn row; the targets are the argmax;
#   * the CE reads the logits upsampled with align_corners=True, optionally
#     class-weighted (the published Cityscapes ce_weight);
#   * Dropout2d before the projection head is random: the fixtures run it at
#     rate 0 (the C++ test does too); its placement is checked by name.
# The Gumbel variates cannot come from the same random stream as the C++
# generator, so they are drawn here, stored, and replayed by the test
# (prototype_head_options::gumbel_noise): rows in the order the published loop
# samples them (class 0's pixels in index order, then class 1's, ...).

class PublishedProjection(nn.Module):
    """contrast.py's ProjectionHead: Sequential(conv1x1, ReLU, conv1x1); the
    output divided by its L2 norm over dim=-1 (the width of an NCHW map)."""

    def __init__(self, dim_in, proj_dim):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(dim_in, dim_in, 1), nn.ReLU(), nn.Conv2d(dim_in, proj_dim, 1))

    def forward(self, x):
        y = self.proj(x)
        return y / y.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)


class PublishedProtoHead(nn.Module):
    """The head's modules under the published attribute names."""

    def __init__(self, E, C):
        super().__init__()
        self.proj_head = PublishedProjection(E, E)
        self.feat_norm = nn.LayerNorm(E)
        self.mask_norm = nn.LayerNorm(C)


def published_sinkhorn(out, noise, iters=3, epsilon=0.05):
    """distributed_sinkhorn on one class's (n, M) scores: the Sinkhorn
    assignment (n, M), its argmax, and gumbel_softmax(L, tau=0.5, hard=True)
    computed with the given Gumbel variates (n, M)."""
    L = torch.exp(out / epsilon).t()
    K, B = L.shape
    L = L / torch.sum(L)
    for _ in range(iters):
        L = L / torch.sum(L, dim=1, keepdim=True)
        L = L / K
        L = L / torch.sum(L, dim=0, keepdim=True)
        L = L / B
    L = (L * B).t()
    indexs = torch.argmax(L, dim=1)
    y_soft = torch.softmax((L + noise) / 0.5, dim=1)
    y_hard = F.one_hot(y_soft.argmax(dim=1), L.shape[1]).to(L.dtype)
    return y_hard - y_soft.detach() + y_soft, indexs, L


def published_forward_and_step(head, feats, labels, protos0, C, M, gamma, iters, kappa, noise_gen):
    """HRNet_W48_Proto.forward from the decoder's features on, with the
    prototype_learning step; labels (B, H', W') with 255 for void."""
    B, _, H, W = feats.shape
    D = protos0.shape[-1]
    c = head.proj_head(feats)
    _c = c.permute(0, 2, 3, 1).reshape(-1, D)  # rearrange 'b c h w -> (b h w) c'
    _c = head.feat_norm(_c)
    _c = F.normalize(_c, p=2, dim=-1)
    prototypes = F.normalize(protos0, p=2, dim=-1)
    masks = torch.einsum("nd,kmd->nmk", _c, prototypes)
    out_seg = head.mask_norm(torch.amax(masks, dim=1))
    logits = out_seg.reshape(B, H, W, C).permute(0, 3, 1, 2)
    gt = labels.clone()
    gt[gt == 255] = -1  # ReLabel(255, -1)
    gt_seg = F.interpolate(gt[:, None].double(), size=(H, W), mode="nearest").view(-1)

    # prototype_learning(_c, out_seg, gt_seg, masks)
    pred_seg = torch.max(out_seg, 1)[1]
    mask = gt_seg == pred_seg.view(-1)
    proto_logits = torch.mm(_c, prototypes.view(-1, D).t())
    proto_target = gt_seg.clone()
    protos = prototypes.detach().clone()
    noises, margins, agree, total = [], [], 0, 0
    for k in range(C):
        init_q = masks[..., k][gt_seg == k, ...].detach()
        if init_q.shape[0] == 0:
            continue
        g = (-torch.empty(init_q.shape, dtype=torch.float64).exponential_(generator=noise_gen).log()).to(init_q.dtype)
        noises.append(g)
        q, indexs, L = published_sinkhorn(init_q, g, iters, kappa)
        t2 = L.topk(2, dim=1).values
        margins.append((t2[:, 0] - t2[:, 1]).min().item())
        t2 = ((L + g) / 0.5).topk(2, dim=1).values
        margins.append((t2[:, 0] - t2[:, 1]).min().item())
        agree += int((q.argmax(1) == indexs).sum())
        total += int(indexs.numel())
        m_k = mask[gt_seg == k]
        c_k = _c.detach()[gt_seg == k, ...]
        m_q = q * m_k[:, None].to(q.dtype)
        c_q = c_k * m_k[:, None].to(c_k.dtype)
        f = m_q.transpose(0, 1) @ c_q
        n = torch.sum(m_q, dim=0)
        if torch.sum(n) > 0:
            f = F.normalize(f, p=2, dim=-1)
            protos[k, n != 0, :] = gamma * protos[k, n != 0, :] + (1 - gamma) * f[n != 0, :]
        proto_target[gt_seg == k] = indexs.double() + M * k
    new = F.normalize(protos, p=2, dim=-1)
    top2 = out_seg.detach().topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()
    ok = margin > 1e-3 and min(margins) > 1e-3 and int(mask[gt_seg >= 0].sum()) > 0
    return dict(logits=logits, proto_logits=proto_logits, target=proto_target.long(), new=new, ok=ok, margin=margin,
                sk_margin=min(margins), correct=int(mask[gt_seg >= 0].sum().item()),
                noise=torch.cat(noises, 0), gumbel_agree=agree, gumbel_total=total)


def published_objective(r, labels, class_weights=None):
    """PixelPrototypeCELoss.forward with ignore -1 (labels relabelled)."""
    target = labels.clone()
    target[target == 255] = -1
    h, w = target.shape[1:]
    pred = F.interpolate(r["logits"], size=(h, w), mode="bilinear", align_corners=True)
    ce = F.cross_entropy(pred, target, weight=class_weights, ignore_index=-1)
    logits, t = r["proto_logits"], r["target"]
    ppc = F.cross_entropy(logits, t, ignore_index=-1)
    keep = t != -1
    ppd = (1 - torch.gather(logits[keep, :], 1, t[keep][:, None])).pow(2).mean()
    return ce, ppc, ppd, ce + 0.01 * ppc + 0.001 * ppd


def fill_module(m, prefix=""):
    names = {}
    with torch.no_grad():
        for k, p in m.named_parameters():
            names[prefix + k] = p
            p.copy_(fill(prefix + k, tuple(p.shape)))
    return names


def step_outputs(r, losses):
    ce, ppc, ppd, total = losses
    return {"output.logits": f32(r["logits"]), "output.proto_logits": f32(r["proto_logits"]),
            "output.targets": r["target"], "output.prototypes": f32(r["new"]), "output.ce": f32(ce.reshape(1)),
            "output.ppc": f32(ppc.reshape(1)), "output.ppd": f32(ppd.reshape(1)), "output.total": f32(total.reshape(1)),
            "input.gumbel": r["noise"].double()}


CLASS_WEIGHTS = [0.8373, 0.9180, 0.8660, 1.0345]  # the first four of the published Cityscapes ce_weight


def proto_fixture():
    """The published head and step (projection conv-ReLU-conv + width
    normalisation, Gumbel sampling with recorded noise, align_corners=True,
    class-weighted CE)."""
    gen.manual_seed(6)
    noise_gen = torch.Generator().manual_seed(60)
    B, E, H, W, C, M = 2, 16, 8, 8, 4, 3
    D = E
    gamma, iters, kappa = 0.9, 3, 0.05
    head = PublishedProtoHead(E, C)
    params = fill_module(head)
    weights = torch.tensor(CLASS_WEIGHTS, dtype=torch.float64)
    for attempt in range(100):
        x = rnd(B, E, H, W).requires_grad_(True)
        labels = torch.randint(0, C, (B, 2 * H, 2 * W), generator=gen)
        labels[torch.rand(labels.shape, generator=gen) < 0.1] = 255
        protos0 = rnd(C, M, D)
        r = published_forward_and_step(head, x, labels, protos0, C, M, gamma, iters, kappa, noise_gen)
        if r["ok"]:
            break
    else:
        raise RuntimeError("no fixture without near ties")
    losses = published_objective(r, labels, weights)
    losses[3].backward()
    t = {"input.features": f32(x), "input.labels": labels, "input.prototypes": f32(protos0),
         "input.class_weights": f32(weights), "grad.input.features": f32(x.grad)}
    t.update(step_outputs(r, losses))
    for n, p in params.items():
        t["grad.param." + n] = f32(p.grad)
    write_safetensors(os.path.join(OUT, "proto_step.safetensors"), t,
                      {"C": C, "M": M, "D": D, "E": E, "gamma": gamma, "iterations": iters, "kappa": kappa,
                       "ignore_index": 255, "target_ignore_index": -1, "correct": r["correct"],
                       "class_margin": r["margin"], "sinkhorn_margin": r["sk_margin"],
                       "gumbel_equal_argmax": r["gumbel_agree"], "gumbel_rows": r["gumbel_total"]})
    print("proto step: correct", r["correct"], "margins", r["margin"], r["sk_margin"],
          "Gumbel sample = argmax for", r["gumbel_agree"], "of", r["gumbel_total"])


MODEL_STEP_GRADS = ["backbone.patch_embed1.proj.bias", "backbone.block2.1.attn.q.weight", "backbone.norm4.weight",
                    "decode_head.linear_c2.proj.weight", "decode_head.linear_fuse.bn.bias",
                    "proto_head.proj_head.proj.2.weight", "proto_head.mask_norm.weight"]


def run_model_step(dtype, x, labels, protos0, noise_seed, E, C, M, gamma, iters, kappa):
    """MiT-B0 + SegFormer decoder (no classifier) + the published ProtoSeg head, one step in `dtype`."""
    enc = MiT(dims=MIT["mit_b0"]["dims"], depths=MIT["mit_b0"]["depths"]).to(dtype)
    dec = SegFormerHead(MIT["mit_b0"]["dims"], E, 1).to(dtype)
    head = PublishedProtoHead(E, C).to(dtype)
    names = {}
    with torch.no_grad():
        for k, p in enc.named_parameters():
            names["backbone." + nvlabs_name(k)] = p
        for k, p in dec.named_parameters():
            if not k.startswith("linear_pred"):
                names["decode_head." + k] = p
        for k, p in head.named_parameters():
            names["proto_head." + k] = p
        for n, p in names.items():
            p.copy_(fill(n, tuple(p.shape)))
    x = x.detach().to(dtype).clone().requires_grad_(True)
    fs = enc(x)
    Hh, Ww = fs[0].shape[2:]
    parts = []
    for i in (3, 2, 1, 0):
        f = fs[i]
        B, _, h, w = f.shape
        y = getattr(dec, "linear_c%d" % (i + 1)).proj(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(B, -1, h, w)
        if i > 0:
            y = F.interpolate(y, size=(Hh, Ww), mode="bilinear", align_corners=False)
        parts.append(y)
    feats = F.relu(dec.linear_fuse.bn(dec.linear_fuse.conv(torch.cat(parts, 1))))
    noise_gen = torch.Generator().manual_seed(noise_seed)
    r = published_forward_and_step(head, feats, labels, protos0.to(dtype), C, M, gamma, iters, kappa, noise_gen)
    losses = published_objective(r, labels)
    losses[3].backward()
    return r, losses, names, x


def model_step_fixture():
    """One training step of the whole model. The gradients of this loss are
    ill-conditioned in float32 (small, from cancelling terms), so the fixture
    also records how far PyTorch's own float32 run is from the float64
    reference; the test holds the C++ float run to a small multiple of it."""
    gen.manual_seed(7)
    E, C, M = 16, 4, 3
    cfg = dict(E=E, C=C, M=M, gamma=0.9, iters=3, kappa=0.05)
    for attempt in range(100):
        x = rnd(1, 3, 64, 64)
        labels = torch.randint(0, C, (1, 64, 64), generator=gen)
        labels[torch.rand(labels.shape, generator=gen) < 0.1] = 255
        protos0 = rnd(C, M, E)
        r, losses, names, xv = run_model_step(torch.float64, x, labels, protos0, 70 + attempt, **cfg)
        if r["ok"]:
            break
    else:
        raise RuntimeError("no fixture without near ties")
    t = {"input.x": f32(x), "input.labels": labels, "input.prototypes": f32(protos0), "grad.input.x": f32(xv.grad)}
    t.update(step_outputs(r, losses))
    for n in MODEL_STEP_GRADS:
        t["grad.param." + n] = f32(names[n].grad)

    def err(a, b):
        return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()

    r32, losses32, names32, x32 = run_model_step(torch.float32, x, labels, protos0, 70 + attempt, **cfg)
    value_errs = {k: err(r32[k].detach(), r[k].detach()) for k in ("logits", "proto_logits", "new")}
    value_errs.update({k: err(a.detach(), b.detach()) for k, a, b in zip(("ce", "ppc", "ppd", "total"), losses32, losses)})
    print(value_errs)
    assert bool((r32["target"] == r["target"]).all())
    errs = {n: err(names32[n].grad, names[n].grad) for n in MODEL_STEP_GRADS}
    errs["x"] = err(x32.grad, xv.grad)
    print(errs)
    f32_err = max(errs.values())
    write_safetensors(os.path.join(OUT, "model_step.safetensors"), t,
                      {"C": C, "M": M, "E": E, "gamma": cfg["gamma"], "iterations": cfg["iters"], "kappa": cfg["kappa"],
                       "ignore_index": 255, "target_ignore_index": -1, "correct": r["correct"],
                       "parameters": len(names), "torch_float32_grad_error": "%.3e" % f32_err,
                       "torch_float32_value_error": "%.3e" % max(value_errs.values())})
    print("model step: correct", r["correct"], "margins", r["margin"], r["sk_margin"], "torch float32 grad error", f32_err)


# ---- dilated ResNets as mmsegmentation builds them -----------------------------------------
#
# From the behaviour of mmseg/models/backbones/resnet.py (`ResNetV1c`,
# `BasicBlock`, `Bottleneck` with style 'pytorch') and
# mmseg/models/utils/res_layer.py (`ResLayer`) under the -d8 configs
# (configs/_base_/models/fcn_r50-d8.py: strides (1, 2, 1, 1), dilations
# (1, 1, 2, 4), contract_dilation=True): the deep stem of three 3x3 convs, the
# stride on the 3x3 conv, the first block of a dilated stage at half its
# dilation, a basic block's second conv never dilated.

class MMSegBasic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class MMSegBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class MMSegResNetV1c(nn.Module):
    def __init__(self, block, depths, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        cin = 64
        self.stages = []
        for i, (d, s, dil) in enumerate(zip(depths, strides, dilations)):
            planes = 64 << i
            out = planes * block.expansion
            down = None
            if s != 1 or cin != out:
                down = nn.Sequential(nn.Conv2d(cin, out, 1, s, bias=False), nn.BatchNorm2d(out))
            first = dil // 2 if (contract_dilation and dil > 1) else dil
            blocks = [block(cin, planes, s, first, down)]
            blocks += [block(out, planes, 1, dil, None) for _ in range(1, d)]
            layer = nn.Sequential(*blocks)
            setattr(self, "layer%d" % (i + 1), layer)
            self.stages.append(layer)
            cin = out

    def forward(self, x):
        y = F.max_pool2d(self.stem(x), 3, 2, 1)
        outs = []
        for layer in self.stages:
            y = layer(y)
            outs.append(y)
        return outs


def dilated_resnet_fixture():
    """ResNetV1c-50 and ResNetV1c-18 at output stride 8 with contracted
    dilation (eval mode, 1x3x32x32): the four stage outputs, and for
    ResNet-18 d / d image of sum_s sum(w_s * out_s)."""
    gen.manual_seed(8)
    t, meta = {}, {}
    x = rnd(1, 3, 32, 32)
    t["input.x"] = f32(x)
    for name, block, depths in (("resnet50", MMSegBottleneck, (3, 4, 6, 3)), ("resnet18", MMSegBasic, (2, 2, 2, 2))):
        net = MMSegResNetV1c(block, depths).double()
        fill_module(net)
        net.eval()
        xv = x.clone().requires_grad_(True)
        outs = net(xv)
        for i, o in enumerate(outs):
            t["%s.output.stage%d" % (name, i + 1)] = f32(o)
        if name == "resnet18":
            ws = [rnd(*o.shape) for o in outs]
            sum((o * w).sum() for o, w in zip(outs, ws)).backward()
            for i, w in enumerate(ws):
                t["%s.weight.stage%d" % (name, i + 1)] = f32(w)
            t["%s.grad.input.x" % name] = f32(xv.grad)
        meta[name + ".parameters"] = sum(1 for _ in net.parameters())
        print(name, "d8:", [tuple(o.shape) for o in outs])
    meta["model"] = "mmsegmentation ResNetV1c d8, contract_dilation=True, eval mode"
    write_safetensors(os.path.join(OUT, "resnet_d8.safetensors"), t, meta)


FIXTURES = {"param_counts": param_counts, "mit_b0_segformer": mit_fixture, "resnet18": resnet_fixture,
            "proto_step": proto_fixture, "model_step": model_step_fixture, "resnet_d8": dilated_resnet_fixture}

if __name__ == "__main__":
    # Arguments: the fixtures to write (default: all). Each one seeds its own
    # draws, so writing one leaves the others as they are.
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    for name in sys.argv[1:] or list(FIXTURES):
        if name not in FIXTURES:
            sys.exit("unknown fixture '%s'; expected one of %s" % (name, ", ".join(FIXTURES)))
        FIXTURES[name]()
