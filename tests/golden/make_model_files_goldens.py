#!/usr/bin/env python3
"""Writes tests/golden/data/model_files/: the model files users download, made
from ../shared/testdata's tiny models, and what diffusers generates with them.
Needs torch, diffusers, transformers and peft from PyPI and diffusers' own
converter script (scripts/convert_diffusers_to_original_sdxl.py of a diffusers
checkout), as a new user converting a folder to the original layout would:

    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install torch diffusers transformers peft
    /tmp/pyenv/bin/python tests/golden/make_model_files_goldens.py --convert-script DIFFUSERS/scripts/convert_diffusers_to_original_sdxl.py

What it writes (tests read them; nothing here is computed by the code under test):
  - base_single_file_recipe.json: how diffusers' converter made sdxl-tiny's
    single file (949 tensors): for each original-layout key, the diffusers
    tensors it came from and how (copy, transpose, or q/k/v concatenated),
    found by matching the converter's output against the folder's values.
    The tests rebuild the file from the folder with it (fp32 and fp16), so
    the repository does not carry 21 MB of weights twice.
  - refiner_single_file_recipe.json: the same for sdxl-tiny-refiner (the
    converter handles only the base: the names come from the inverse of
    diffusers' from_single_file conversion, and the file is checked by
    loading it with from_single_file and comparing every weight).
  - real_base_keys.json, real_refiner_keys.json: the original-layout names
    and shapes of the real SDXL 1.0 checkpoints, by the same two routes from
    ../shared/testdata/real-sdxl (no weights).
  - lora_kohya.safetensors (kohya/SGM naming: linear layers, LoCon 3x3
    convs, 1x1 shortcuts, down/upsamplers, lora_te1_/lora_te2_ layers,
    alphas) and lora_peft.safetensors (diffusers/PEFT naming).
  - vae_fp16fix_like/ (an AutoencoderKL folder, force_upcast false) and
    vae_original.safetensors (the same VAE in the original layout, bare keys).
  - init_image.png: the img2img input.
  - goldens.safetensors + cases.json: final latents and 8-bit images of
    diffusers' pipelines on each (float32, CPU).
"""
import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.environ.get("SDXL_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
OUT = os.path.join(ROOT, "tests", "golden", "data", "model_files")
TINY = os.path.join(TESTDATA, "sdxl-tiny")
TINY_REF = os.path.join(TESTDATA, "sdxl-tiny-refiner")


def folder_tensors(folder):
    """{component: {name: tensor}} of a diffusers folder (fp32 files)."""
    out = {}
    for comp, fname in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                        ("text_encoder", "model"), ("text_encoder_2", "model")):
        p = os.path.join(folder, comp, fname + ".safetensors")
        if os.path.exists(p):
            out[comp] = load_file(p)
    return out


def recipe_of(single, sources):
    """How each tensor of single came from sources, by matching values."""
    by_bytes = {}
    for comp, sd in sources.items():
        for k, v in sd.items():
            by_bytes.setdefault(v.float().contiguous().numpy().tobytes(), []).append([comp, k])
    recipe = {}
    for key, t in single.items():
        t = t.float().contiguous()
        hit = by_bytes.get(t.numpy().tobytes())
        if hit and len(hit) == 1:
            recipe[key] = {"op": "copy", "from": hit, "shape": list(t.shape)}
            continue
        if t.ndim == 2:
            hit = by_bytes.get(t.T.contiguous().numpy().tobytes())
            if hit and len(hit) == 1:
                recipe[key] = {"op": "transpose", "from": hit, "shape": list(t.shape)}
                continue
        parts = [by_bytes.get(p.contiguous().numpy().tobytes()) for p in t.chunk(3, 0)] if t.shape[0] % 3 == 0 else []
        if parts and all(p and len(p) == 1 for p in parts):
            recipe[key] = {"op": "cat", "from": [p[0] for p in parts], "shape": list(t.shape)}
            continue
        raise SystemExit(f"cannot tell where {key} {list(t.shape)} came from")
    return recipe


# ---- the original layout by the inverse of diffusers' from_single_file conversion ----

