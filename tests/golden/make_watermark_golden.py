#!/usr/bin/env python3
"""Writes tests/golden/data/watermark.safetensors: decoded images (float16
values used as float32, [1, 3, H, W], a little beyond -1..1 as a VAE's output is) and what diffusers'
StableDiffusionXLWatermarker (invisible-watermark's dwtDct) and the
pipeline's postprocessing make of them, as 8-bit HWC; and the 48 bits
invisible-watermark's own decoder reads back from that. Needs torch,
diffusers, invisible-watermark, opencv-python-headless and PyWavelets:

    /tmp/pyenv/bin/python tests/golden/make_watermark_golden.py
"""
import os

import diffusers
import numpy as np
import torch
from diffusers.pipelines.stable_diffusion_xl.watermark import WATERMARK_BITS, StableDiffusionXLWatermarker
from imwatermark import WatermarkDecoder
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "data", "watermark.safetensors")


def to_uint8(x):  # VaeImageProcessor.postprocess: denormalize, then numpy_to_pil's rounding
    x = (x / 2 + 0.5).clamp(0, 1)
    return torch.from_numpy((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def main():
    g = torch.Generator().manual_seed(3)
    wm = StableDiffusionXLWatermarker()
    t = {}
    for name, (h, w) in {"a": (256, 256), "b": (256, 264)}.items():
        yy, xx = torch.meshgrid(torch.linspace(0, 6, h), torch.linspace(0, 9, w), indexing="ij")
        smooth = torch.stack([torch.sin(xx + k) * torch.cos(yy * (k + 1)) for k in range(3)])[None]
        img = (0.9 * smooth + 0.25 * torch.randn((1, 3, h, w), generator=g)).clamp(-1.2, 1.2).half().float()
        marked = wm.apply_watermark(img.clone())
        t[f"{name}_decoded"] = img.half()  # exactly the float32 values used, stored in half the bytes
        t[f"{name}_watermarked_uint8"] = to_uint8(marked)
        bgr = t[f"{name}_watermarked_uint8"].numpy()[:, :, ::-1].copy()
        bits = WatermarkDecoder("bits", len(WATERMARK_BITS)).decode(bgr, "dwtDct")
        t[f"{name}_decoded_bits"] = torch.tensor(np.array(bits, dtype=np.uint8))
        print(name, "bits read back:", int(sum(int(a) == b for a, b in zip(bits, WATERMARK_BITS))), "of 48")
    t["watermark_bits"] = torch.tensor(WATERMARK_BITS, dtype=torch.uint8)
    save_file({k: v.contiguous() for k, v in t.items()}, OUT, metadata={"diffusers": diffusers.__version__})


if __name__ == "__main__":
    main()
