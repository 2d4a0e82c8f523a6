#!/usr/bin/env python3
"""Writes the fixtures of tests/test_pretrained.cpp to tests/fixtures/convert/
(Debian's PyTorch and python3-torchvision):

  keys_<layout>.json   the key -> [dtype, shape] list that tools/convert_weights.py
                       writes for each source layout at the published
                       architecture (MiT-B0, ResNet-18), built from PyTorch
                       module trees with the source's structure (not by
                       inverting the key map): NVlabs MiT-B0 (ImageNet file with
                       its classifier), an NVlabs SegFormer-B0 segmentation
                       checkpoint converted with --prefix backbone., an
                       mmsegmentation 1.x MixVisionTransformer B0 wrapped in
                       state_dict with a backbone. prefix, torchvision's
                       resnet18(), and an mmsegmentation ResNet-18 V1c
                       segmentation checkpoint (deep stem, heads dropped).
  tiny_mit_mmseg.safetensors / tiny_mit_mmseg.json
                       a tiny MiT built in the mmsegmentation 1.x structure
                       (nn.MultiheadAttention, 1x1-conv FFN) with random
                       weights, converted by the tool, and its four stage
                       features on a fixed 1x3x64x64 input.

The generator also checks the map in PyTorch: the converted tiny weights are
loaded strictly into an NVlabs-structured MiT, whose output must equal the
mmseg-structured model's.
"""
import json
import math
import os
import struct
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_weights  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "fixtures", "convert")


# ---- NVlabs SegFormer MiT (mix_transformer.py structure) ---------------------------

