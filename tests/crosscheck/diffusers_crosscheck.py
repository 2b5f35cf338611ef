#!/usr/bin/env python3
"""Cross-check against diffusers on tiny SDXL models this repository has not
seen: random configs that differ from ../shared/testdata's (levels, widths,
heads, transformer depths, activations, VAE depth, sizes), random weights,
diffusers' own StableDiffusionXLPipeline on the CPU in float32 as the
reference, and `sdxl generate` on the same folder. A developer tool, not part
of the suite (it needs torch, diffusers and transformers from PyPI):

    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install torch diffusers transformers
    /tmp/pyenv/bin/python tests/crosscheck/diffusers_crosscheck.py [--cases N] [--keep DIR]
        [--schedulers] [--refiner] [--img2img] [--model-files]

--model-files also draws, on each case, the model as a single file in the
original layout (diffusers' reference reads it with from_single_file), a
kohya LoRA at a scale (load_lora_weights + fuse_lora) and another VAE as a
folder or an original-layout file (it needs peft too).

For each case it prints the largest difference of the final latents and of
the 8-bit image, and fails past 2e-4 times max(1, largest |latent|) on the
latents or 1 level on the image: both sides are float32 on a CPU, and the
worst case seen (2026-12-02, diffusers 0.42.1, over 100 cases with every
option) is 2.1e-6 of max(1, largest latent), since the schedules reproduce
torch's linspace (fused multiply-adds) and cumprod (double accumulation). The golden tests' 2e-3 is for a
GPU against the CPU; here it would hide a real difference (a guidance
rescale missing from one stage moved the latents by 3e-4 and passed it)."""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from diffusers import (AutoencoderKL, StableDiffusionXLImg2ImgPipeline, DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel)
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.environ.get("SDXL_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))


def random_vae(rng):
    vlev = rng.choice([2, 3, 4])
    vch = [8 * min(i + 1, 3) for i in range(vlev)]
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=tuple(vch),
                        down_block_types=("DownEncoderBlock2D",) * vlev, up_block_types=("UpDecoderBlock2D",) * vlev,
                        layers_per_block=rng.choice([1, 2]), norm_num_groups=4, sample_size=64)
    vae.register_to_config(scaling_factor=0.13025, force_upcast=True)
    if rng.random() < 0.3:  # per-channel latent statistics (null in SDXL's own VAE)
        vae.register_to_config(latents_mean=[round(rng.uniform(-0.5, 0.5), 4) for _ in range(4)],
                               latents_std=[round(rng.uniform(0.5, 1.5), 4) for _ in range(4)])
    return vae


def randomize(rng, *modules):
    torch.manual_seed(rng.randrange(1 << 30))
    for m in modules:
        for p in m.parameters():  # diffusers' zero-initialised convs would hide wiring mistakes
            torch.nn.init.normal_(p, std=0.2 if p.ndim > 1 else 0.05)


def random_refiner(rng, base, out):
    """A refiner for base (its second text encoder's shapes): cross-attention
    on text_encoder_2 alone, 5 time ids (aesthetic score), its own weights."""
    te2 = CLIPTextModelWithProjection(base.text_encoder_2.config)
    levels = rng.choice([2, 3])
    chans = [rng.choice([8, 16]) * (i + 1) for i in range(levels)]
    tdim = rng.choice([4, 8])
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=rng.choice([1, 2]),
        block_out_channels=tuple(chans), down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        attention_head_dim=tuple(2 for _ in chans), transformer_layers_per_block=tuple([1] * levels),
        cross_attention_dim=te2.config.hidden_size, norm_num_groups=4, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=tdim,
        projection_class_embeddings_input_dim=te2.config.projection_dim + 5 * tdim)
    vae = AutoencoderKL(**base.vae.config)  # same shapes as the base's, its own weights
    randomize(rng, unet, vae, te2)
    pipe = StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=None, text_encoder_2=te2, tokenizer=None,
                                            tokenizer_2=base.tokenizer_2, unet=unet,
                                            scheduler=EulerDiscreteScheduler.from_config(base.scheduler.config),
                                            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
                                            add_watermarker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return pipe


