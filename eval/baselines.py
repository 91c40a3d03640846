"""Classical image codecs as baselines at a matched rate: JPEG, WebP, AVIF, JPEG XL.

Each baseline is a `Baseline`: a name, an integer quality axis (`qualities`, higher
quality = more bytes, at least approximately), `encode(image, quality) -> bytes`,
`decode(data) -> PIL RGB image` (always the codec's own decoder), `available()` and
a one-line `description` of the library, its version and the settings (for reports).

    enc = encode_at_bpp("avif", image, 0.25)   # Encoded(data, decoded, quality, bpp, baseline)
    lowest_bpp("jxl", image)                   # the rate at the lowest quality setting

JPEG and WebP go through Pillow; AVIF and JPEG XL through imagecodecs, which is
imported lazily: without it (or with a build that lacks a codec) those baselines
report themselves unavailable, with a one-line reason, instead of failing on import.
"""

from __future__ import annotations

import io
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineUnavailable",
    "Encoded",
    "encode_at_bpp",
    "get_baseline",
    "lowest_bpp",
]


class BaselineUnavailable(RuntimeError):
    """The baseline's library (or the codec in it) is missing from this installation."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"


def _clean_rgb(image: Image.Image) -> Image.Image:
    """A plain 8-bit RGB copy: no alpha, no ICC profile or EXIF to leak into the file size."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"empty image: {image.size}")
    return Image.fromarray(np.asarray(image.convert("RGB"), dtype=np.uint8), "RGB")