class NvPatchEmbed(nn.Module):
    def __init__(s, cin, d, k, st):
        super().__init__()
        s.proj = nn.Conv2d(cin, d, k, st, k // 2)
        s.norm = nn.LayerNorm(d)

    def forward(s, x):
        x = s.proj(x)
        _, _, H, W = x.shape
        return s.norm(x.flatten(2).transpose(1, 2)), H, W


class NvAttention(nn.Module):
    def __init__(s, d, h, sr):
        super().__init__()
        s.h, s.sr_ratio = h, sr
        s.q = nn.Linear(d, d)
        s.kv = nn.Linear(d, 2 * d)
        s.proj = nn.Linear(d, d)
        if sr > 1:
            s.sr = nn.Conv2d(d, d, sr, sr)
            s.norm = nn.LayerNorm(d)

    def forward(s, x, H, W):
        B, N, C = x.shape
        q = s.q(x).reshape(B, N, s.h, C // s.h).permute(0, 2, 1, 3)
        if s.sr_ratio > 1:
            x = s.norm(s.sr(x.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2))
        kv = s.kv(x).reshape(B, -1, 2, s.h, C // s.h).permute(2, 0, 3, 1, 4)
        a = (q @ kv[0].transpose(-2, -1)) * (C // s.h) ** -0.5
        return s.proj((a.softmax(-1) @ kv[1]).transpose(1, 2).reshape(B, N, C))


class NvDWConv(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.dwconv = nn.Conv2d(d, d, 3, 1, 1, groups=d)


class NvMlp(nn.Module):
    def __init__(s, d, hidden):
        super().__init__()
        s.fc1 = nn.Linear(d, hidden)
        s.dwconv = NvDWConv(hidden)
        s.fc2 = nn.Linear(hidden, d)

    def forward(s, x, H, W):
        y = s.fc1(x)
        B, N, C = y.shape
        y = s.dwconv.dwconv(y.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
        return s.fc2(F.gelu(y))


class NvBlock(nn.Module):
    def __init__(s, d, h, sr):
        super().__init__()
        s.norm1 = nn.LayerNorm(d, eps=1e-6)
        s.attn = NvAttention(d, h, sr)
        s.norm2 = nn.LayerNorm(d, eps=1e-6)
        s.mlp = NvMlp(d, 4 * d)

    def forward(s, x, H, W):
        x = x + s.attn(s.norm1(x), H, W)
        return x + s.mlp(s.norm2(x), H, W)


class NvMiT(nn.Module):
    def __init__(s, dims, heads, depths, srs, num_classes=1000):
        super().__init__()
        cin = 3
        for i in range(4):
            k, st = (7, 4) if i == 0 else (3, 2)
            setattr(s, "patch_embed%d" % (i + 1), NvPatchEmbed(cin, dims[i], k, st))
            cin = dims[i]
        for i in range(4):
            setattr(s, "block%d" % (i + 1), nn.ModuleList([NvBlock(dims[i], heads[i], srs[i])
                                                           for _ in range(depths[i])]))
            setattr(s, "norm%d" % (i + 1), nn.LayerNorm(dims[i], eps=1e-6))
        s.head = nn.Linear(dims[3], num_classes)  # the ImageNet classifier

    def forward(s, x):
        outs = []
        for i in range(1, 5):
            x, H, W = getattr(s, "patch_embed%d" % i)(x)
            for b in getattr(s, "block%d" % i):
                x = b(x, H, W)
            x = getattr(s, "norm%d" % i)(x)
            x = x.reshape(x.shape[0], H, W, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


class NvSegFormerHead(nn.Module):
    """mmseg 0.x SegFormerHead as NVlabs trains it (conv_seg unused)."""

    class MLP(nn.Module):
        def __init__(s, cin, d):
            super().__init__()
            s.proj = nn.Linear(cin, d)

    class ConvModule(nn.Module):
        def __init__(s, cin, d):
            super().__init__()
            s.conv = nn.Conv2d(cin, d, 1, bias=False)
            s.bn = nn.BatchNorm2d(d)

    def __init__(s, dims, d, classes):
        super().__init__()
        s.conv_seg = nn.Conv2d(d, classes, 1)
        for i in (4, 3, 2, 1):
            setattr(s, "linear_c%d" % i, NvSegFormerHead.MLP(dims[i - 1], d))
        s.linear_fuse = NvSegFormerHead.ConvModule(4 * d, d)
        s.linear_pred = nn.Conv2d(d, classes, 1)


# ---- mmsegmentation 1.x MixVisionTransformer structure -----------------------------

class MmPatchEmbed(nn.Module):
    def __init__(s, cin, d, k, st, eps):
        super().__init__()
        s.projection = nn.Conv2d(cin, d, k, st, k // 2)
        s.norm = nn.LayerNorm(d, eps=eps)

    def forward(s, x):
        x = s.projection(x)
        _, _, H, W = x.shape
        return s.norm(x.flatten(2).transpose(1, 2)), (H, W)


class MmEfficientMultiheadAttention(nn.Module):
    def __init__(s, d, h, sr, eps):
        super().__init__()
        s.attn = nn.MultiheadAttention(d, h, batch_first=True)
        s.proj_drop = nn.Dropout(0.0)
        s.sr_ratio = sr
        if sr > 1:
            s.sr = nn.Conv2d(d, d, sr, sr)
            s.norm = nn.LayerNorm(d, eps=eps)

    def forward(s, x, hw, identity):
        kv = x
        if s.sr_ratio > 1:
            B, N, C = x.shape
            kv = s.norm(s.sr(x.transpose(1, 2).reshape(B, C, *hw)).flatten(2).transpose(1, 2))
        out = s.attn(query=x, key=kv, value=kv, need_weights=False)[0]
        return identity + s.proj_drop(out)


class MmMixFFN(nn.Module):
    def __init__(s, d, hidden):
        super().__init__()
        s.layers = nn.Sequential(nn.Conv2d(d, hidden, 1), nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden),
                                 nn.GELU(), nn.Dropout(0.0), nn.Conv2d(hidden, d, 1), nn.Dropout(0.0))

    def forward(s, x, hw, identity):
        B, N, C = x.shape
        y = s.layers(x.transpose(1, 2).reshape(B, C, *hw))
        return identity + y.flatten(2).transpose(1, 2)


class MmTransformerEncoderLayer(nn.Module):
    def __init__(s, d, h, sr, eps_block, eps_reduce):
        super().__init__()
        s.norm1 = nn.LayerNorm(d, eps=eps_block)
        s.attn = MmEfficientMultiheadAttention(d, h, sr, eps_reduce)
        s.norm2 = nn.LayerNorm(d, eps=eps_block)
        s.ffn = MmMixFFN(d, 4 * d)

    def forward(s, x, hw):
        x = s.attn(s.norm1(x), hw, identity=x)
        return s.ffn(s.norm2(x), hw, identity=x)


class MmMixVisionTransformer(nn.Module):
    """`layers[i]` = ModuleList([PatchEmbed, ModuleList(blocks), LayerNorm]).
    mmsegmentation builds every LayerNorm with eps 1e-6; NVlabs (and
    protoseg) use 1e-5 in the patch embedding and the reduction norm, which
    `eps_embed` selects."""

    def __init__(s, dims, heads, depths, srs, eps_embed=1e-6):
        super().__init__()
        s.layers = nn.ModuleList()
        cin = 3
        for i in range(4):
            k, st = (7, 4) if i == 0 else (3, 2)
            s.layers.append(nn.ModuleList([
                MmPatchEmbed(cin, dims[i], k, st, eps_embed),
                nn.ModuleList([MmTransformerEncoderLayer(dims[i], heads[i], srs[i], 1e-6, eps_embed)
                               for _ in range(depths[i])]),
                nn.LayerNorm(dims[i], eps=1e-6)]))
            cin = dims[i]

    def forward(s, x):
        outs = []
        for embed, blocks, norm in s.layers:
            x, hw = embed(x)
            for b in blocks:
                x = b(x, hw)
            x = norm(x)
            x = x.reshape(x.shape[0], hw[0], hw[1], -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


# ---- mmsegmentation ResNetV1c ------------------------------------------------------

def mmseg_resnet18_v1c():
    """torchvision's BasicBlock stages under mmseg's deep stem (stem.0..8)."""
    import torchvision

    class V1c(nn.Module):
        def __init__(s):
            super().__init__()
            tv = torchvision.models.resnet18()

            def cbr(i, o):
                return [nn.Conv2d(i, o, 3, 2 if i == 3 else 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
            s.stem = nn.Sequential(*cbr(3, 32), *cbr(32, 32), *cbr(32, 64))
            s.maxpool = tv.maxpool
            s.layer1, s.layer2, s.layer3, s.layer4 = tv.layer1, tv.layer2, tv.layer3, tv.layer4
    return V1c()


# ---- helpers ---------------------------------------------------------------------

def run_tool(obj, *args):
    """Saves `obj` with torch.save and runs convert_weights.py's main on it;
    returns the header of the written safetensors file."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.pth"), os.path.join(d, "out.safetensors")
        torch.save(obj, src)
        rc = convert_weights.main([src, dst, "--quiet"] + list(args))
        assert rc == 0, "convert_weights.py failed"
        with open(dst, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            blob = f.read()
    header.pop("__metadata__", None)
    return header, blob


def key_list(header):
    return {k: [v["dtype"], v["shape"]] for k, v in sorted(header.items())}


def write_json(name, obj):
    """One top-level entry a line (small diffs when a fixture changes)."""
    lines = ["%s: %s" % (json.dumps(k), json.dumps(v, separators=(",", ":"))) for k, v in sorted(obj.items())]
    with open(os.path.join(OUT, name), "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def randomise(model, gen):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1 and n.endswith("weight"):  # LayerNorm scales
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in))


def tiny_input():
    """A 1x3x64x64 input from a formula (not stored): float(sin(0.37 i + 0.1) * 0.9)."""
    i = torch.arange(3 * 64 * 64, dtype=torch.float64)
    return (torch.sin(0.37 * i + 0.1) * 0.9).float().double().reshape(1, 3, 64, 64)


B0 = dict(dims=(32, 64, 160, 256), heads=(1, 2, 5, 8), depths=(2, 2, 2, 2), srs=(8, 4, 2, 1))
TINY = dict(dims=(8, 8, 16, 16), heads=(1, 2, 2, 4), depths=(2, 1, 1, 2), srs=(8, 4, 2, 1))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    import torchvision

    # NVlabs ImageNet file: our names plus the classifier.
    nv = NvMiT(**B0)
    h, _ = run_tool(nv.state_dict())
    write_json("keys_nvlabs_mit_b0.json", key_list(h))
    # NVlabs SegFormer-B0 segmentation checkpoint (ADE20K: 150 classes), for a whole model.
    head = NvSegFormerHead(B0["dims"], 256, 150)
    sd = {"backbone." + k: v for k, v in nv.state_dict().items() if not k.startswith("head.")}
    sd.update({"decode_head." + k: v for k, v in head.state_dict().items()})
    h, _ = run_tool({"meta": {"iter": 160000}, "state_dict": sd}, "--prefix", "backbone.")
    write_json("keys_nvlabs_segformer_b0.json", key_list(h))
    # mmsegmentation 1.x MiT-B0, as a segmentation checkpoint's backbone.
    mm = MmMixVisionTransformer(**B0)
    sd = {"backbone." + k: v for k, v in mm.state_dict().items()}
    sd["decode_head.conv_seg.weight"] = torch.zeros(150, 256, 1, 1)
    h, _ = run_tool({"meta": {}, "state_dict": sd})
    write_json("keys_mmseg_mit_b0.json", key_list(h))
    # torchvision ResNet-18 (fc dropped).
    h, _ = run_tool(torchvision.models.resnet18().state_dict())
    write_json("keys_torchvision_resnet18.json", key_list(h))
    # mmsegmentation ResNet-18 V1c segmentation checkpoint (heads dropped).
    sd = {"backbone." + k: v for k, v in mmseg_resnet18_v1c().state_dict().items()}
    sd["decode_head.conv_seg.weight"] = torch.zeros(19, 512, 1, 1)
    sd["auxiliary_head.convs.0.conv.weight"] = torch.zeros(256, 256, 3, 3)
    h, _ = run_tool({"meta": {}, "state_dict": sd})
    write_json("keys_mmseg_resnet18_v1c.json", key_list(h))

    # The tiny mmseg-structured MiT: converted weights and golden features.
    gen = torch.Generator().manual_seed(4)
    ref = MmMixVisionTransformer(**TINY, eps_embed=1e-5).double()
    randomise(ref, gen)
    with torch.no_grad():  # float-representable weights: the C++ side loads them as F32
        for p in ref.parameters():
            p.copy_(p.float().double())
    ref.eval()
    x = tiny_input()
    with torch.no_grad():
        outs = ref(x)
        ref_mmeps = MmMixVisionTransformer(**TINY, eps_embed=1e-6).double()
        ref_mmeps.load_state_dict(ref.state_dict())
        eps_gap = max((a - b).abs().max().item() for a, b in zip(outs, ref_mmeps(x)))
    sd = {k: v.float() for k, v in ref.state_dict().items()}
    h, blob = run_tool({"state_dict": sd})
    # Cross-check the map in PyTorch: the converted tensors load strictly into
    # the NVlabs structure, which computes the same features.
    nvt = NvMiT(**TINY).double()
    del nvt.head
    conv = {}
    for k, v in h.items():
        a, b = v["data_offsets"]
        conv[k] = torch.tensor(struct.unpack("<%df" % ((b - a) // 4), blob[a:b]),
                               dtype=torch.float64).reshape(v["shape"])
    nvt.load_state_dict(conv, strict=True)
    with torch.no_grad():
        nv_outs = nvt(x)
        ref_f = MmMixVisionTransformer(**TINY, eps_embed=1e-5).double()
        ref_f.load_state_dict({k: v.double() for k, v in sd.items()})
        gap = max((a - b).abs().max().item() for a, b in zip(ref_f(x), nv_outs))
    assert gap < 1e-10, "the mmseg-mit map changes the function (max diff %g)" % gap
    with tempfile.TemporaryDirectory() as d:
        torch.save({"state_dict": sd}, os.path.join(d, "in.pth"))
        assert convert_weights.main([os.path.join(d, "in.pth"), os.path.join(OUT, "tiny_mit_mmseg.safetensors"),
                                     "--quiet"]) == 0
    write_json("tiny_mit_mmseg.json", {
        "config": {k: list(v) for k, v in TINY.items()},
        "input_shape": list(x.shape),
        "input": "x[i] = float(sin(0.37 i + 0.1) * 0.9), i the flat index",
        "features": [{"shape": list(o.shape), "values": [float("%.10g" % v) for v in o.flatten().tolist()]} for o in outs],
        "nvlabs_structure_gap": gap,
        "mmseg_eps_gap": eps_gap,
    })
    print("mmseg-mit map: NVlabs-structure gap %.3g; mmseg eps (1e-6 in the embedding and "
          "reduction norms) moves the features by %.3g" % (gap, eps_gap))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %s (%d bytes)" % (OUT, total))


if __name__ == "__main__":
    main()
