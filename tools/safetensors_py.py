"""Writes safetensors files with struct + json (the safetensors package may be
missing), for the fixture generators in tools/: u64 header size, JSON header
padded to 8 bytes, little-endian data."""
import json
import struct

import torch

DTYPES = {torch.float64: ("F64", "d"), torch.float32: ("F32", "f"), torch.int64: ("I64", "q"),
          torch.float16: ("F16", None), torch.bfloat16: ("BF16", None), torch.int32: ("I32", "i"),
          torch.uint8: ("U8", None)}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        # The upper 16 bits of the float32 pattern (exact for bf16 values).
        bits = t.float().view(torch.int32).flatten().tolist()
        return b"".join(struct.pack("<H", (b >> 16) & 0xFFFF) for b in bits)
    if t.dtype == torch.float16:
        return b"".join(struct.pack("<e", v) for v in t.flatten().tolist())
    if t.dtype == torch.uint8:
        return bytes(t.flatten().tolist())
    fmt = DTYPES[t.dtype][1]
    return struct.pack("<%d%s" % (t.numel(), fmt), *t.flatten().tolist())


def write_safetensors(path, tensors, metadata=None):
    """The safetensors layout, written with struct + json (the safetensors
    package may be missing): u64 header size, JSON header, data."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
