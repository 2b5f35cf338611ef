#!/usr/bin/env python3
"""Writes tests/golden/data/schedulers/: the samplers users pick, run by
diffusers (0.42) itself. Each case is a scheduler config (sdxl-tiny's, the
real SDXL's, or one with settings changed) and optionally a sampler name of
ours with the overrides it stands for, built as diffusers users build it,
`Class.from_config(config, **overrides)`. For 4, 10, 25 and 30 steps: the
timesteps, sigmas and init_noise_sigma; then, on 10 steps, every step from a
fixed sample with fixed model outputs and, for the stochastic samplers, the
noise drawn from a torch CPU generator seeded 2024 (as a pipeline passes its
generator to step); and add_noise at the begin index img2img sets for
strength 0.3 and 0.6. Needs torch and diffusers from PyPI:

    /tmp/pyenv/bin/python tests/golden/make_scheduler_goldens.py
"""
import json
import os

import diffusers
import torch
import numpy as np
import torchsde
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, DPMSolverSDEScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler,
                       UniPCMultistepScheduler)
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.environ.get("SDXL_TESTDATA", os.path.join(ROOT, "..", "shared", "testdata"))
OUT = os.path.join(ROOT, "tests", "golden", "data", "schedulers")

TINY = json.load(open(os.path.join(TESTDATA, "sdxl-tiny", "scheduler", "scheduler_config.json")))
REAL = json.load(open(os.path.join(TESTDATA, "real-sdxl", "base", "scheduler", "scheduler_config.json")))

EULER, EULER_A, DPM, DDIM, LMS, HEUN, LCM, UNIPC, DPMSDE = (
    EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler, DDIMScheduler,
    LMSDiscreteScheduler, HeunDiscreteScheduler, LCMScheduler, UniPCMultistepScheduler, DPMSolverSDEScheduler)
# our --scheduler names: the class and the overrides each stands for (common/gen_params.c)
KINDS = {
    "euler": (EULER, dict(use_karras_sigmas=False)),
    "euler_karras": (EULER, dict(use_karras_sigmas=True)),
    "euler_a": (EULER_A, {}),
    "dpmpp_2m": (DPM, dict(use_karras_sigmas=False, algorithm_type="dpmsolver++", solver_order=2)),
    "dpmpp_2m_karras": (DPM, dict(use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=2)),
    "dpmpp_2m_sde": (DPM, dict(use_karras_sigmas=False, algorithm_type="sde-dpmsolver++", solver_order=2)),
    "dpmpp_2m_sde_karras": (DPM, dict(use_karras_sigmas=True, algorithm_type="sde-dpmsolver++", solver_order=2)),
    "dpmpp_3m": (DPM, dict(use_karras_sigmas=False, algorithm_type="dpmsolver++", solver_order=3)),
    "dpmpp_3m_karras": (DPM, dict(use_karras_sigmas=True, algorithm_type="dpmsolver++", solver_order=3)),
    "dpmpp_3m_sde": (DPM, dict(use_karras_sigmas=False, algorithm_type="sde-dpmsolver++", solver_order=3)),
    "dpmpp_3m_sde_karras": (DPM, dict(use_karras_sigmas=True, algorithm_type="sde-dpmsolver++", solver_order=3)),
    "ddim": (DDIM, {}),
    "lms": (LMS, dict(use_karras_sigmas=False)),
    "lms_karras": (LMS, dict(use_karras_sigmas=True)),
    "heun": (HEUN, dict(use_karras_sigmas=False)),
    "lcm": (LCM, {}),
    "unipc": (UNIPC, dict(use_karras_sigmas=False)),
    "unipc_karras": (UNIPC, dict(use_karras_sigmas=True)),
    "dpmpp_sde": (DPMSDE, dict(use_karras_sigmas=False)),
    "dpmpp_sde_karras": (DPMSDE, dict(use_karras_sigmas=True)),
}
# DPM++ SDE draws its noise from a Brownian tree seeded with noise_sampler_seed
# (None in diffusers' default: a seed from torch's global generator); the
# steps here set it to 2024, as the other samplers' generator, unless the
# case's config names one
SDE_SEED = 2024


def with_keys(base, cls=None, **keys):
    c = dict(base, **keys)
    if cls:
        c["_class_name"] = cls.__name__
    return c


