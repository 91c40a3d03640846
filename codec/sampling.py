"""Few-step refinement of a coarse latent with the diffusion prior and a diffusers scheduler.

    noise (seeded, CPU) -> x_T' = add_noise(0, noise, T')      T' = start * T (start = 1: pure noise)
    for t in the `steps` trailing timesteps from T' down:
        v = prior([x_t | coarse], t, level)          [guidance: v_u + S (v_c - v_u), one batch]
        x_t = scheduler.step(v, t, x_t)             DDIM (eta 0) / DPM-Solver++ / UniPC
        early exit when the predicted clean residual moves less than `early_exit`
    latent_hat = coarse + x_0 * residual_scale[level]

`timestep_spacing="trailing"` makes the first step start at the last training
timestep, so even 1 or 2 steps start from (almost) pure noise.
"""

import math

import torch
from torch import Tensor

from bitstream import RefineSettings

from .models.prior import BETA_SCHEDULES, LatentPrior, PriorConfig
from .tiling import tile_map


def make_scheduler(name: str, cfg: PriorConfig):
    """A diffusers scheduler matching the prior's training schedule."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    common = dict(
        num_train_timesteps=cfg.train_timesteps,
        beta_schedule=BETA_SCHEDULES[cfg.schedule],
        prediction_type=cfg.prediction_type,
        timestep_spacing="trailing",
    )
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    if name == "unipc":
        return UniPCMultistepScheduler(**common, solver_order=2)
    raise ValueError(f"unknown sampler {name!r}")


def start_noise(shape, seed: int) -> Tensor:
    """Seeded standard normal noise, drawn on the CPU so every device starts identically."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32)


@torch.inference_mode()
def refine(
    prior: LatentPrior,
    coarse: Tensor,
    level: int,
    settings: RefineSettings,
    tile: int = 0,
    halo: int = 16,
    overlap: int = 16,
    progress=None,
    net=None,
) -> Tensor:
    """coarse latent (1,C,h,w) -> refined latent (1,C,h,w); h, w multiples of 2^(len(widths)-1).

    `tile` > 0 runs the UNet on overlapping latent tiles of that size (each with `halo`
    latent px of context) whenever the latent is larger; `progress(i)` is called per step.
    `net`: what computes the prior's forward (default `prior` itself; the Codec passes the
    prior as its run options make it: another precision, INT8, compiled).
    """
    net = prior if net is None else net
    if settings.steps <= 0:
        return coarse
    steps = settings.steps
    sched = make_scheduler(settings.sampler, prior.cfg)
    # Start part-way down the schedule: lay `total` steps over all of it, keep the last `steps`.
    total = max(steps, math.ceil(steps / max(settings.start, 1e-3)))
    sched.set_timesteps(total)
    timesteps = sched.timesteps[total - steps :]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(total - steps)

    device, dtype = coarse.device, coarse.dtype
    noise = start_noise(coarse.shape, settings.seed).to(device, dtype)
    x = sched.add_noise(torch.zeros_like(noise), noise, timesteps[:1])
    cond = prior.condition(coarse)
    alphas = sched.alphas_cumprod.to(device, torch.float32)
    label = level + 1
    guided = settings.guidance != 1.0

    def model(inp: Tensor, t: Tensor) -> Tensor:
        xt, c = inp[:, : x.shape[1]], inp[:, x.shape[1] :]
        if guided:  # conditional and unconditional passes as one batch
            xt2 = torch.cat([xt, xt])
            c2 = torch.cat([c, torch.zeros_like(c)])
            labels = torch.tensor([label, 0], device=device)
            v_c, v_u = net(xt2, t.expand(2).to(device), c2, labels).chunk(2)
            return v_u + settings.guidance * (v_c - v_u)
        return net(xt, t.expand(1).to(device), c, torch.tensor([label], device=device))

    x0_prev = None
    for i, t in enumerate(timesteps):
        v = tile_map(lambda inp, t=t: model(inp, t), torch.cat([x, cond], dim=1), tile, overlap, halo)
        a = alphas[int(t)]
        x0 = a.sqrt() * x - (1 - a).sqrt() * v  # v-prediction -> predicted clean residual
        step_kwargs = {"eta": 0.0} if settings.sampler == "ddim" else {}
        x = sched.step(v, t, x, **step_kwargs).prev_sample
        if progress is not None:
            progress(i)
        if settings.early_exit > 0 and x0_prev is not None and (x0 - x0_prev).abs().mean() < settings.early_exit:
            x = x0
            break
        x0_prev = x0
    return coarse + x * prior.residual_scale(level)
