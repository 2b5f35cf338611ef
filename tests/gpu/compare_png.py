#!/usr/bin/env python3
"""Compares a PNG made on the GPU with a golden uint8 image (diffusers, fp32
CPU): prints the largest per-pixel difference in levels of 255. Information
for the GPU run (fp16 compute moves pixels by a few levels), or with a third
argument a bound: exit 1 past it (fp32 on the GPU: 1 level, as on the CPU)."""
import json, struct, sys
import numpy as np
from PIL import Image

img = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(np.int32)
with open(sys.argv[2], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
    base = 8 + n
    e = hdr["image_uint8_nhwc"]
    f.seek(base + e["data_offsets"][0])
    ref = np.frombuffer(f.read(e["data_offsets"][1] - e["data_offsets"][0]), np.uint8).reshape(e["shape"])[0]
d = np.abs(img - ref.astype(np.int32))
print(f"tiny e2e on GPU vs diffusers fp32: max difference {d.max()} levels, mean {d.mean():.3f}")
if len(sys.argv) > 3 and d.max() > int(sys.argv[3]):
    print(f"over the bound of {sys.argv[3]} levels")
    sys.exit(1)
