#!/usr/bin/python3
"""Golden fixtures for protoseg's layers (tests/test_nn.cpp) and a
safetensors file written the way the Python library writes it
(tests/test_safetensors.cpp).

Run with Debian's PyTorch:  /usr/bin/python3 tools/gen_nn_fixtures.py

Each layer case is one safetensors file in tests/fixtures/nn/ holding
  input.<name>        inputs (float32 values, stored as F64)
  param.<name>        the layer's parameters under their PyTorch names
  buffer.<name>       buffers after the call (batch norm running statistics)
  weight              the weights w of the scalar loss sum(w * output)
  output              the output, computed in float64
  grad.input.<name>   d loss / d input
  grad.param.<name>   d loss / d parameter
and "__metadata__" with the layer options as strings. Everything is computed
in float64 from float32-representable values, so the C++ float run can be
compared within 1e-4 and the double run much tighter.

The SegFormer pieces (efficient self-attention, Mix-FFN, overlapping patch
embedding) are written here from the architecture of the NVlabs
mix_transformer.py (same parameter names and operations).
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "nn")

from safetensors_py import write_safetensors  # noqa: E402


gen = torch.Generator().manual_seed(2024)


def rnd(*shape, scale=1.0):
    """float32-representable values, returned as float64."""
    return (torch.randn(*shape, generator=gen) * scale).float().double()


def case(name, module, inputs, forward, options, buffers_after=None):
    """Runs forward(module, *inputs) in float64, back-propagates
    sum(w * out), and writes the fixture."""
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(rnd(*p.shape, scale=0.5))
    xs = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = forward(module, *xs.values())
    w = rnd(*out.shape)
    (out * w).sum().backward()
    t = {}
    for k, v in inputs.items():
        t["input." + k] = v
        t["grad.input." + k] = xs[k].grad
    for k, p in module.named_parameters():
        t["param." + k] = p.detach()
        t["grad.param." + k] = p.grad
    for k, b in module.named_buffers():
        if b.dtype == torch.int64:
            t["buffer." + k] = b
        else:
            t["buffer." + k] = b.double()
    t["weight"] = w
    t["output"] = out.detach()
    write_safetensors(os.path.join(OUT, name + ".safetensors"), t, options)


# ---- SegFormer pieces (architecture of NVlabs mix_transformer.py) ---------------

class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias, sr_ratio):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        h = self.num_heads
        q = self.q(x).reshape(B, N, h, C // h).permute(0, 2, 1, 3)
        src = x
        if self.sr_ratio > 1:
            img = x.permute(0, 2, 1).reshape(B, C, H, W)
            src = self.norm(self.sr(img).reshape(B, C, -1).permute(0, 2, 1))
        kv = self.kv(src).reshape(B, -1, 2, h, C // h).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(out)


class DWConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        y = self.dwconv(x.transpose(1, 2).reshape(B, C, H, W))
        return y.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, in_f, hidden):
        super().__init__()
        self.fc1 = nn.Linear(in_f, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, in_f)

    def forward(self, x, H, W):
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), H, W)))


class OverlapPatchEmbed(nn.Module):
    def __init__(self, patch_size, stride, in_chans, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride,
                              padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        x = self.proj(x)
        return self.norm(x.flatten(2).transpose(1, 2))


class Fn(nn.Module):
    """A parameter-free function as a module (resize, pooling)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *xs):
        return self.f(*xs)