def random_model(rng, out):
    """A tiny SDXL base folder with a config drawn from rng."""
    levels = rng.choice([2, 3])
    width = rng.choice([8, 16])
    chans = [width * (i + 1) for i in range(levels)]
    heads = [rng.choice([1, 2]) * (1 if c % 4 else 2) for c in chans]
    down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (levels - 1)
    up = ["CrossAttnUpBlock2D"] * (levels - 1) + ["UpBlock2D"]
    depth = [1] + [rng.choice([1, 2, 3]) for _ in range(levels - 1)]
    h1, h2 = rng.choice([16, 24, 32]), rng.choice([20, 40])
    te1 = CLIPTextConfig(vocab_size=49408, hidden_size=h1, intermediate_size=h1 * rng.choice([2, 4]),
                         num_hidden_layers=rng.choice([2, 3]), num_attention_heads=rng.choice([2, 4]),
                         hidden_act=rng.choice(["quick_gelu", "gelu"]), max_position_embeddings=77, projection_dim=h1,
                         bos_token_id=0, eos_token_id=2, pad_token_id=1)
    proj = rng.choice([16, 24])
    te2 = CLIPTextConfig(vocab_size=49408, hidden_size=h2, intermediate_size=h2 * 4,
                         num_hidden_layers=rng.choice([2, 3]), num_attention_heads=rng.choice([2, 4, 5]),
                         hidden_act=rng.choice(["gelu", "quick_gelu"]), max_position_embeddings=77,
                         projection_dim=proj, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    tdim = rng.choice([4, 8])
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=rng.choice([1, 2]),
        block_out_channels=tuple(chans), down_block_types=tuple(down), up_block_types=tuple(up),
        attention_head_dim=tuple(heads), transformer_layers_per_block=tuple(depth), cross_attention_dim=h1 + h2,
        norm_num_groups=rng.choice([4, 8]), use_linear_projection=rng.choice([True, False]),
        addition_embed_type="text_time", addition_time_embed_dim=tdim,
        projection_class_embeddings_input_dim=proj + 6 * tdim)
    vae = random_vae(rng)
    randomize(rng, unet, vae)
    tok = CLIPTokenizer.from_pretrained(os.path.join(TESTDATA, "sdxl-tiny", "tokenizer"))
    tok2 = CLIPTokenizer.from_pretrained(os.path.join(TESTDATA, "sdxl-tiny", "tokenizer_2"))
    sched = EulerDiscreteScheduler.from_pretrained(os.path.join(TESTDATA, "sdxl-tiny", "scheduler"))
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=CLIPTextModel(te1), text_encoder_2=CLIPTextModelWithProjection(te2),
                                     tokenizer=tok, tokenizer_2=tok2, unet=unet, scheduler=sched,
                                     force_zeros_for_empty_prompt=rng.choice([True, False]), add_watermarker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    # as saved: transformers 5 writes tokenizer.json alone (no vocab.json or
    # merges.txt) and the CLIPTextModel tensors without "text_model."
    # the VAE's scale factor follows its depth; sizes must be multiples of it
    return pipe


# our --scheduler names and the diffusers scheduler each stands for: as
# diffusers' X.from_config(the model's scheduler config), keys such as
# final_sigmas_type included (diffusers >= 0.26 writes "zero" into every
# Euler config it saves, and DPM++ then ends on sigma 0; without the key it
# ends on sigma_min, as diffusers 0.24 did). "folder:dpmpp" writes the DPM++
# config into the model folder and runs without --scheduler, so the config
# alone must select it.
def _kinds():
    sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
    import make_scheduler_goldens as msg
    return msg.KINDS


SCHEDULERS = {name: (lambda cls, over: (lambda cfg: cls.from_config(cfg, **over)))(cls, over)
              for name, (cls, over) in _kinds().items()}
SCHEDULERS["folder:dpmpp"] = lambda cfg: DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=True)
# the seed's own scheduler config (real-sdxl: no final_sigmas_type) with DPM++ 2M Karras on top
SCHEDULERS["real:dpmpp_2m_karras"] = lambda cfg: DPMSolverMultistepScheduler.from_config(
    json.load(open(os.path.join(TESTDATA, "real-sdxl", "base", "scheduler", "scheduler_config.json"))),
    use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2)

PROMPTS = ["a red bicycle leaning on a brick wall", "studio photo of a ceramic vase, soft light",
           "an astronaut riding a horse on mars, 4k", "a bowl of fruit on a wooden table"]


