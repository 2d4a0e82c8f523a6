#!/usr/bin/env python3
"""Converts published PyTorch weights of the MiT and ResNet backbones into a
safetensors file under protoseg's names (the NVlabs / torchvision names that
`models::mix_transformer` and `models::resnet` use). Needs only PyTorch.

    convert_weights.py IN.pth OUT.safetensors [--format auto|nvlabs-mit|mmseg-mit|
                       torchvision-resnet|mmseg-resnet] [--prefix backbone.]

Layouts:
  nvlabs-mit          NVlabs SegFormer: ImageNet mit_bX.pth (our names plus the
                      classifier head.*, dropped) or a segmentation checkpoint
                      ({'state_dict'}: backbone.* and decode_head.*; the decoder
                      is kept with --prefix backbone., decode_head.conv_seg.*
                      is dropped).
  mmseg-mit           mmsegmentation 1.x MixVisionTransformer (layers.i.0/1/2,
                      nn.MultiheadAttention in_proj split into q and kv, 1x1
                      conv FFN squeezed into Linear weights).
  torchvision-resnet  torchvision ResNet (our names; fc.* dropped).
  mmseg-resnet        mmsegmentation ResNet / ResNetV1c (stem.0,1,3,4,6,7 or
                      conv1/bn1, layer1..4); heads dropped.

The checkpoint is unwrapped from 'state_dict' / 'model', and the prefixes
'module.' and 'backbone.' are removed. Floating tensors are written as F32.
BatchNorm layers without num_batches_tracked (old torchvision files) get a
zero counter. The file is written atomically (temporary file, then rename).
With --prefix P every backbone name gets P (e.g. 'backbone.' for loading into
a whole `segmentation_model`, non-strict since its heads are missing).
Exit status: 0 converted, 1 the input cannot be read, recognised or mapped.
"""
import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_py import write_safetensors  # noqa: E402

FORMATS = ("nvlabs-mit", "mmseg-mit", "torchvision-resnet", "mmseg-resnet")


class ConversionError(Exception):
    pass


# ---- our names ----------------------------------------------------------------------

_WB = r"\.(weight|bias)"
_BN = r"\.(weight|bias|running_mean|running_var|num_batches_tracked)"
MIT_NAMES = [re.compile(p + "$") for p in (
    r"patch_embed[1-4]\.(proj|norm)" + _WB,
    r"block[1-4]\.\d+\.(norm1|norm2)" + _WB,
    r"block[1-4]\.\d+\.attn\.(q|kv|proj|sr|norm)" + _WB,
    r"block[1-4]\.\d+\.mlp\.(fc1|fc2|dwconv\.dwconv)" + _WB,
    r"norm[1-4]" + _WB,
)]
RESNET_NAMES = [re.compile(p + "$") for p in (
    r"conv1\.weight",
    r"bn1" + _BN,
    r"layer[1-4]\.\d+\.conv[1-3]\.weight",
    r"layer[1-4]\.\d+\.bn[1-3]" + _BN,
    r"layer[1-4]\.\d+\.downsample\.0\.weight",
    r"layer[1-4]\.\d+\.downsample\.1" + _BN,
)]
STEM_NAMES = [re.compile(p + "$") for p in (r"stem\.[036]\.weight", r"stem\.[147]" + _BN)]
# The NVlabs SegFormer decoder (mmseg 0.x SegFormerHead), which protoseg's names follow.
SEGFORMER_HEAD_NAMES = [re.compile(p + "$") for p in (
    r"linear_c[1-4]\.proj" + _WB,
    r"linear_fuse\.conv\.weight",
    r"linear_fuse\.bn" + _BN,
    r"linear_pred" + _WB,
)]


def _known(name, patterns):
    return any(p.match(name) for p in patterns)


# ---- reading ------------------------------------------------------------------------

