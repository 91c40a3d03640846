"""RGB PIL images <-> the (1, 3, H, W) float tensors in [0, 1] the models take and give.

Apart from codec/images.py, so that reading and checking an image needs no torch (the CLI refuses
a bad image before it imports it).
"""

import numpy as np
import torch
from PIL import Image


def image_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (1, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) float in [0, 1] -> RGB PIL image (rounded, clamped)."""
    arr = (x[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")