RESNET = [("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
          ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut.")]


def unet_to_original(name, cfg):
    L = cfg["layers_per_block"]
    fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
    for a, b in fixed.items():
        if name.startswith(a):
            return b + name[len(a):]

    def res(rest):
        for o, d in RESNET:
            if rest.startswith(d):
                return o + rest[len(d):]
        raise SystemExit(f"resnet {name}")
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        k = 1 + i * (L + 1) + j
        return f"input_blocks.{k}.0.{res(rest)}" if kind == "resnets" else f"input_blocks.{k}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (L + 1)}.0.op.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        return f"middle_block.{2 * int(m[2])}.{res(m[3])}" if m[1] == "resnets" else f"middle_block.1.{m[3]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        k = i * (L + 1) + j
        return f"output_blocks.{k}.0.{res(rest)}" if kind == "resnets" else f"output_blocks.{k}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", name)
    if m:
        i = int(m[1])
        attn = "CrossAttn" in cfg["up_block_types"][i]
        return f"output_blocks.{i * (L + 1) + L}.{2 if attn else 1}.{m[2]}"
    raise SystemExit(f"unet {name}")


def vae_to_original(name, levels):
    for half in ("encoder", "decoder"):
        if not name.startswith(half + "."):
            continue
        rest = name[len(half) + 1:]
        m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|(down|up)samplers\.0)\.(.*)", rest)
        if m:
            i = int(m[2]) if half == "encoder" else levels - 1 - int(m[2])
            lvl = "down" if half == "encoder" else "up"
            leaf = m[6].replace("conv_shortcut.", "nin_shortcut.")
            if m[4] is not None:
                return f"{half}.{lvl}.{i}.block.{m[4]}.{leaf}"
            return f"{half}.{lvl}.{i}.{lvl}sample.{m[6]}"
        m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest)
        if m:
            return f"{half}.mid.block_{int(m[1]) + 1}.{m[2].replace('conv_shortcut.', 'nin_shortcut.')}"
        m = re.match(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)", rest)
        if m:
            return f"{half}.mid.attn_1.{ {'group_norm': 'norm', 'to_q': 'q', 'to_k': 'k', 'to_v': 'v', 'to_out.0': 'proj_out'}[m[1]] }.{m[2]}"
        return name.replace("conv_norm_out", "norm_out")
    return name  # quant_conv, post_quant_conv


def refiner_original(sources, ucfg, vlevels, prefix_te2):
    """The refiner's single file, {key: tensor}, by the inverse conversion."""
    out = {}
    for k, v in sources["unet"].items():
        out["model.diffusion_model." + unet_to_original(k, ucfg)] = v
    for k, v in sources["vae"].items():
        o = vae_to_original(k, vlevels)
        if ".mid.attn_1." in o and o.endswith(".weight") and v.ndim == 2:
            v = v.reshape(*v.shape, 1, 1)
        out["first_stage_model." + o] = v
    te = sources["text_encoder_2"]
    qkv = {}
    for k, v in te.items():
        m = re.match(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)", k)
        if m:
            qkv.setdefault((m[1], m[3]), {})[m[2]] = v
            continue
        k2 = (k.replace("text_model.encoder.layers.", "transformer.resblocks.").replace("layer_norm1", "ln_1")
              .replace("layer_norm2", "ln_2").replace(".mlp.fc1.", ".mlp.c_fc.").replace(".mlp.fc2.", ".mlp.c_proj.")
              .replace(".self_attn.", ".attn.").replace("text_model.final_layer_norm.", "ln_final.")
              .replace("text_model.embeddings.token_embedding.weight", "token_embedding.weight")
              .replace("text_model.embeddings.position_embedding.weight", "positional_embedding"))
        if k == "text_projection.weight":
            k2, v = "text_projection", v.T.contiguous()
        out[prefix_te2 + k2] = v
    for (layer, leaf), d in qkv.items():
        out[f"{prefix_te2}transformer.resblocks.{layer}.attn.in_proj_{leaf}"] = torch.cat([d["q"], d["k"], d["v"]])
    return out


def file_name(comp, name):
    """A module's or parameter's name as the weight files spell it:
    transformers 5 leaves the text encoders' text_model. out of its names."""
    if comp.startswith("text_encoder") and not name.startswith(("text_model.", "text_projection")):
        return "text_model." + name
    return name