def load_checkpoint(path, allow_pickle=False):
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
        except TypeError:  # a PyTorch without weights_only
            obj = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise ConversionError("%s: no such file" % path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        hint = ""
        if not allow_pickle and "weights" in str(e).lower() and "only" in str(e).lower():
            hint = (" (it holds Python objects besides tensors; if you trust the file, "
                    "pass --allow-pickle to unpickle it fully)")
        raise ConversionError("%s: cannot be read as a PyTorch checkpoint: %s: %s%s"
                              % (path, type(e).__name__, text, hint))
    return obj


def unwrap(obj, path):
    """The flat name -> tensor dict of a checkpoint."""
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError("%s: holds no state dict (expected a dict of tensors, "
                              "possibly under 'state_dict' or 'model')" % path)
    sd = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            raise ConversionError("%s: entry %r is not a named tensor; not a state dict" % (path, k))
        if k.startswith("module."):
            k = k[len("module."):]
        sd[k] = v
    return sd


def split_prefixes(sd):
    """Backbone entries (without 'backbone.') and the rest (heads)."""
    if any(k.startswith("backbone.") for k in sd):
        bb = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
        rest = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
        return bb, rest
    return dict(sd), {}


def detect(bb):
    if "patch_embed1.proj.weight" in bb:
        return "nvlabs-mit"
    if "layers.0.0.projection.weight" in bb:
        return "mmseg-mit"
    if "layer1.0.conv1.weight" in bb:
        if "stem.0.weight" in bb:
            return "mmseg-resnet"
        if "conv1.weight" in bb:
            return "torchvision-resnet"
    return None


# ---- the layouts ----------------------------------------------------------------------

class Result:
    def __init__(self):
        self.out = {}        # our name -> tensor
        self.dropped = []    # (source name, why)
        self.unmapped = []   # source names
        self.notes = []

    def put(self, name, t):
        if name in self.out:
            raise ConversionError("two source tensors map to '%s'" % name)
        self.out[name] = t


def convert_identity(bb, res, patterns, drop):
    for k, v in bb.items():
        if any(k == d or k.startswith(d + ".") for d in drop):
            res.dropped.append((k, "classifier"))
        elif _known(k, patterns):
            res.put(k, v)
        else:
            res.unmapped.append(k)


def convert_mmseg_mit(bb, res):
    pat = re.compile(r"layers\.(\d+)\.(\d)\.(.*)$")
    for k, v in bb.items():
        m = pat.match(k)
        if not m or int(m.group(1)) > 3:
            res.unmapped.append(k)
            continue
        s, part, rest = int(m.group(1)) + 1, int(m.group(2)), m.group(3)
        if part == 0:  # PatchEmbed
            mm = re.match(r"(projection|norm)\.(weight|bias)$", rest)
            if not mm:
                res.unmapped.append(k)
                continue
            res.put("patch_embed%d.%s.%s" % (s, "proj" if mm.group(1) == "projection" else "norm", mm.group(2)), v)
        elif part == 2:  # the stage norm
            mm = re.match(r"(weight|bias)$", rest)
            if not mm:
                res.unmapped.append(k)
                continue
            res.put("norm%d.%s" % (s, mm.group(1)), v)
        elif part == 1:  # transformer blocks
            mm = re.match(r"(\d+)\.(.*)$", rest)
            if not mm:
                res.unmapped.append(k)
                continue
            blk, r = "block%d.%s." % (s, mm.group(1)), mm.group(2)
            a = re.match(r"(norm1|norm2|attn\.sr|attn\.norm)\.(weight|bias)$", r)
            if a:
                res.put(blk + r, v)
                continue
            a = re.match(r"attn\.attn\.in_proj_(weight|bias)$", r)
            if a:
                c = v.shape[0] // 3
                if v.shape[0] != 3 * c or (v.dim() == 2 and v.shape[1] != c):
                    raise ConversionError("'%s' has shape %s, expected (3C, C) / (3C,)" % (k, tuple(v.shape)))
                res.put(blk + "attn.q." + a.group(1), v[:c].clone())
                res.put(blk + "attn.kv." + a.group(1), v[c:].clone())
                continue
            a = re.match(r"attn\.attn\.out_proj\.(weight|bias)$", r)
            if a:
                res.put(blk + "attn.proj." + a.group(1), v)
                continue
            a = re.match(r"ffn\.layers\.([014])\.(weight|bias)$", r)
            if a:
                layer = {"0": "mlp.fc1", "1": "mlp.dwconv.dwconv", "4": "mlp.fc2"}[a.group(1)]
                if a.group(1) != "1" and a.group(2) == "weight":
                    if v.dim() != 4 or v.shape[2:] != (1, 1):
                        raise ConversionError("'%s' has shape %s, expected a 1x1 convolution (O, I, 1, 1)"
                                              % (k, tuple(v.shape)))
                    v = v[:, :, 0, 0].clone()
                res.put(blk + layer + "." + a.group(2), v)
                continue
            res.unmapped.append(k)
        else:
            res.unmapped.append(k)


def add_batch_counters(res):
    added = 0
    for k in list(res.out):
        if k.endswith(".running_mean"):
            n = k[:-len("running_mean")] + "num_batches_tracked"
            if n not in res.out:
                res.out[n] = torch.zeros((), dtype=torch.int64)
                added += 1
    if added:
        res.notes.append("added num_batches_tracked = 0 to %d BatchNorm layers that lacked it" % added)


def convert(sd, fmt="auto", prefix="", path="input"):
    """Converts a flat state dict; returns (format, Result)."""
    bb, rest = split_prefixes(sd)
    found = detect(bb)
    if fmt == "auto":
        if found is None:
            raise ConversionError(
                "%s: cannot recognise the layout (no patch_embed1.proj.weight (NVlabs MiT), "
                "layers.0.0.projection.weight (mmseg MiT), or conv1.weight / stem.0.weight with "
                "layer1.0.conv1.weight (ResNet)); first keys: %s" % (path, ", ".join(sorted(bb)[:5])))
        fmt = found
    elif found is not None and found != fmt and not (fmt == "mmseg-resnet" and found == "torchvision-resnet"):
        raise ConversionError("%s: --format %s given, but the keys look like %s" % (path, fmt, found))
    res = Result()
    if fmt == "nvlabs-mit":
        convert_identity(bb, res, MIT_NAMES, ["head"])
    elif fmt == "mmseg-mit":
        convert_mmseg_mit(bb, res)
    elif fmt == "torchvision-resnet":
        convert_identity(bb, res, RESNET_NAMES, ["fc"])
    elif fmt == "mmseg-resnet":
        convert_identity(bb, res, RESNET_NAMES + STEM_NAMES, ["fc"])
    else:
        raise ConversionError("unknown --format %s (expected auto or one of %s)" % (fmt, ", ".join(FORMATS)))
    if fmt.endswith("resnet"):
        add_batch_counters(res)
    out = {prefix + k: v for k, v in res.out.items()}
    for k, v in rest.items():
        head = k[len("decode_head."):] if k.startswith("decode_head.") else None
        if fmt == "nvlabs-mit" and head is not None and prefix == "backbone." and _known(head, SEGFORMER_HEAD_NAMES):
            out[k] = v
        elif fmt == "nvlabs-mit" and head is not None and _known(head, SEGFORMER_HEAD_NAMES):
            res.dropped.append((k, "decoder (kept with --prefix backbone.)"))
        else:
            res.dropped.append((k, "not part of the backbone"))
    # Floating tensors as F32 (the dtype of protoseg's float models).
    cast = 0
    for k, v in out.items():
        if v.is_floating_point() and v.dtype != torch.float32:
            out[k] = v.float()
            cast += 1
        elif not v.is_floating_point() and v.dtype != torch.int64:
            out[k] = v.long()
    if cast:
        res.notes.append("converted %d floating tensors to float32" % cast)
    res.out = out
    return fmt, res


def write_atomic(path, tensors, metadata):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp-%d" % (os.path.basename(path), os.getpid()))
    try:
        write_safetensors(tmp, tensors, metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert MiT / ResNet PyTorch weights to protoseg safetensors.")
    ap.add_argument("input", help="PyTorch checkpoint (.pth)")
    ap.add_argument("output", help="safetensors file to write")
    ap.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    ap.add_argument("--prefix", default="", help="prefix for every backbone name, e.g. 'backbone.'")
    ap.add_argument("--allow-pickle", action="store_true",
                    help="unpickle the file fully (only for trusted files whose metadata holds Python objects)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary")
    a = ap.parse_args(argv)
    try:
        sd = unwrap(load_checkpoint(a.input, a.allow_pickle), a.input)
        fmt, res = convert(sd, a.format, a.prefix, a.input)
        if res.unmapped:
            raise ConversionError("%s (%s): %d keys cannot be mapped: %s" % (
                a.input, fmt, len(res.unmapped), ", ".join(sorted(res.unmapped)[:10])
                + (" ..." if len(res.unmapped) > 10 else "")))
        if not res.out:
            raise ConversionError("%s: nothing to convert" % a.input)
        write_atomic(a.output, res.out, {"format": "pt", "source": os.path.basename(a.input), "layout": fmt})
    except ConversionError as e:
        print("convert_weights.py: error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("convert_weights.py: error: cannot write %s: %s" % (a.output, e), file=sys.stderr)
        return 1
    if not a.quiet:
        for k in sorted(res.out):
            print("  %-50s %s" % (k, tuple(res.out[k].shape)))
        for k, why in sorted(res.dropped):
            print("  dropped %s (%s)" % (k, why))
    for n in res.notes:
        print("note: " + n)
    print("%s: %s layout, %d tensors written to %s, %d dropped" % (
        a.input, fmt, len(res.out), a.output, len(res.dropped)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