def model_files(rng, pipe, d):
    """Draws the model files a user may bring on this case's model: the
    model as one file in the original layout (read by diffusers'
    from_single_file), a kohya LoRA at a scale (load_lora_weights +
    fuse_lora), another VAE as a folder or an original-layout file. Returns
    the reference pipeline, our flags and a description."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
    import make_model_files_goldens as mf
    from safetensors.torch import save_file
    ours, desc = [], []
    if rng.random() < 0.5:
        src = mf.folder_tensors(d)
        for comp in ("text_encoder", "text_encoder_2"):  # the original layout names the tower text_model.
            src[comp] = {mf.file_name(comp, k): v for k, v in src[comp].items()}
        single = mf.refiner_original({c: src[c] for c in ("unet", "vae", "text_encoder_2")}, pipe.unet.config,
                                     len(pipe.vae.config.block_out_channels), "conditioner.embedders.1.model.")
        single.update({"conditioner.embedders.0.transformer." + k: v for k, v in src["text_encoder"].items()})
        path = os.path.join(d, "single.safetensors")
        save_file({k: v.contiguous() for k, v in single.items()}, path)
        pipe = StableDiffusionXLPipeline.from_single_file(path, config=d, torch_dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        ours += ["--model", path, "--config", d]
        desc.append("single file")
    if rng.random() < 0.5:
        sd, n = mf.kohya_lora(pipe, rng.randrange(1 << 30))
        path, scale = os.path.join(d, "lora.safetensors"), rng.choice([0.4, 0.8, 1.3])
        save_file(sd, path)
        pipe.load_lora_weights(path)
        pipe.fuse_lora(lora_scale=scale)
        pipe.unload_lora_weights()
        ours += ["--lora", f"{path}:{scale}"]
        desc.append(f"kohya LoRA of {n} modules at {scale}")
    if rng.random() < 0.5:
        cfg = {k: v for k, v in pipe.vae.config.items() if not k.startswith("_")}
        cfg["force_upcast"] = False
        vae = AutoencoderKL(**cfg)
        randomize(rng, vae)
        if rng.random() < 0.5:
            path = os.path.join(d, "vae-folder")
            vae.save_pretrained(path)
        else:
            path = os.path.join(d, "vae.safetensors")
            save_file({"first_stage_model." * rng.randrange(2) + mf.vae_to_original(k, len(cfg["block_out_channels"])):
                       (v.reshape(*v.shape, 1, 1) if ".to_" in k and k.endswith(".weight") and v.ndim == 2 else v)
                       for k, v in vae.state_dict().items()}, path)
        pipe.vae = vae
        ours += ["--vae", path]
        desc.append("VAE " + ("folder" if path.endswith("folder") else "file"))
    return pipe, ours, desc


def long_prompt(rng):
    """A prompt of 80 to 200 tokens in compel's syntax: sentences, commas,
    up and down weights, sometimes a weighted group across a chunk end."""
    words = []
    while len(words) < rng.randrange(90, 170):
        p = rng.choice(PROMPTS)
        form = rng.random()
        if form < 0.2:
            p = f"({p}){rng.choice(['1.3', '0.7', '0.5', '1.1'])}"
        elif form < 0.35:
            p = p.split(" ", 1)[0] + rng.choice(["+", "++", "-"]) + " " + p.split(" ", 1)[-1]
        words += (p + rng.choice([".", ",", ""])).split()
    return " ".join(words)


def compel_embeds(pipe, prompt, prompt_2, neg, neg_2, force_zeros):
    """CompelForSDXL's conditioning, as a diffusers user passes a long or
    weighted prompt; no negative prompt on a model without
    force_zeros_for_empty_prompt is "" through compel (diffusers alone would
    fail on a longer prompt), which is what --long-prompts does."""
    from compel import CompelForSDXL
    negative = neg if neg else (None if force_zeros else "")
    lc = CompelForSDXL(pipe, device="cpu")(prompt, style_prompt=prompt_2, negative_prompt=negative,
                                            negative_style_prompt=neg_2 if negative is not None else None)
    kw = dict(prompt_embeds=lc.embeds, pooled_prompt_embeds=lc.pooled_embeds)
    if lc.negative_embeds is not None:
        kw.update(negative_prompt_embeds=lc.negative_embeds, negative_pooled_prompt_embeds=lc.negative_pooled_embeds)
    return kw


def run_case(k, rng, sdxl, keep, all_schedulers, with_refiner, with_img2img, with_files=False, with_watermark=False,
             with_batch=False, with_long=False):
    d = tempfile.mkdtemp(prefix=f"sdxl-cross{k}-")
    pipe = random_model(rng, d)
    pipe.set_progress_bar_config(disable=True)
    files, files_desc = [], []
    if with_files:
        pipe, files, files_desc = model_files(rng, pipe, d)
    # diffusers asks for multiples of 8 whatever the VAE depth
    w, h = 8 * rng.choice([3, 4, 5, 6, 8]), 8 * rng.choice([3, 4, 6, 7])
    if with_watermark and rng.random() < 0.6:  # diffusers watermarks images 256 wide and more
        w, h = rng.choice([256, 264, 288]), rng.choice([256, 264])
    steps, seed, cfg = rng.choice([3, 4, 5]), rng.randrange(1 << 31), rng.choice([1.0, 5.0, 7.5])
    prompt, neg = rng.choice(PROMPTS), rng.choice(["", "blurry"])
    sched = rng.choice(sorted(SCHEDULERS)) if all_schedulers else "euler"
    pipe.scheduler = SCHEDULERS[sched](pipe.scheduler.config)
    if sched.startswith("real:"):  # the real config in the folder, our name on top
        shutil.copy(os.path.join(TESTDATA, "real-sdxl", "base", "scheduler", "scheduler_config.json"),
                    os.path.join(d, "scheduler", "scheduler_config.json"))
    if sched.startswith("folder:"):
        pipe.scheduler.save_pretrained(os.path.join(d, "scheduler"))
    # optional inputs, each drawn on or off: second prompts, guidance
    # rescale, micro-conditioning (our refiner stage takes the rescale and the
    # micro-conditioning too, so the refiner call below gets them; prompt_2
    # reaches the base only: diffusers' refiner never reads it)
    extra, ours = {}, []
    if rng.random() < 0.3:
        extra["prompt_2"] = "oil painting, muted colours"
        ours += ["--prompt-2", extra["prompt_2"]]
    if rng.random() < 0.3 and neg:
        extra["negative_prompt_2"] = "low quality"
        ours += ["--negative-prompt-2", extra["negative_prompt_2"]]
    if rng.random() < 0.3:
        extra["guidance_rescale"] = 0.7
        ours += ["--guidance-rescale", "0.7"]
    if rng.random() < 0.3:
        extra.update(original_size=(96, 128), crops_coords_top_left=(8, 16), target_size=(h, w))
        ours += ["--original-size", "128x96", "--crop-top-left", "8,16", "--target-size", f"{w}x{h}"]
    if rng.random() < 0.25 and not with_refiner:  # the crosscheck passes micro-conditioning to the base only
        extra.update(negative_original_size=(64, 80), negative_crops_coords_top_left=(4, 0), negative_target_size=(h, w))
        ours += ["--negative-original-size", "80x64", "--negative-crop-top-left", "4,0", "--negative-target-size",
                 f"{w}x{h}"]
    if rng.random() < 0.25:
        extra["clip_skip"] = 1
        ours += ["--clip-skip", "1"]
    if sched == "ddim" and rng.random() < 0.5:
        extra["eta"] = 0.6
        ours += ["--eta", "0.6"]
    if rng.random() < 0.2:
        seed = (1 << 64) - 1 - rng.randrange(1 << 20)
    init, strength = None, None
    if with_img2img and rng.random() < 0.5:
        from PIL import Image
        pixels = np.random.RandomState(rng.randrange(1 << 30)).randint(0, 256, (h, w, 3), dtype=np.uint8)
        # at least one step left to run (diffusers fails on none; we refuse)
        init, strength = Image.fromarray(pixels), rng.choice([s for s in (0.3, 0.5, 0.8) if int(steps * s) >= 1])
        init.save(os.path.join(d, "init.png"))
        ours += ["--init-image", os.path.join(d, "init.png"), "--strength", str(strength)]
    refiner, frac = None, None
    if with_refiner and sched in ("euler", "euler_a") and init is None:  # img2img and ensemble not combined
        refiner, frac = random_refiner(rng, pipe, d + "-refiner"), rng.choice([0.6, 0.75, 0.8])
        refiner.set_progress_bar_config(disable=True)
        refiner.scheduler = SCHEDULERS[sched](refiner.scheduler.config)
        if "--vae" in files:  # --vae replaces the refiner's VAE too
            refiner.vae = pipe.vae
    nbatch = rng.choice([2, 3]) if with_batch and not refiner else 1
    if nbatch > 1:  # diffusers' num_images_per_prompt from one generator = our --batch N --one-generator
        extra["num_images_per_prompt"] = nbatch
        ours += ["--batch", str(nbatch), "--one-generator"]
    text_kw = dict(prompt=prompt, negative_prompt=neg or None)
    if with_long and not refiner and rng.random() < 0.7:  # compel's conditioning = our --long-prompts
        prompt = long_prompt(rng)
        if "clip_skip" in extra:  # diffusers ignores clip_skip given embeddings; compel has none
            del extra["clip_skip"]
            i = ours.index("--clip-skip")
            del ours[i:i + 2]
        text_kw = compel_embeds(pipe, prompt, extra.pop("prompt_2", None), neg, extra.pop("negative_prompt_2", None),
                                pipe.config.force_zeros_for_empty_prompt)
        ours.append("--long-prompts")
    gen = torch.Generator("cpu").manual_seed(seed)
    if pipe.scheduler.__class__.__name__ == "DPMSolverSDEScheduler" and pipe.scheduler.config.noise_sampler_seed is None:
        # diffusers seeds DPM++ SDE's Brownian tree from torch's global
        # generator unless told; we seed it with the image's seed
        pipe.scheduler.noise_sampler_seed = seed
    with torch.no_grad():
        if init is not None:  # img2img with the base's own components, as diffusers documents it
            i2i = StableDiffusionXLImg2ImgPipeline(**pipe.components,
                                                   force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt)
            i2i.set_progress_bar_config(disable=True)
            extra.pop("target_size", None)  # img2img takes the image's size
            lat = i2i(**text_kw, image=init, strength=strength,
                      num_inference_steps=steps, guidance_scale=cfg, generator=gen, output_type="latent",
                      denoising_end=frac, **extra).images
        else:
            lat = pipe(**text_kw, width=w, height=h, num_inference_steps=steps,
                       guidance_scale=cfg, generator=gen, output_type="latent", denoising_end=frac, **extra).images
        decoder = pipe.vae
        if refiner:  # ensemble of experts; our refiner stage starts a generator of the same seed
            lat = refiner(prompt=prompt, negative_prompt=neg or None, image=lat, num_inference_steps=steps,
                          denoising_start=frac, guidance_scale=cfg, generator=torch.Generator("cpu").manual_seed(seed),
                          guidance_rescale=extra.get("guidance_rescale", 0.0), output_type="latent",
                          **{k: extra[k] for k in ("clip_skip", "eta", "original_size", "crops_coords_top_left",
                                                   "target_size") if k in extra}).images
            decoder = refiner.vae
        vc = decoder.config
        if vc.get("latents_mean") is not None and vc.get("latents_std") is not None:  # as the pipelines do
            m, sd = (torch.tensor(vc[k]).view(1, 4, 1, 1) for k in ("latents_mean", "latents_std"))
            img = decoder.decode(lat * sd / vc.scaling_factor + m).sample
        else:
            img = decoder.decode(lat / vc.scaling_factor).sample
    if w >= 256 and w * h >= 256 * 256:  # as the pipelines do with invisible-watermark installed
        from diffusers.pipelines.stable_diffusion_xl.watermark import StableDiffusionXLWatermarker
        img = StableDiffusionXLWatermarker().apply_watermark(img)
    refs = [np.round(((img / 2 + 0.5).clamp(0, 1)[b].permute(1, 2, 0).numpy()) * 255).astype(np.uint8)
            for b in range(img.shape[0])]
    out = os.path.join(d, "ours.png")
    cmd = [sdxl, "generate", "--model", d, "--prompt", prompt, "--width", str(w), "--height", str(h), "--steps",
           str(steps), "--guidance", str(cfg), "--seed", str(seed), "--out", out, "--save-latents",
           os.path.join(d, "lat.safetensors"), "--quiet"]
    cmd += ours + files
    if not sched.startswith("folder:"):
        cmd += ["--scheduler", sched.split(":")[-1]]
    if refiner:
        cmd += ["--refiner", d + "-refiner", "--high-noise-frac", str(frac)]
    if neg:
        cmd += ["--negative-prompt", neg]
    r = subprocess.run(cmd, capture_output=True, text=True)
    cfgs = {c: json.load(open(os.path.join(d, c, "config.json"))) for c in ("unet", "vae")}
    desc = (f"case {k}: {sched}{' long prompt' if '--long-prompts' in ours else ''}{f' + refiner from {frac}' if refiner else ''}{' ' + ' '.join(sorted(extra)) if extra else ''}{f' img2img strength {strength}' if init else ''}, {w}x{h}, {steps} steps, cfg {cfg}, seed {seed}, unet {cfgs['unet']['block_out_channels']} "
            f"heads {cfgs['unet']['attention_head_dim']} depth {cfgs['unet']['transformer_layers_per_block']} "
            f"linear {cfgs['unet']['use_linear_projection']}, vae {cfgs['vae']['block_out_channels']}"
            f"{' with latent stats' if cfgs['vae'].get('latents_mean') else ''}"
            f"{', ' + ', '.join(files_desc) if files_desc else ''}")
    if r.returncode:
        print(f"FAIL {desc}: sdxl generate: {r.stderr.strip()}")
        shutil.rmtree(d) if not keep else shutil.move(d, os.path.join(keep, os.path.basename(d)))
        return False
    saved = load_file(os.path.join(d, "lat.safetensors"))
    from PIL import Image
    dl, di, scale = 0.0, 0, float(np.abs(lat.numpy()).max())
    for b in range(nbatch):  # item b of a batch: FILE-00b.png, latents item00b_final
        ours_lat = saved["final" if nbatch == 1 else f"item{b:03d}_final"].numpy()[0]
        dl = max(dl, float(np.abs(ours_lat - lat[b].numpy()).max()))
        path = out if nbatch == 1 else out[:-4] + f"-{b:03d}.png"
        ours = np.asarray(Image.open(path).convert("RGB")).astype(int)
        di = max(di, int(np.abs(ours - refs[b].astype(int)).max()))
    ok = dl <= 2e-4 * max(1.0, scale) and di <= 1
    print(f"{'ok  ' if ok else 'FAIL'} {desc}: latents max |diff| {dl:.2e} (max |latent| {scale:.1f}), image max diff {di} levels")
    for folder in (d, d + "-refiner"):
        if os.path.isdir(folder):
            if keep:
                shutil.copytree(folder, os.path.join(keep, os.path.basename(folder)))
            shutil.rmtree(folder)
    return ok


def dataset_check():
    """The main job's output folder, loaded as it is by Hugging Face datasets'
    imagefolder loader: one row per image, every generation parameter of
    metadata.jsonl a column, each row's seed the one in its PNG."""
    import datasets
    out = tempfile.mkdtemp(prefix="sdxl-dataset-")
    env = dict(os.environ, MODEL=os.path.join(TESTDATA, "sdxl-tiny"), OUT=out, STEPS="2")
    r = subprocess.run(["deploy/main_job.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:
        print(f"FAIL dataset: the main job failed: {r.stderr[-400:]}")
        return False
    ds = datasets.load_dataset("imagefolder", data_dir=out, split="train")
    want = {"image", "prompt", "seed", "steps", "guidance", "scheduler", "model", "watermark"}
    ok = len(ds) == 8 and want <= set(ds.column_names)
    for row in ds:
        ok = ok and row["image"].info.get("seed") == str(row["seed"]) and row["image"].size == (64, 64)
    print(f"{'ok  ' if ok else 'FAIL'} dataset: load_dataset('imagefolder') reads {len(ds)} rows, columns "
          f"{sorted(ds.column_names)} (datasets {datasets.__version__})")
    shutil.rmtree(out)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sdxl", default=os.path.join(ROOT, "build", "bin", "sdxl"))
    ap.add_argument("--keep", help="copy each case's folder here")
    ap.add_argument("--schedulers", action="store_true", help="draw the scheduler too (else Euler, SDXL's own)")
    ap.add_argument("--refiner", action="store_true", help="add a random refiner (ensemble of experts) to each case")
    ap.add_argument("--img2img", action="store_true", help="start half of the cases from a random init image")
    ap.add_argument("--dataset", action="store_true",
                    help="also run the main job and load its folder with datasets.load_dataset('imagefolder')")
    ap.add_argument("--batch", action="store_true",
                    help="draw num_images_per_prompt 2 or 3 from one generator (our --batch N --one-generator)")
    ap.add_argument("--watermark", action="store_true", help="draw sizes of 256 px and more: diffusers' watermark on")
    ap.add_argument("--long-prompts", action="store_true",
                    help="draw prompts of 80-200 tokens in compel's syntax, encoded by compel's CompelForSDXL for "
                         "diffusers and by --long-prompts for us (needs compel from PyPI)")
    ap.add_argument("--model-files", action="store_true",
                    help="draw a single-file checkpoint, a kohya LoRA and another VAE (folder or file) on each case")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    results = [run_case(k, rng, a.sdxl, a.keep, a.schedulers, a.refiner, a.img2img, a.model_files, a.watermark, a.batch,
                        a.long_prompts)
               for k in range(a.cases)]
    if a.dataset:
        results.append(dataset_check())
    print(f"crosscheck: {sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
