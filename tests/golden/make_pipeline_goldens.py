#!/usr/bin/env python3
"""Writes tests/golden/data/pipeline/: whole pipelines of diffusers on
sdxl-tiny for settings the shared goldens do not draw (float32, CPU):

    /tmp/pyenv/bin/pip install torch diffusers transformers torchsde
    /tmp/pyenv/bin/python tests/golden/make_pipeline_goldens.py

  - img2img_batch_negative_micro: StableDiffusionXLImg2ImgPipeline with
    num_images_per_prompt=2 from one generator, guidance, and negative
    micro-conditioning (the image-to-image pipeline orders its time ids
    unlike the text-to-image one);
  - dpmpp_sde_karras_batch: DPMSolverSDEScheduler(use_karras_sigmas=True),
    num_images_per_prompt=2, its Brownian tree seeded with the seed
    (noise_sampler_seed; diffusers' default draws one from torch's global
    generator);
  - dpmpp_sde_img2img: the same sampler from an init image.
cases.json holds the parameters; goldens.safetensors each item's final
latents and 8-bit image (<case>_<item>_latents, <case>_<item>_image).
The init image is tests/golden/data/model_files/init_image.png.
"""
import json
import os

import numpy as np
import torch
from diffusers import DPMSolverSDEScheduler, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.environ.get("SDXL_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
OUT = os.path.join(ROOT, "tests", "golden", "data", "pipeline")
INIT = os.path.join(ROOT, "tests", "golden", "data", "model_files", "init_image.png")


def run(pipe, seed, **kw):
    lat = pipe(output_type="latent", generator=torch.Generator().manual_seed(seed), **kw).images
    img = pipe(output_type="np", generator=torch.Generator().manual_seed(seed), **kw).images
    return lat, img


def main():
    os.makedirs(OUT, exist_ok=True)
    base = StableDiffusionXLPipeline.from_pretrained(os.path.join(TESTDATA, "sdxl-tiny"), torch_dtype=torch.float32)
    base.set_progress_bar_config(disable=True)
    i2i = StableDiffusionXLImg2ImgPipeline(**base.components,
                                           force_zeros_for_empty_prompt=base.config.force_zeros_for_empty_prompt)
    i2i.set_progress_bar_config(disable=True)
    init = Image.open(INIT).convert("RGB")
    cases, goldens = {}, {}

    def record(name, params, lat, img):
        cases[name] = params
        for i in range(lat.shape[0]):
            goldens[f"{name}_{i}_latents"] = lat[i:i + 1].contiguous()
            goldens[f"{name}_{i}_image"] = torch.from_numpy(np.round(img[i] * 255).astype(np.uint8)).contiguous()

    p = dict(prompt="a red fox in the snow", negative_prompt="blurry", num_inference_steps=5, guidance_scale=6.0,
             strength=0.6, num_images_per_prompt=2, original_size=(96, 80), negative_original_size=(48, 40),
             negative_crops_coords_top_left=(8, 4), negative_target_size=(32, 48))
    lat, img = run(i2i, 21, image=init, **p)
    record("img2img_batch_negative_micro", dict(p, seed=21, scheduler=None, img2img=True), lat, img)

    sde = DPMSolverSDEScheduler.from_config(base.scheduler.config, use_karras_sigmas=True)
    base.scheduler = sde
    i2i.scheduler = sde
    p = dict(prompt="a lighthouse at dusk", negative_prompt="", num_inference_steps=4, guidance_scale=5.0,
             num_images_per_prompt=2, width=64, height=64)
    sde.noise_sampler_seed = 33
    lat, img = run(base, 33, **p)
    record("dpmpp_sde_karras_batch", dict(p, seed=33, scheduler="dpmpp_sde_karras", img2img=False), lat, img)

    p = dict(prompt="a lighthouse at dusk", num_inference_steps=6, guidance_scale=5.0, strength=0.5)
    sde.noise_sampler_seed = 44
    lat, img = run(i2i, 44, image=init, **p)
    record("dpmpp_sde_img2img", dict(p, seed=44, scheduler="dpmpp_sde_karras", img2img=True), lat, img)

    save_file(goldens, os.path.join(OUT, "goldens.safetensors"))
    json.dump(cases, open(os.path.join(OUT, "cases.json"), "w"), indent=1)
    print("wrote", OUT, sorted(cases))


if __name__ == "__main__":
    main()