# name: (config as our C reads it, our sampler name or None for the config's class, eta)
CASES = {k: (TINY, k, 0.0) for k in KINDS}
CASES.update({
    "ddim_eta": (TINY, "ddim", 0.7),
    "real_dpmpp_2m_karras": (REAL, "dpmpp_2m_karras", 0.0),  # the seed's config: no final_sigmas_type
    "real_euler_karras": (REAL, "euler_karras", 0.0),
    "real_euler_a": (REAL, "euler_a", 0.0),
    "euler_zero_snr_v_trailing": (with_keys(TINY, EULER, rescale_betas_zero_snr=True, prediction_type="v_prediction",
                                            timestep_spacing="trailing"), None, 0.0),
    "euler_sigma_min_linspace": (with_keys(TINY, EULER, final_sigmas_type="sigma_min", timestep_spacing="linspace"),
                                 None, 0.0),
    "euler_a_linspace_zero_snr": (with_keys(TINY, EULER_A, timestep_spacing="linspace", rescale_betas_zero_snr=True,
                                            prediction_type="v_prediction"), None, 0.0),
    "dpm_heun_trailing_v": (with_keys(TINY, DPM, solver_type="heun", timestep_spacing="trailing",
                                      prediction_type="v_prediction"), None, 0.0),
    "dpm_sde_heun_karras_sigma_min": (with_keys(TINY, DPM, solver_type="heun", algorithm_type="sde-dpmsolver++",
                                                use_karras_sigmas=True, final_sigmas_type="sigma_min"), None, 0.0),
    "dpm_order1_euler_at_final_linspace": (with_keys(TINY, DPM, solver_order=1, euler_at_final=True,
                                                     timestep_spacing="linspace"), None, 0.0),
    "dpm_3m_no_lower_order_final_zero_snr": (with_keys(TINY, DPM, solver_order=3, lower_order_final=False,
                                                       rescale_betas_zero_snr=True, prediction_type="v_prediction",
                                                       timestep_spacing="trailing"), None, 0.0),
    "ddim_clip_trailing_zero_snr_v": (with_keys(TINY, DDIM, clip_sample=True, timestep_spacing="trailing",
                                                rescale_betas_zero_snr=True, prediction_type="v_prediction",
                                                set_alpha_to_one=False), None, 0.0),
    "ddim_linspace": (with_keys(TINY, DDIM, timestep_spacing="linspace"), None, 0.3),
    "lms_trailing_v_zero_snr_ignored": (with_keys(TINY, LMS, timestep_spacing="trailing", prediction_type="v_prediction",
                                                  rescale_betas_zero_snr=True), None, 0.0),
    "real_lms_karras": (REAL, "lms_karras", 0.0),
    "real_heun": (REAL, "heun", 0.0),
    "heun_karras_clip_trailing": (with_keys(TINY, HEUN, use_karras_sigmas=True, clip_sample=True,
                                            timestep_spacing="trailing"), None, 0.0),
    "real_lcm": (REAL, "lcm", 0.0),
    "real_unipc": (REAL, "unipc", 0.0),
    # bh1 with a final sigma of 0 gives NaN in diffusers too (B(h) = -inf): sigma_min here
    "unipc_bh1_order3_trailing_v": (with_keys(TINY, UNIPC, solver_type="bh1", solver_order=3, timestep_spacing="trailing",
                                              prediction_type="v_prediction", final_sigmas_type="sigma_min"), None, 0.0),
    # (Karras with sigma_min repeats the last sigma, h = 0; zero without lower-order final divides by
    # rk = 0: both NaN in diffusers)
    "unipc_karras_order3": (with_keys(TINY, UNIPC, use_karras_sigmas=True, solver_order=3), None, 0.0),
    "real_dpmpp_sde_karras": (REAL, "dpmpp_sde_karras", 0.0),
    "dpm_sde_v_trailing_seed99": (with_keys(TINY, DPMSDE, prediction_type="v_prediction", timestep_spacing="trailing",
                                            noise_sampler_seed=99), None, 0.0),
    "dpm_sde_karras_leading": (with_keys(TINY, DPMSDE, use_karras_sigmas=True, timestep_spacing="leading",
                                         steps_offset=1), None, 0.0),
    "lcm_v_zero_snr_orig_40": (with_keys(TINY, LCM, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                         original_inference_steps=40, timestep_scaling=8.0), None, 0.0),
})


def build(cfg, kind):
    if kind:
        cls, over = KINDS[kind]
        return cls.from_config(cfg, **over)
    return {c.__name__: c for c in (EULER, EULER_A, DPM, DDIM, LMS, HEUN, LCM, UNIPC, DPMSDE)}[cfg["_class_name"]].from_config(cfg)


