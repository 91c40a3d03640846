"""Small helpers shared by the test modules (import as `from helpers import ...`)."""

import binascii
import io
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def with_crc(data: bytes) -> bytes:
    """Recompute a .dpc file's trailer CRC (CRC-16/CCITT-FALSE, little-endian, last 2 bytes)."""
    body = bytes(data[:-2])
    return body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF))


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def sigint_default() -> None:
    """Popen's preexec_fn for the Ctrl-C tests: SIGINT at its default, as in a terminal. A suite
    started in the background (`cmd &`) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tree(folder: Path) -> set[str]:
    """Every entry below `folder` (files, folders, hidden `.part` temp files), as relative paths."""
    folder = Path(folder)
    out = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(root, name), folder))
    return out


def encode(image: Image.Image, fmt: str, **save_args) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save_args)
    return buf.getvalue()


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    mse = np.mean((x - y) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def make_smooth(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus a little low-amplitude texture (a photo-like test image)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    w, h = max(width - 1, 1), max(height - 1, 1)
    rgb = np.stack([40 + 180 * xx / w, 30 + 190 * yy / h, 120 + 60 * np.sin(2 * np.pi * (xx / w + yy / h))], -1)
    rgb += np.random.default_rng(seed).normal(0, 3, rgb.shape)
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB")


def make_textured(width: int = 128, height: int = 96) -> Image.Image:
    """A real photo (scikit-image's bundled astronaut), downscaled: edges, texture, a face."""
    from skimage import data, transform

    small = transform.resize(data.astronaut(), (height, width), anti_aliasing=True)
    return Image.fromarray(np.round(small * 255).astype(np.uint8), "RGB")


def representable_refine_settings():
    """Hypothesis strategy: RefineSettings whose values the 3/6-9-byte decoder hints hold exactly."""
    from hypothesis import strategies as st

    from bitstream import SAMPLERS, RefineSettings

    return st.builds(
        RefineSettings,
        steps=st.integers(0, 100),
        sampler=st.sampled_from(SAMPLERS),
        guidance=st.integers(0, 255).map(lambda g: g / 10),
        seed=st.integers(0, (1 << 28) - 1),
        start=st.integers(1, 100).map(lambda p: p / 100),
        early_exit=st.integers(0, 255).map(lambda e: e / 1000),
    )


def short_png(width: int, height: int, rows: int) -> bytes:
    """A PNG whose (complete) zlib stream holds only `rows` of the `height` rows its header claims."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = np.asarray(make_smooth(width, rows))
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def decodes_exactly_or_is_refused(encoder, decoder, image, quality) -> str:
    """ "exact" if `decoder` reads `encoder`'s file to its exact symbols and latent, "refused" if it
    refuses it (a CodecError); silently different symbols or latent fail the calling test."""
    import torch

    from codec import CodecError

    data = encoder.compress(image, quality)
    expected = encoder.stages.analyse(image, quality)
    try:
        _, got = decoder.stages.decode_symbols(data)
    except CodecError:
        return "refused"
    assert np.array_equal(got.z, expected.z) and np.array_equal(got.y, expected.y), "silently wrong symbols"
    latents = encoder.stages.quantized_latent(data), decoder.stages.quantized_latent(data)
    assert torch.equal(*latents), "silently wrong latent"
    return "exact"