def check_same_weights(pipe, folder):
    """from_single_file must give exactly the folder's weights."""
    src = folder_tensors(folder)
    for comp, sd in src.items():
        mine = {file_name(comp, k): v for k, v in getattr(pipe, comp).state_dict().items()}
        for k, v in sd.items():
            if not torch.equal(mine[k].float(), v.float()):
                raise SystemExit(f"from_single_file: {comp}.{k} differs from the folder")


# ---- generation ----

def gen(pipe, seed, **kw):
    """final latents and the 8-bit image, as the pipeline makes them (two
    runs, each with a generator of its own seeded alike)."""
    lat = pipe(output_type="latent", generator=torch.Generator().manual_seed(seed), **kw).images
    img = pipe(output_type="np", generator=torch.Generator().manual_seed(seed), **kw).images[0]
    return lat.contiguous(), torch.from_numpy(np.round(img * 255).astype(np.uint8)).contiguous()


def init_image(path):
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.stack([(x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return Image.open(path).convert("RGB")


# ---- LoRAs ----

def kohya_lora(pipe, seed):
    """A kohya LoRA in SGM naming over many kinds of layers, with alphas."""
    g = torch.Generator().manual_seed(seed)
    ucfg = pipe.unet.config
    unet = dict(pipe.unet.named_modules())
    pick = []
    for name, mod in unet.items():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and (
                re.search(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$|ff\.net\.(0\.proj|2)$|proj_in$|proj_out$", name)
                or re.search(r"resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)$", name)
                or re.search(r"(down|up)samplers\.0\.conv$", name)):
            pick.append(("unet", name, mod))
    for comp, prefix in (("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_")):
        for name, mod in getattr(pipe, comp).named_modules():
            if isinstance(mod, torch.nn.Linear) and re.search(r"(q_proj|k_proj|v_proj|out_proj|fc1|fc2)$", name):
                pick.append((comp, name, mod))
    sd = {}
    for comp, name, mod in pick:
        if comp == "unet":
            key = "lora_unet_" + unet_to_original(name + ".weight", ucfg)[:-len(".weight")].replace(".", "_")
        else:
            key = ("lora_te1_" if comp == "text_encoder" else "lora_te2_") + file_name(comp, name).replace(".", "_")
        r = 4 if comp != "unet" or "conv" not in name else 2
        w = mod.weight
        if w.ndim == 4:
            down = torch.randn(r, w.shape[1], w.shape[2], w.shape[3], generator=g) * 0.3
            up = torch.randn(w.shape[0], r, 1, 1, generator=g) * 0.3
        else:
            down = torch.randn(r, w.shape[1], generator=g) * 0.3
            up = torch.randn(w.shape[0], r, generator=g) * 0.3
        sd[key + ".lora_down.weight"] = down
        sd[key + ".lora_up.weight"] = up
        # one alpha for all, as kohya's network_alpha: diffusers 0.42 scales
        # modules whose alpha differs from the most common one wrongly (its
        # alpha_pattern keys do not match PEFT's module names)
        sd[key + ".alpha"] = torch.tensor(3.0)
    return sd, len(pick)


def peft_lora(pipe, seed):
    """A LoRA in diffusers/PEFT naming (no alphas: scaling 1)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for comp in ("unet", "text_encoder"):
        for name, mod in getattr(pipe, comp).named_modules():
            if isinstance(mod, torch.nn.Linear) and re.search(r"(to_q|to_v|q_proj|v_proj|ff\.net\.2)$", name):
                r = 3
                name = file_name(comp, name)
                sd[f"{comp}.{name}.lora_A.weight"] = torch.randn(r, mod.weight.shape[1], generator=g) * 0.2
                sd[f"{comp}.{name}.lora_B.weight"] = torch.randn(mod.weight.shape[0], r, generator=g) * 0.2
    return sd


def with_lora(path, scale, seed, **kw):
    pipe = StableDiffusionXLPipeline.from_pretrained(TINY, torch_dtype=torch.float32)
    before = {c: {k: v.clone() for k, v in getattr(pipe, c).state_dict().items()}
              for c in ("unet", "text_encoder", "text_encoder_2")}
    pipe.load_lora_weights(path)
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    changed = sum(int(not torch.equal(before[c][k], v)) for c in before for k, v in getattr(pipe, c).state_dict().items()
                  if k in before[c])
    return gen(pipe, seed, **kw), changed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--convert-script", required=True, help="diffusers' scripts/convert_diffusers_to_original_sdxl.py")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    spec = importlib.util.spec_from_file_location("conv", args.convert_script)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    tmp = tempfile.mkdtemp()
    goldens, cases = {}, {}
    base_kw = dict(prompt="a red fox in the snow", negative_prompt="blurry", num_inference_steps=4,
                   guidance_scale=5.0)

    # 1. the base as a single file, made by diffusers' converter
    sgm = os.path.join(tmp, "tiny-sgm.safetensors")
    subprocess.run([sys.executable, args.convert_script, "--model_path", TINY, "--checkpoint_path", sgm,
                    "--use_safetensors"], check=True, stdout=subprocess.DEVNULL)
    src = folder_tensors(TINY)
    recipe = recipe_of(load_file(sgm), src)
    json.dump(recipe, open(os.path.join(OUT, "base_single_file_recipe.json"), "w"), indent=0, sort_keys=True)
    pipe = StableDiffusionXLPipeline.from_single_file(sgm, config=TINY, torch_dtype=torch.float32)
    check_same_weights(pipe, TINY)
    lat, img = gen(pipe, 11, **base_kw)
    goldens["single_file_latents"], goldens["single_file_image"] = lat, img
    cases["single_file"] = dict(base_kw, seed=11, tensors=len(recipe))

    # 2. the refiner as a single file, and on its own (img2img)
    rcfg = json.load(open(os.path.join(TINY_REF, "unet", "config.json")))
    vlev = len(json.load(open(os.path.join(TINY_REF, "vae", "config.json")))["block_out_channels"])
    rsrc = folder_tensors(TINY_REF)
    rsingle = refiner_original(rsrc, rcfg, vlev, "conditioner.embedders.0.model.")
    rpath = os.path.join(tmp, "tiny-refiner-sgm.safetensors")
    save_file(rsingle, rpath)
    json.dump(recipe_of(rsingle, rsrc), open(os.path.join(OUT, "refiner_single_file_recipe.json"), "w"), indent=0,
              sort_keys=True)
    rpipe = StableDiffusionXLImg2ImgPipeline.from_single_file(rpath, config=TINY_REF, torch_dtype=torch.float32)
    check_same_weights(rpipe, TINY_REF)
    init = init_image(os.path.join(OUT, "init_image.png"))
    # prompt_2 / negative_prompt_2 given on purpose: without tokenizer one the
    # refiner's encode_prompt zips [prompt, prompt_2] with [tokenizer_2], so
    # encoder 2 reads prompt and negative_prompt and never the _2 texts
    ref_kw = dict(prompt="a red fox in the snow", prompt_2="an oil painting of a harbour", negative_prompt="blurry",
                  negative_prompt_2="sharp, vivid colours", num_inference_steps=5, guidance_scale=6.0,
                  strength=0.6, aesthetic_score=7.0, negative_aesthetic_score=2.0)
    lat, img = gen(rpipe, 5, image=init, **ref_kw)
    folder_pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(TINY_REF, torch_dtype=torch.float32)
    lat2, _ = gen(folder_pipe, 5, image=init, **ref_kw)
    assert torch.equal(lat, lat2), "the refiner's single file and folder disagree"
    goldens["refiner_alone_latents"], goldens["refiner_alone_image"] = lat, img
    cases["refiner_alone"] = dict(ref_kw, seed=5)

    # 3. the real checkpoints' names and shapes
    for which, folder in (("base", "base"), ("refiner", "refiner")):
        real = os.path.join(TESTDATA, "real-sdxl")
        meta = {}
        comps = ["unet", "vae", "text_encoder", "text_encoder_2"] if which == "base" else ["unet", "vae", "text_encoder_2"]
        for c in comps:
            d = os.path.join(real, folder if c == "unet" else "base", c)
            meta[c] = {k: torch.empty(v["shape"], device="meta") for k, v in json.load(open(os.path.join(d, "keys.json"))).items()}
        if which == "base":
            u = {"model.diffusion_model." + k: v for k, v in conv.convert_unet_state_dict(meta["unet"]).items()}
            v = {"first_stage_model." + k: x for k, x in conv.convert_vae_state_dict(meta["vae"]).items()}
            t1 = {"conditioner.embedders.0.transformer." + k: x for k, x in meta["text_encoder"].items()}
            t2 = {"conditioner.embedders.1.model." + k: x for k, x in
                  conv.convert_openclip_text_enc_state_dict(meta["text_encoder_2"]).items()}
            t2["conditioner.embedders.1.model.text_projection"] = t2.pop(
                "conditioner.embedders.1.model.text_projection.weight").T
            keys = {**u, **v, **t1, **t2}
        else:
            ucfg = json.load(open(os.path.join(real, "refiner", "unet", "config.json")))
            keys = refiner_original(meta, ucfg, 4, "conditioner.embedders.0.model.")
        json.dump({k: list(x.shape) for k, x in sorted(keys.items())}, open(os.path.join(OUT, f"real_{which}_keys.json"), "w"),
                  indent=0)

    # 4. LoRAs
    pipe = StableDiffusionXLPipeline.from_pretrained(TINY, torch_dtype=torch.float32)
    ksd, nmod = kohya_lora(pipe, 21)
    save_file(ksd, os.path.join(OUT, "lora_kohya.safetensors"))
    (lat, img), changed = with_lora(os.path.join(OUT, "lora_kohya.safetensors"), 0.7,
                                    3, **base_kw)
    assert changed == nmod, f"diffusers merged {changed} of {nmod} kohya modules"
    goldens["lora_kohya_latents"], goldens["lora_kohya_image"] = lat, img
    cases["lora_kohya"] = dict(base_kw, seed=3, scale=0.7, modules=nmod)
    psd = peft_lora(pipe, 22)
    save_file(psd, os.path.join(OUT, "lora_peft.safetensors"))
    (lat, img), changed = with_lora(os.path.join(OUT, "lora_peft.safetensors"), 1.3,
                                    4, **base_kw)
    assert changed == len(psd) // 2, f"diffusers merged {changed} of {len(psd) // 2} PEFT modules"
    goldens["lora_peft_latents"], goldens["lora_peft_image"] = lat, img
    cases["lora_peft"] = dict(base_kw, seed=4, scale=1.3, modules=len(psd) // 2)

    # 5. another VAE: a folder (force_upcast false, as the fp16-fix VAE) and the same in the original layout
    vcfg = json.load(open(os.path.join(TINY, "vae", "config.json")))
    vcfg = {k: v for k, v in vcfg.items() if not k.startswith("_")}
    vcfg["force_upcast"] = False
    vae = AutoencoderKL(**vcfg)
    torch.manual_seed(31)
    for p in vae.parameters():
        torch.nn.init.normal_(p, std=0.2 if p.ndim > 1 else 0.05)
    vdir = os.path.join(OUT, "vae_fp16fix_like")
    shutil.rmtree(vdir, ignore_errors=True)
    vae.to(torch.float16).save_pretrained(vdir)
    vae = AutoencoderKL.from_pretrained(vdir, torch_dtype=torch.float32)
    vsd = {k: v.to(torch.float16) for k, v in conv.convert_vae_state_dict(vae.state_dict()).items()}
    save_file(vsd, os.path.join(OUT, "vae_original.safetensors"))
    vae_file = AutoencoderKL.from_single_file(os.path.join(OUT, "vae_original.safetensors"), config=vdir,
                                              torch_dtype=torch.float32)
    for k, v in vae.state_dict().items():
        assert torch.equal(v, vae_file.state_dict()[k]), k
    pipe = StableDiffusionXLPipeline.from_pretrained(TINY, vae=vae, torch_dtype=torch.float32)
    lat, img = gen(pipe, 9, **base_kw)
    goldens["vae_swap_latents"], goldens["vae_swap_image"] = lat, img
    cases["vae_swap"] = dict(base_kw, seed=9)

    save_file({k: v.contiguous() for k, v in goldens.items()}, os.path.join(OUT, "goldens.safetensors"),
              metadata={"diffusers": diffusers.__version__, "torch": torch.__version__})
    json.dump(cases, open(os.path.join(OUT, "cases.json"), "w"), indent=1, sort_keys=True)
    shutil.rmtree(tmp)
    print(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