def main():
    os.makedirs(OUT, exist_ok=True)
    index = {}
    for name, (cfg, kind, eta) in CASES.items():
        t = {}
        for steps in (4, 10, 25, 30) if not (kind == "lcm" or cfg.get("_class_name") == "LCMScheduler") else (4, 10, 25):
            s = build(cfg, kind)
            s.set_timesteps(steps)
            t[f"n{steps}_timesteps"] = s.timesteps.to(torch.float32)
            if hasattr(s, "sigmas"):
                t[f"n{steps}_sigmas"] = s.sigmas.to(torch.float32)
            t[f"n{steps}_init_noise_sigma"] = torch.tensor([float(s.init_noise_sigma)])
        s = build(cfg, kind)
        s.set_timesteps(10)
        if isinstance(s, DPMSDE) and s.noise_sampler_seed is None:
            s.noise_sampler_seed = SDE_SEED
        g = torch.Generator().manual_seed(7)
        x = torch.randn((1, 4, 6, 5), generator=g) * s.init_noise_sigma
        t["initial_sample"] = x.clone()
        noise_gen = torch.Generator().manual_seed(2024)
        for i, ts in enumerate(s.timesteps):
            mo = torch.randn(x.shape, generator=g)
            scaled = s.scale_model_input(x, ts)
            # the pipelines pass a generator (and eta) only to a step that takes them
            kw = {"generator": noise_gen} if not isinstance(s, (LMS, HEUN, UNIPC, DPMSDE)) else {}
            if isinstance(s, DDIM):
                kw["eta"] = eta
            x = s.step(mo, ts, x, **kw).prev_sample
            t[f"step{i}_timestep"] = torch.tensor([float(ts)])
            t[f"step{i}_scaled_model_input"] = scaled.clone()
            t[f"step{i}_model_output"] = mo
            t[f"step{i}_prev_sample"] = x.clone()
        clean, noise = torch.randn((1, 4, 6, 5), generator=g), torch.randn((1, 4, 6, 5), generator=g)
        t["img2img_clean"], t["img2img_noise"] = clean, noise
        for strength in (0.3, 0.6):
            s = build(cfg, kind)
            s.set_timesteps(10)
            first = (10 - min(int(10 * strength), 10)) * s.order  # get_timesteps' t_start * order
            if hasattr(s, "set_begin_index"):  # as the img2img pipeline calls it
                s.set_begin_index(first)
            ts = s.timesteps[first:first + 1]
            t[f"img2img_{int(strength * 10)}_noisy"] = s.add_noise(clean, noise, ts)
        save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, f"{name}.safetensors"),
                  metadata={"diffusers": diffusers.__version__, "torch": torch.__version__})
        index[name] = {"config": cfg, "kind": kind, "eta": eta, "class": type(build(cfg, kind)).__name__}
    json.dump(index, open(os.path.join(OUT, "cases.json"), "w"), indent=1, sort_keys=True)
    brownian()
    print(f"{len(index)} cases")


def brownian():
    """brownian.safetensors: numpy's SeedSequence words and torchsde's
    BrownianInterval as diffusers' BatchedBrownianTree builds it, queried
    as DPM++ SDE queries it (both directions, overlapping, repeated)."""
    t = {}
    entropies = [0, 5, 2024, 2**32 + 7, 2**64 - 1]
    keys = [(), (0, 0), (1, 1), (5, 3), (2**33 + 1, 34)]
    for i, e in enumerate(entropies):
        for j, k in enumerate(keys):
            words = np.random.SeedSequence(entropy=e, spawn_key=k, pool_size=24).generate_state(4)
            t[f"seedseq_{i}_{j}"] = torch.tensor(words.astype(np.int64))
    t["seedseq_entropy"] = torch.tensor([e & (2**63 - 1) for e in entropies], dtype=torch.int64)
    lo, hi = torch.tensor(0.0291675), torch.tensor(14.614642)  # float32, as the scheduler's sigmas
    tree = torchsde.BrownianInterval(t0=float(lo), t1=float(hi), size=(2, 3, 4), dtype=torch.float32, entropy=12345,
                                     tol=1e-6, pool_size=24, halfway_tree=True)
    queries = [(14.614642, 6.1), (6.1, 2.5), (2.5, 6.1), (0.0291675, 14.614642), (1.0000004, 1.0000013),
               (0.5, 0.25), (0.03, 0.02), (3.3, 3.3)]
    q = []
    for i, (a, b) in enumerate(queries):
        a, b = float(torch.tensor(a)), float(torch.tensor(b))  # float32 values, as the sampler passes them
        lo_, hi_ = min(a, b), max(a, b)
        t[f"tree_{i}"] = tree(lo_, hi_).contiguous()
        q.append([lo_, hi_])
    t["tree_queries"] = torch.tensor(q, dtype=torch.float64)
    save_file(t, os.path.join(OUT, "brownian.safetensors"),
              metadata={"torchsde": torchsde.__version__, "numpy": np.__version__})


if __name__ == "__main__":
    main()
