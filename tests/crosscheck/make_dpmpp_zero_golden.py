#!/usr/bin/env python3
"""Writes tests/golden/data/dpmpp_final_zero.safetensors and its scheduler
config: DPMSolverMultistepScheduler (Karras sigmas) as diffusers >= 0.26 saves
and runs it, with final_sigmas_type "zero" and lambda_min_clipped -Infinity in
the config. set_timesteps(5) on sdxl-tiny's scheduler settings, then all five
steps from a fixed sample with fixed model outputs. Needs torch and diffusers:

    /tmp/pyenv/bin/python tests/crosscheck/make_dpmpp_zero_golden.py
"""
import json
import os

import diffusers
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.environ.get("SDXL_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
OUT = os.path.join(ROOT, "tests", "golden", "data")

base = EulerDiscreteScheduler.from_pretrained(os.path.join(TESTDATA, "sdxl-tiny", "scheduler"))
s = DPMSolverMultistepScheduler.from_config(base.config, use_karras_sigmas=True)
assert s.config.final_sigmas_type == "zero"
s.save_pretrained(OUT)  # scheduler_config.json
os.replace(os.path.join(OUT, "scheduler_config.json"), os.path.join(OUT, "dpmpp_final_zero_config.json"))
s.set_timesteps(5)
g = torch.Generator("cpu").manual_seed(7)
x = torch.randn((1, 4, 6, 5), generator=g) * s.init_noise_sigma
t = {"timesteps": s.timesteps.to(torch.float32), "sigmas": s.sigmas.to(torch.float32), "initial_sample": x.clone()}
for i, ts in enumerate(s.timesteps):
    mo = torch.randn(x.shape, generator=g)
    x = s.step(mo, ts, x).prev_sample
    t[f"step{i}_model_output"] = mo
    t[f"step{i}_prev_sample"] = x.clone()
save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "dpmpp_final_zero.safetensors"),
          metadata={"diffusers": diffusers.__version__, "torch": torch.__version__})
print(json.dumps({k: list(v.shape) for k, v in t.items()}))