def _array_to_rgb(arr: np.ndarray) -> Image.Image:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise ValueError(f"decoder returned {arr.dtype}, expected uint8")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"decoder returned an array of shape {arr.shape}")
    if arr.shape[2] in (1, 2):  # gray (+ alpha)
        arr = np.repeat(arr[..., :1], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")


class Baseline(ABC):
    """A classical codec on an integer quality axis `qualities` (a `range`, inclusive of both ends)."""

    name: str
    qualities: range

    def encode(self, image: Image.Image, quality: int) -> bytes:
        """The file for `image` (converted to plain RGB) at `quality`."""
        if isinstance(quality, bool) or int(quality) != quality or int(quality) not in self.qualities:
            raise ValueError(
                f"{self.name}: quality {quality!r} outside {self.qualities.start}..{self.qualities.stop - 1}"
            )
        return bytes(self._encode(_clean_rgb(image), int(quality)))

    def decode(self, data: bytes) -> Image.Image:
        """The codec's own decoder: an RGB image of the encoded size."""
        out = self._decode(bytes(data))
        return out.convert("RGB") if isinstance(out, Image.Image) else _array_to_rgb(out)

    def available(self) -> tuple[bool, str]:
        """(True, library versions) or (False, one-line reason).

        Checks the library and round-trips a tiny image, so a build whose encoder
        (or decoder) for this format is missing is reported here, not mid-run.
        """
        try:
            versions = self._versions()
            probe = _probe_image()
            decoded = self.decode(self.encode(probe, self.qualities[len(self.qualities) // 2]))
            if decoded.size != probe.size:
                raise RuntimeError(f"round trip changed the size {probe.size} -> {decoded.size}")
        except Exception as exc:  # any failure means: not usable here
            return False, f"{self.name} unavailable: {_one_line(exc)}"
        return True, versions

    def require(self) -> None:
        ok, reason = self.available()
        if not ok:
            raise BaselineUnavailable(reason)

    @property
    def description(self) -> str:
        """One line for reports: library and version, settings, quality axis."""
        try:
            versions = self._versions()
        except Exception as exc:
            versions = f"not installed ({_one_line(exc)})"
        return f"{self.name}: {versions}; {self._settings()}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} q={self.qualities.start}..{self.qualities.stop - 1}>"

    @abstractmethod
    def _encode(self, image: Image.Image, quality: int) -> bytes:
        """Encode a plain RGB image at a quality already checked to be in range."""

    @abstractmethod
    def _decode(self, data: bytes) -> Image.Image | np.ndarray: ...

    @abstractmethod
    def _versions(self) -> str:
        """Library versions; raises (ImportError, ...) when the library is missing."""

    @abstractmethod
    def _settings(self) -> str: ...


def _probe_image() -> Image.Image:
    yy, xx = np.mgrid[0:16, 0:16]
    arr = np.stack([xx * 16, yy * 16, (xx + yy) * 8], -1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


# ---------------------------------------------------------------------------------------------
# Pillow: JPEG, WebP


def _pillow_versions(feature: str) -> str:
    import PIL
    from PIL import features

    if not features.check(feature):
        raise ImportError(f"Pillow {PIL.__version__} was built without {feature}")
    if feature == "jpg" and features.check_feature("libjpeg_turbo"):
        lib = f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
    else:
        lib = f"{'libjpeg' if feature == 'jpg' else 'lib' + feature} {features.version(feature)}"
    return f"Pillow {PIL.__version__}, {lib}"


def _pillow_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


class JpegBaseline(Baseline):
    """Pillow JPEG: 4:2:0 chroma subsampling, optimised Huffman tables, baseline (not progressive)."""

    name = "jpeg"
    qualities = range(1, 96)

    def _encode(self, image, quality):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality, subsampling="4:2:0", optimize=True)
        return buf.getvalue()

    def _decode(self, data):
        return _pillow_decode(data)

    def _versions(self):
        return _pillow_versions("jpg")

    def _settings(self):
        return "4:2:0, optimize=True (optimised Huffman), baseline; quality 1..95 (Pillow/IJG quality)"


class WebpBaseline(Baseline):
    """Pillow WebP, lossy (lossless=False, stated explicitly), method 4 (libwebp's default effort)."""

    name = "webp"
    qualities = range(0, 101)
    method = 4

    def _encode(self, image, quality):
        buf = io.BytesIO()
        image.save(buf, "WEBP", lossless=False, quality=quality, method=self.method)
        return buf.getvalue()

    def _decode(self, data):
        return _pillow_decode(data)

    def _versions(self):
        return _pillow_versions("webp")

    def _settings(self):
        return f"lossy VP8 (lossless=False, 4:2:0), method={self.method}; quality 0..100 (libwebp quality)"


# ---------------------------------------------------------------------------------------------
# imagecodecs: AVIF, JPEG XL


def _imagecodecs(codec: str):
    """imagecodecs, checked to be built with `codec` (an attribute such as "AVIF")."""
    import imagecodecs

    if not getattr(getattr(imagecodecs, codec, None), "available", False):
        raise ImportError(f"imagecodecs {imagecodecs.__version__} was built without {codec}")
    return imagecodecs


class AvifBaseline(Baseline):
    """libavif via imagecodecs: the AOM AV1 encoder, YUV 4:2:0, 8 bit, speed 6, one thread.

    Quality is libavif's `quality` (imagecodecs' `level`), 0..99; 100 would be
    lossless, so it is left out. Speed 6 is avifenc's default: on one core a
    768x512 image takes ~0.03-0.15 s. One thread keeps the bytes reproducible
    (libaom's multi-threaded output differs slightly from its single-threaded one).
    """

    name = "avif"
    qualities = range(0, 100)
    speed = 6
    threads = 1

    def _encode(self, image, quality):
        ic = _imagecodecs("AVIF")
        return ic.avif_encode(
            np.asarray(image),
            level=quality,
            speed=self.speed,
            pixelformat=ic.AVIF.PIXEL_FORMAT.YUV420,
            codec=ic.AVIF.CODEC_CHOICE.AOM,
            bitspersample=8,
            numthreads=self.threads,
        )

    def _decode(self, data):
        return _imagecodecs("AVIF").avif_decode(data, numthreads=self.threads)

    def _versions(self):
        ic = _imagecodecs("AVIF")
        return f"imagecodecs {ic.__version__}, {ic.avif_version()} (AOM encoder)"

    def _settings(self):
        return (
            f"YUV 4:2:0, 8 bit, speed={self.speed}, {self.threads} thread; "
            "quality 0..99 (libavif quality = imagecodecs level; 100 = lossless excluded)"
        )


class JxlBaseline(Baseline):
    """libjxl via imagecodecs: lossy, effort 5 (imagecodecs' default; libjxl's is 7), one thread.

    JPEG XL's natural parameter is the Butteraugli distance (lower = better). The
    quality axis 0..99 is libjxl's own mapping, JxlEncoderDistanceFromQuality (the
    `cjxl -q` scale, imagecodecs' `level`): distance 25 at 0, 6.4 at 30, 1.0 at 90,
    0.19 at 99 (distance = 0.1 + 0.09 * (100 - q) for q >= 30). Bytes rise with it,
    with occasional tiny dips between neighbouring qualities.
    """

    name = "jxl"
    qualities = range(0, 100)
    effort = 5
    threads = 1

    def _encode(self, image, quality):
        ic = _imagecodecs("JPEGXL")
        return ic.jpegxl_encode(
            np.asarray(image), level=quality, lossless=False, effort=self.effort, numthreads=self.threads
        )

    def _decode(self, data):
        return _imagecodecs("JPEGXL").jpegxl_decode(data, numthreads=self.threads)

    def _versions(self):
        ic = _imagecodecs("JPEGXL")
        return f"imagecodecs {ic.__version__}, {ic.jpegxl_version()}"

    def _settings(self):
        return (
            f"lossy, effort={self.effort}, {self.threads} thread; quality 0..99 = cjxl -q "
            "(distance = JxlEncoderDistanceFromQuality(q): 25 at 0, 1.0 at 90)"
        )


BASELINES: dict[str, Baseline] = {
    "jpeg": JpegBaseline(),
    "webp": WebpBaseline(),
    "avif": AvifBaseline(),
    "jxl": JxlBaseline(),
}


# ---------------------------------------------------------------------------------------------
# Rate matching


@dataclass(frozen=True)
class Encoded:
    """One baseline encode: the file, its round-trip decode, the quality used and its actual rate."""

    data: bytes
    decoded: Image.Image
    quality: int
    bpp: float  # len(data) * 8 / (width * height)
    baseline: str = ""


def get_baseline(name_or_baseline: str | Baseline) -> Baseline:
    if isinstance(name_or_baseline, Baseline):
        return name_or_baseline
    try:
        return BASELINES[name_or_baseline]
    except KeyError:
        raise ValueError(f"unknown baseline {name_or_baseline!r}; known: {', '.join(BASELINES)}") from None


def _bpp(num_bytes: int, image: Image.Image) -> float:
    return num_bytes * 8.0 / (image.width * image.height)


def _finish(baseline: Baseline, image: Image.Image, data: bytes, quality: int) -> Encoded:
    decoded = baseline.decode(data)
    if decoded.size != image.size:
        raise RuntimeError(f"{baseline.name}: decoded size {decoded.size} != image size {image.size}")
    return Encoded(data=data, decoded=decoded, quality=quality, bpp=_bpp(len(data), image), baseline=baseline.name)


def encode_at_bpp(
    name_or_baseline: str | Baseline, image: Image.Image, target_bpp: float, *, at_most: bool = False
) -> Encoded:
    """The baseline's encode whose actual rate is closest to `target_bpp`.

    Bisection over the integer quality axis (rate rises with quality): at most
    ceil(log2(len(qualities) - 1)) + 2 encodes. Of all settings tried, returns the
    one closest to the target in |log(bpp / target)|, preferring the one not above
    the target on ties; with `at_most=True`, the highest rate not above the target.
    If even the lowest quality is above the target, returns that lowest-quality
    encode (its `bpp` is then > target: the caller reports it). Raises
    `BaselineUnavailable` if the baseline's library is missing.
    """
    baseline = get_baseline(name_or_baseline)
    target = float(target_bpp)
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target_bpp must be a positive finite number, got {target_bpp!r}")
    baseline.require()
    image = _clean_rgb(image)

    files: dict[int, bytes] = {}

    def rate(q: int) -> float:
        if q not in files:
            files[q] = baseline.encode(image, q)
        return _bpp(len(files[q]), image)

    lo, hi = baseline.qualities[0], baseline.qualities[-1]
    if rate(lo) >= target:  # the lowest rate is not below the target: nothing better exists
        return _finish(baseline, image, files[lo], lo)
    if rate(hi) > target:
        # Invariant: rate(lo) <= target < rate(hi).
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if rate(mid) <= target:
                lo = mid
            else:
                hi = mid

    tried = {q: rate(q) for q in files}
    if at_most:
        best = max((q for q, r in tried.items() if r <= target), key=lambda q: (tried[q], -q))
    else:
        # closest in log-ratio; on a tie the one not above the target, then the lower quality
        # (log-ratios rounded so that float noise cannot break a tie)
        best = min(tried, key=lambda q: (round(abs(math.log(tried[q] / target)), 9), tried[q] > target, q))
    return _finish(baseline, image, files[best], best)


def lowest_bpp(name_or_baseline: str | Baseline, image: Image.Image) -> float:
    """The baseline's rate at its lowest quality setting: below this it cannot go."""
    baseline = get_baseline(name_or_baseline)
    baseline.require()
    image = _clean_rgb(image)
    return _bpp(len(baseline.encode(image, baseline.qualities[0])), image)
