"""Checkerboard spatial context for y's entropy parameters (He et al. 2021, "Checkerboard
context model for efficient learned image compression").

    y positions:  A n A n        A = anchor     (row + col even): coded first, with the
                  n A n A                         hyperprior's means and scales, as without context
                  A n A n        n = non-anchor (row + col odd): coded second, with means and
                                                  scales refined from the decoded anchors around it

    non-anchor params = hyper params + delta, where
        delta = params_net( conv5x5(anchors y_hat / gain), hyper means / gain, log hyper scales )

A 5x5 convolution over the anchor map (non-anchors set to zero) sees, at a non-anchor, the
12 anchors within two positions and never the position itself, so the decoder can compute
it after the first pass. Both passes decode in parallel over the whole image: two network
evaluations at 1/16 of the image's side, a few milliseconds.

The last layer starts at zero, so an untrained context reproduces the hyperprior exactly;
training (scripts/train_context.py) fine-tunes it alone, from the shipped compressor's
frozen y and z. It runs, like h_s, in float64 on the CPU on both sides, and its means snap
to the same 1/MEAN_GRID grid and its scales to the same table indexes, which the
container's symbol check covers.
"""

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

# Keep a crafted file's arithmetic finite: log-scale deltas beyond this are clipped (e^8 ~ 3000x).
MAX_LOG_SCALE_DELTA = 8.0


@dataclass(frozen=True)
class ContextConfig:
    y_channels: int = 64  # M
    features: int = 128  # channels of the anchor convolution
    hidden: int = 192  # width of the parameter network
    kernel: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


def anchor_mask(height: int, width: int, device=None) -> Tensor:
    """(1,1,h,w) bool: True at the anchors (row + col even), coded in the first pass."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return ((rows + cols) % 2 == 0)[None, None]


class CheckerboardContext(nn.Module):
    """(anchors, hyper means, hyper scales, gain) -> means and scales at every position, gained domain."""

    def __init__(self, cfg: ContextConfig = ContextConfig()):
        super().__init__()
        self.cfg = cfg
        m = cfg.y_channels
        self.anchors = nn.Conv2d(m, cfg.features, cfg.kernel, padding=cfg.kernel // 2)
        self.params = nn.Sequential(
            nn.Conv2d(cfg.features + 2 * m, cfg.hidden, 1),
            nn.SiLU(),
            nn.Conv2d(cfg.hidden, cfg.hidden, 1),
            nn.SiLU(),
            nn.Conv2d(cfg.hidden, 2 * m, 1),
        )
        # zero deltas: an untrained context is the hyperprior
        nn.init.zeros_(self.params[-1].weight)
        nn.init.zeros_(self.params[-1].bias)

    def forward(self, anchors: Tensor, means: Tensor, scales: Tensor, gain_y: Tensor) -> tuple[Tensor, Tensor]:
        """anchors: y_hat (1,M,h,w) with the non-anchors zeroed; means, scales: the hyperprior's
        (1,M,h,w); gain_y (1,M,1,1); all gained. Returns refined (means, scales), gained; only
        their non-anchor positions are meant to be used."""
        log_scales = torch.log(scales.clamp_min(1e-6))
        features = torch.cat([self.anchors(anchors / gain_y), means / gain_y, log_scales], dim=1)
        d_means, d_log_scales = self.params(features).chunk(2, dim=1)
        d_log_scales = d_log_scales.clamp(-MAX_LOG_SCALE_DELTA, MAX_LOG_SCALE_DELTA)
        return means + d_means * gain_y, scales * torch.exp(d_log_scales)
