#!/usr/bin/env python3
"""Writes tests/golden/data/compel/: what compel (2.5, from PyPI) does with
SDXL prompts, for `--long-prompts`. compel is what diffusers users reach for
to pass prompts over 77 tokens and to weight words; its SDXL wrapper
CompelForSDXL runs both text encoders with truncate_long_prompts=False:

    /tmp/pyenv/bin/pip install torch diffusers transformers compel
    /tmp/pyenv/bin/python tests/golden/make_compel_goldens.py

What it writes (tests read them; nothing here is computed by the code under test):
  - parse_cases.json: compel's own parse (PromptParser.parse_conjunction,
    flattened) of hand-picked and random prompts: the fragments and their
    weights, or "error" where compel raises.
  - cases.json + goldens.safetensors: for each case, CompelForSDXL(pipe)
    (prompt, style_prompt=prompt_2, negative_prompt, negative_style_prompt)
    on sdxl-tiny: prompt embeds, pooled embeds and their negatives; and
    "generated": the final latents and 8-bit image of
    StableDiffusionXLPipeline given the "weights" case's embeddings
    (float32, CPU).
"""
import json
import os
import random

import torch
from compel import CompelForSDXL
from compel.compel import Compel
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.environ.get("SDXL_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
OUT = os.path.join(ROOT, "tests", "golden", "data", "compel")

HAND = [
    "a cat", "a (red)1.2 ball", "a red+ ball", "a red++ ball--", "(red ball)++ on grass", "((nested)1.5 more)0.8 x",
    "foo(bar)", "(foo)bar", "(cat:1.2)", "masterpiece,best quality, 1girl", '"a quoted, text"1.3 end', "a-b c+d",
    "(x)-0.5", "(x)-", "word.attend(1.4)", "(a, b.)0.7", "1.5 version (v1.5)", "", "   ", "a \\(escaped\\) thing",
    "cat. dog, bird", "(red)0", "a (b)1.0 c", "tail+", "(unclosed", "closed)", "a(b)1.3c", "(a)(b)1.2", "(a)1.2(b)",
    "x (y)+++ z", "((a)) b", "(a)1e2", "(a).5", "(a)-.5", "(a - b)1.2", "(a) 1.2", '"q"', '""', '"" x', '"(a)1.2 b"0.9',
    "a,,b", "a ,b", "naïve café, crème+", "(a)1.", "(a)1.2.3", "a\\+ b", "\\,x", "(a\\)b)1.3", "word .attend(1.5)",
    "(a b).attend(++)", "x=y (z=w)1.1", "emoji 🦊 (fox)1.2", '"a\\"b"1.2', "a\t(b)1.2\nc", "(a (b)0.5 c)1.5",
    "a red fox in the snow, (highly detailed)1.2, (blurry)0.5", "(((deep)))1.3",
]
PIECES = ["a", "red", "cat", "1girl", "x-y", "v1.5", "foo_bar", "(", ")", "(", ")", "+", "++", "-", "--", "1.2", "0.5",
          ".5", "3", ",", ".", '"', "\\(", "\\)", '\\"', "\\,", "=", ":", "!", "é", ".attend(1.2)", "+x", "-y",
          "\\t", "\t", "\n", '""', "\\", ".attend(--)", "1e3", "\u3000", ",\u00a0"]
SEPS = ["", "", " ", " ", "  ", ", "]


def parse(prompt):
    try:
        c = Compel.parse_prompt_string(prompt)
    except Exception as e:  # compel raises: record that it does
        return {"prompt": prompt, "error": type(e).__name__}
    if len(c.prompts) != 1 or not hasattr(c.prompts[0], "children"):
        return {"prompt": prompt, "error": "not one flattened prompt"}
    return {"prompt": prompt, "fragments": [[f.text, f.weight] for f in c.prompts[0].children]}


def parse_cases():
    rng = random.Random(2025)
    prompts = list(HAND)
    for _ in range(1200):
        n = rng.randint(1, 9)
        prompts.append("".join(rng.choice(PIECES) + rng.choice(SEPS) for _ in range(n)).strip(" "))
    return [parse(p) for p in dict.fromkeys(prompts)]


LONG = ("A red fox walks through a snowy pine forest at dawn, soft golden light filtering through the branches. "
        "Its breath steams in the cold air and frost covers every needle. In the distance a wooden cabin with a "
        "smoking chimney sits beside a frozen lake, mountains rising behind it under a pale blue sky. Highly "
        "detailed, sharp focus, award winning wildlife photograph, 85mm lens, shallow depth of field.")
COMMAS = ", ".join(["red fox", "snowy forest", "golden light", "pine trees", "frozen lake", "wooden cabin",
                    "smoking chimney", "distant mountains", "pale sky", "frost", "steam", "dawn", "wildlife",
                    "photograph", "sharp focus", "85mm lens", "bokeh", "award winning", "highly detailed",
                    "national geographic", "cinematic", "volumetric light", "soft shadows", "rich colours",
                    "film grain", "high dynamic range", "crisp", "winter morning", "quiet scene", "tranquil"])
WORDS = " ".join(["fox"] * 40 + ["snow"] * 45)
CASES = {
    "long_sentences": dict(prompt=LONG, negative_prompt="blurry, lowres"),
    "long_phrases": dict(prompt=COMMAS, negative_prompt="blurry"),
    "long_words_prompt_2": dict(prompt=WORDS, prompt_2="an oil painting of a harbour at night",
                                negative_prompt="blurry", negative_prompt_2="sharp"),
    "weights": dict(prompt="a (red)1.3 fox++ in the (snowy forest)0.7, masterpiece, \"soft light\"0.5",
                    negative_prompt="blurry-, (lowres)1.2"),
    "negative_longer": dict(prompt="a fox+", negative_prompt=COMMAS + ", (ugly)0.6, (deformed)1.4"),
    "downweight_across_chunks": dict(prompt=" ".join(["fox"] * 70) + " (a very long weighted phrase that crosses "
                                     "the chunk boundary)0.5 end", negative_prompt=""),
    "no_negative": dict(prompt=LONG + " (fox)1.2"),
}
IMAGE_CASE = "weights"


def main():
    os.makedirs(OUT, exist_ok=True)
    json.dump(parse_cases(), open(os.path.join(OUT, "parse_cases.json"), "w"), indent=0, ensure_ascii=False)
    pipe = StableDiffusionXLPipeline.from_pretrained(os.path.join(TESTDATA, "sdxl-tiny"), torch_dtype=torch.float32)
    compel = CompelForSDXL(pipe, device="cpu")
    goldens, cases = {}, {}
    for name, c in CASES.items():
        lc = compel(c["prompt"], style_prompt=c.get("prompt_2"), negative_prompt=c.get("negative_prompt"),
                    negative_style_prompt=c.get("negative_prompt_2"))
        goldens[name + ".embeds"] = lc.embeds.contiguous()
        goldens[name + ".pooled"] = lc.pooled_embeds.contiguous()
        if lc.negative_embeds is not None:
            goldens[name + ".negative_embeds"] = lc.negative_embeds.contiguous()
            goldens[name + ".negative_pooled"] = lc.negative_pooled_embeds.contiguous()
        cases[name] = dict(c, tokens=lc.embeds.shape[1])
    c = CASES[IMAGE_CASE]
    lc = compel(c["prompt"], negative_prompt=c["negative_prompt"])
    run = dict(num_inference_steps=4, guidance_scale=5.0, height=64, width=64)
    lat = pipe(prompt_embeds=lc.embeds, pooled_prompt_embeds=lc.pooled_embeds, negative_prompt_embeds=lc.negative_embeds,
               negative_pooled_prompt_embeds=lc.negative_pooled_embeds, generator=torch.Generator("cpu").manual_seed(7),
               output_type="latent", **run).images
    img = pipe(prompt_embeds=lc.embeds, pooled_prompt_embeds=lc.pooled_embeds, negative_prompt_embeds=lc.negative_embeds,
               negative_pooled_prompt_embeds=lc.negative_pooled_embeds, generator=torch.Generator("cpu").manual_seed(7),
               output_type="np", **run).images
    goldens["generated_latents"] = lat.contiguous()
    goldens["generated_image"] = torch.from_numpy((img * 255).round().astype("uint8")).contiguous()
    cases["generated"] = dict(c, seed=7, **run)
    save_file(goldens, os.path.join(OUT, "goldens.safetensors"))
    json.dump(cases, open(os.path.join(OUT, "cases.json"), "w"), indent=1)
    print("wrote", OUT, {k: tuple(v.shape) for k, v in goldens.items()})


if __name__ == "__main__":
    main()