def main():
    os.makedirs(OUT, exist_ok=True)
    case("linear", nn.Linear(5, 4), {"x": rnd(2, 3, 5)}, lambda m, x: m(x),
         {"in_features": 5, "out_features": 4, "bias": 1})
    case("linear_nobias", nn.Linear(6, 3, bias=False), {"x": rnd(4, 6)}, lambda m, x: m(x),
         {"in_features": 6, "out_features": 3, "bias": 0})
    convs = {
        "conv2d_plain": dict(i=3, o=4, k=3, s=2, p=1, d=1, g=1, b=1, x=(2, 3, 9, 8)),
        "conv2d_grouped_dilated": dict(i=4, o=6, k=3, s=1, p=2, d=2, g=2, b=1, x=(2, 4, 7, 7)),
        "conv2d_depthwise": dict(i=6, o=6, k=3, s=1, p=1, d=1, g=6, b=1, x=(2, 6, 5, 6)),
        "conv2d_depthwise_strided": dict(i=4, o=4, k=3, s=2, p=1, d=1, g=4, b=0, x=(2, 4, 7, 6)),
        "conv2d_pointwise": dict(i=5, o=3, k=1, s=1, p=0, d=1, g=1, b=0, x=(2, 5, 4, 3)),
        "conv2d_rect": dict(i=2, o=3, k=(3, 2), s=(2, 1), p=(1, 0), d=1, g=1, b=1, x=(1, 2, 6, 5)),
    }
    for name, c in convs.items():
        m = nn.Conv2d(c["i"], c["o"], c["k"], stride=c["s"], padding=c["p"], dilation=c["d"],
                      groups=c["g"], bias=bool(c["b"]))
        k = c["k"] if isinstance(c["k"], tuple) else (c["k"], c["k"])
        s = c["s"] if isinstance(c["s"], tuple) else (c["s"], c["s"])
        p = c["p"] if isinstance(c["p"], tuple) else (c["p"], c["p"])
        case(name, m, {"x": rnd(*c["x"])}, lambda m, x: m(x),
             {"in_channels": c["i"], "out_channels": c["o"], "kernel_h": k[0], "kernel_w": k[1],
              "stride_h": s[0], "stride_w": s[1], "pad_h": p[0], "pad_w": p[1], "dilation": c["d"],
              "groups": c["g"], "bias": c["b"]})
    case("layer_norm", nn.LayerNorm(8, eps=1e-6), {"x": rnd(2, 5, 8)}, lambda m, x: m(x),
         {"normalized_shape": 8, "eps": "1e-6"})
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.copy_(rnd(4, scale=0.1))
        bn.running_var.copy_(rnd(4).abs() + 0.5)
    start = {"running_mean": bn.running_mean.clone().double(), "running_var": bn.running_var.clone().double()}
    bn.train()
    case("batch_norm_train", bn, {"x": rnd(3, 4, 5, 5, scale=2.0) + 1.0}, lambda m, x: m(x),
         {"num_features": 4, "training": 1})
    # The running statistics before the call, for the C++ side to start from.
    extra = os.path.join(OUT, "batch_norm_train_start.safetensors")
    write_safetensors(extra, start)
    bn2 = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn2.running_mean.copy_(rnd(3, scale=0.1))
        bn2.running_var.copy_(rnd(3).abs() + 0.5)
    bn2.eval()
    case("batch_norm_eval", bn2, {"x": rnd(2, 3, 4, 4)}, lambda m, x: m(x), {"num_features": 3, "training": 0})

    for name, size, mode, ac, shape in [
            ("resize_bilinear_up", (9, 13), "bilinear", False, (2, 2, 5, 7)),
            ("resize_bilinear_down", (4, 5), "bilinear", False, (1, 3, 9, 13)),
            ("resize_bilinear_up_ac", (9, 13), "bilinear", True, (2, 2, 5, 7)),
            ("resize_bilinear_down_ac", (4, 5), "bilinear", True, (1, 3, 9, 13)),
            ("resize_bilinear_x4", (16, 12), "bilinear", False, (1, 2, 4, 3)),
            ("resize_nearest_up", (9, 13), "nearest", False, (2, 2, 5, 7)),
            ("resize_nearest_down", (4, 5), "nearest", False, (1, 3, 9, 13))]:
        f = (lambda size, mode, ac: lambda x: F.interpolate(
            x, size=size, mode=mode, align_corners=(ac if mode == "bilinear" else None)))(size, mode, ac)
        case(name, Fn(f), {"x": rnd(*shape)}, lambda m, x: m(x),
             {"out_h": size[0], "out_w": size[1], "mode": mode, "align_corners": int(ac)})
    for name, k, s, p, shape in [("max_pool_k3s2p1", 3, 2, 1, (2, 3, 9, 8)),
                                 ("max_pool_k2s2", 2, 2, 0, (1, 2, 6, 7))]:
        f = (lambda k, s, p: lambda x: F.max_pool2d(x, k, s, p))(k, s, p)
        case(name, Fn(f), {"x": rnd(*shape)}, lambda m, x: m(x), {"kernel": k, "stride": s, "padding": p})

    for name, sr, H, W in [("attention_sr2", 2, 4, 6), ("attention_sr1", 1, 3, 3)]:
        m = Attention(8, 2, True, sr)
        case(name, m, {"x": rnd(2, H * W, 8)}, (lambda H, W: lambda m, x: m(x, H, W))(H, W),
             {"dim": 8, "num_heads": 2, "qkv_bias": 1, "sr_ratio": sr, "H": H, "W": W})
    case("mix_ffn", Mlp(8, 16), {"x": rnd(2, 4 * 5, 8)}, lambda m, x: m(x, 4, 5),
         {"in_features": 8, "hidden_features": 16, "H": 4, "W": 5})
    for name, k, s, shape in [("patch_embed_k7s4", 7, 4, (1, 3, 13, 11)), ("patch_embed_k3s2", 3, 2, (1, 4, 7, 8))]:
        m = OverlapPatchEmbed(k, s, shape[1], 8)
        case(name, m, {"x": rnd(*shape)}, lambda m, x: m(x),
             {"patch_size": k, "stride": s, "in_channels": shape[1], "embed_dim": 8})

    # A file laid out as the safetensors library writes it, with every dtype
    # the reader converts and metadata.
    t = {
        "a.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5,
        "b.f64": torch.tensor([[1.5, -2.25], [1e-300, 3.0]], dtype=torch.float64),
        "c.i64": torch.tensor([-(2 ** 40), 0, 7], dtype=torch.int64),
        "d.f16": torch.tensor([0.5, -1.0, 65504.0, 6.1035156e-05, 5.96e-08, 0.0], dtype=torch.float16),
        "e.bf16": torch.tensor([1.0, -3.140625, 1e30, 0.0], dtype=torch.bfloat16),
        "f.scalar": torch.tensor(2.5, dtype=torch.float32),
        "g.empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    write_safetensors(os.path.join(OUT, "python_written.safetensors"), t, {"format": "pt", "note": "q\"uote\\"})
    with open(os.path.join(OUT, "python_written.expected.json"), "w") as f:
        json.dump({k: {"shape": list(v.shape), "values": v.double().flatten().tolist()} for k, v in t.items()}, f)


if __name__ == "__main__":
    main()
