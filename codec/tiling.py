"""Run a convolutional stage on overlapping tiles so memory stays flat as images grow.

    input (B,C,H,W) --split into tiles of `tile` (+ `halo` of context each side)-->
      fn(tile + halo) -> output tile (scaled by up/down) --drop the halo-->
      x smooth window (raised-cosine ramps over `overlap`) --> sum / sum of windows

The halo gives every tile the context its receptive field needs, so the kept
part matches an untiled run up to tiny boundary effects; the windows fade
neighbouring tiles into each other over the overlap so no seam is left.
Only one tile's activations exist at a time; the output is built in place.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def tile_starts(size: int, tile: int, overlap: int, step: int = 1) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size), neighbours sharing
    at least `overlap`; offsets are multiples of `step` when size and tile are."""
    if size <= tile:
        return [0]
    stride = max(step, (tile - overlap) // step * step)
    return list(range(0, size - tile, stride)) + [size - tile]


def _ramp(n: int, ramp: int, fade_in: bool, fade_out: bool) -> Tensor:
    """1-D window: raised-cosine ramps of length `ramp` at the faded ends, 1 elsewhere."""
    w = torch.ones(n)
    ramp = min(ramp, n // 2)
    if ramp > 0:
        r = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(ramp) + 0.5) / ramp)
        if fade_in:
            w[:ramp] = r
        if fade_out:
            w[n - ramp :] = r.flip(0)
    return w


def tile_map(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int,
    overlap: int,
    halo: int,
    up: int = 1,
    down: int = 1,
    out_channels: int | None = None,
    out_dtype: torch.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """fn applied to x (B,C,H,W) tile by tile; fn maps (B,C,h,w) -> (B,C',h*up/down,w*up/down).

    `tile`, `overlap` and `halo` are in input pixels and multiples of `down`; tile <= 0
    (or an input that fits one tile) runs fn once on the whole input. `progress(done, total)`
    is called after each tile.
    """
    b, _, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        out = fn(x)
        if progress is not None:
            progress(1, 1)
        return out
    if tile % down or overlap % down or halo % down or h % down or w % down:
        raise ValueError(f"tile, overlap, halo and input size must be multiples of {down}")
    ys, xs = tile_starts(h, tile, overlap, down), tile_starts(w, tile, overlap, down)
    out = weight = None
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            hy0, hx0 = max(0, y0 - halo), max(0, x0 - halo)
            hy1, hx1 = min(h, y1 + halo), min(w, x1 + halo)
            res = fn(x[..., hy0:hy1, hx0:hx1])
            if out is None:
                c = out_channels or res.shape[1]
                out = torch.zeros(b, c, h * up // down, w * up // down, dtype=out_dtype or res.dtype, device=res.device)
                weight = torch.zeros(1, 1, h * up // down, w * up // down, dtype=torch.float32, device=res.device)
            s = lambda v: v * up // down  # noqa: E731 - input -> output coordinates
            res = res[..., s(y0 - hy0) : s(y1 - hy0), s(x0 - hx0) : s(x1 - hx0)]
            ramp = s(overlap)
            wy = _ramp(s(y1 - y0), ramp, y0 > 0, y1 < h)
            wx = _ramp(s(x1 - x0), ramp, x0 > 0, x1 < w)
            win = (wy[:, None] * wx[None, :]).to(res.device)
            out[..., s(y0) : s(y1), s(x0) : s(x1)] += (res * win).to(out.dtype)
            weight[..., s(y0) : s(y1), s(x0) : s(x1)] += win
            if progress is not None:
                progress(len(xs) * ys.index(y0) + xs.index(x0) + 1, len(ys) * len(xs))
    return out.div_(weight)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """(B,C,H,W) -> (B,C,H_pad,W_pad), bottom and right edges replicated to a multiple of `multiple`."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")
