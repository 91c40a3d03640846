"""`Codec`: the public Python entry point, a pipeline of stages read top to bottom.

    from codec import Codec
    c = Codec.load()
    data = c.compress(pil_image, quality=3)   # bytes of a .dpc file
    image = c.decompress(data)                # PIL RGB image, same size as the input

    compress:    image -> canvas (centred, padded to 64) -> autoencoder E (tiles) -> latent (1,C,H/8,W/8)
                 -> entropy stage (codec/entropy): symbols -> z / y bytes -> container (bitstream/)
    decompress:  bytes -> container -> entropy stage -> coarse latent
                 -> refinement (codec/refinement.py; steps as the header records, often 0) -> latent
                 -> pixel decoder on tiles (codec/tiling.py) -> crop the canvas -> image:
                    the perceptual decoder conditioned on the file's rate level by default
                    (codec/models/perceptual_decoder.py); the autoencoder's MSE decoder with
                    fidelity=True (no refinement: the highest PSNR / MS-SSIM)

Every stage loads its weights on first use. `progress(stage, done, total)` reports the
stages of a decode ("entropy", "refine", "pixels") as they start (done 0) and advance
(refinement steps, pixel tiles).
"""

import functools

import torch
from PIL import Image

from bitstream import BitstreamLimits, Header, RatePoint, RefineSettings, read_header

from .bpp_target import search_bpp
from .canvas import Canvas
from .effort import EffortSearch
from .entropy import HyperpriorCodec, Symbols
from .file_format import FileFormat
from .image_tensors import image_to_tensor, tensor_to_image
from .images import encodable
from .model_files import ModelBundle, load_model
from .models.taef2 import Taef2
from .older_models import OlderModels
from .options import DEFAULT_TILE, RunOptions, check_effort, check_fidelity, check_tile, with_overrides
from .pixels import PixelDecoders, Taef2Pixels
from .placement import on_device
from .quality_scale import DEFAULT_QUALITY, RateScale
from .refinement import NoRefiner, OneStepRefiner, Refiner, refiner_side
from .runners import Runners
from .stages import Stages

__all__ = ["DEFAULT_QUALITY", "Codec", "Symbols"]

ENCODE_TILE = 1024  # image px: encoder tiles (the autoencoder's encode_tiled)


class Codec:
    """Compress PIL images to `.dpc` bytes and back with one set of shipped weights."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: str = "cpu",
        limits: BitstreamLimits | None = None,
        prior_weights=None,
        options: RunOptions | None = None,
        int8_table=None,
        decoder_weights=None,
    ):
        """`options` (codec/options.py) say how decoding runs; without them, fp32 on `device`."""
        self.bundle = bundle
        self.options = options if options is not None else RunOptions(device=str(device))
        self.device = torch.device(self.options.device)
        self.limits = limits or BitstreamLimits()
        self.autoencoder = bundle.autoencoder.to(self.options.home)
        self.entropy = HyperpriorCodec(bundle.compressor, self.options)
        self.rates = RateScale(self.entropy.levels)
        self.format = FileFormat(bundle.model_id, self.rates, self.limits, two_pass=self.entropy.has_context)
        self.runners = Runners(self.options, int8_table, self.weights_sha256)
        self.refiner, self.pixels = decode_stages(
            self.autoencoder, self.runners, prior_weights, decoder_weights, bundle.refiner
        )
        self._older = OlderModels(self, dict(int8_table=int8_table, decoder_weights=decoder_weights))

    @classmethod
    def load(
        cls,
        weights=None,
        device="cpu",
        max_pixels=None,
        prior_weights=None,
        *,
        int8_table=None,
        decoder_weights=None,
        **options,
    ) -> "Codec":
        """Load the shipped weights, or given .safetensors files (`weights`, `prior_weights`, `decoder_weights`).

        `options`: codec/options.py's RunOptions fields (dtype, int8, offload, compile, channels_last,
        attention); `int8_table`: another INT8 calibration table than the shipped one.
        """
        limits = BitstreamLimits() if max_pixels is None else BitstreamLimits(max_pixels=max_pixels)
        run = RunOptions(device=str(device), **options)
        stage_weights = dict(prior_weights=prior_weights, int8_table=int8_table, decoder_weights=decoder_weights)
        return cls(load_model(weights), limits=limits, options=run, **stage_weights)

    def weights_sha256(self) -> dict[str, str]:
        """SHA-256 of the codec, prior and perceptual-decoder weight files (what an INT8 table is tied to)."""
        self.refiner.prior, self.pixels.perceptual  # noqa: B018 (loads them, and with them their digests)
        return {"codec": self.bundle.sha256, "prior": self.refiner.sha256, "decoder": self.pixels.sha256}

    def warm_up(self, stages=("prior", "perceptual", "plain")) -> None:
        """Build the decoding models now (load, quantize, cast) rather than on first use."""
        for name in stages:
            if name == "prior" and not isinstance(self.refiner, Refiner):
                continue  # weights without a diffusion prior (dpc-v3)
            self.stages.runner(name)

    @property
    def qualities(self) -> range:
        """Trained quality levels; 1 is the lowest rate (codec/quality_scale.py: the continuous scale)."""
        return self.rates.qualities

    @property
    def model_id(self) -> int:
        return self.bundle.model_id

    def default_refine(self, quality: float) -> RefineSettings:
        """The refinement compress() records at this quality: the nearest trained level's measured default."""
        return self.refiner.default(self.rates.point(quality).nearest)

    # -- compress --------------------------------------------------------------------
    @torch.inference_mode()
    def compress(
        self,
        image,
        quality: float = DEFAULT_QUALITY,
        refine: RefineSettings | None = None,
        *,
        effort: int = 0,
        progress=None,
    ) -> bytes:
        """Image -> bytes of a .dpc file.

        `image`: a PIL image (any mode; see codec.images), an (H, W) or (H, W, 3) uint8 numpy
        array, or a path to an image file; anything else is an ImageReadError. `quality`: a
        trained level 1..6, or any value from -3 to 8 in steps of 1/32 (codec/quality_scale.py).
        `refine`: the decoder settings to record (default: `default_refine`; steps 0 records none).
        `effort` 0..9: per-image search of the latent for the level's rate-distortion trade-off
        (codec/effort.py; 0 = one pass); slower, smaller for the same quality, decodes as any file.
        `progress(stage, done, total)`: the "effort" search as it advances.
        """
        effort = check_effort(effort)
        rate = self.rates.point(quality)
        image = encodable(image, self.limits)
        settings = refine if refine is not None else self.refiner.default(rate.nearest)
        return self._write(image, self._encode_rgb(image), rate, settings, effort, progress)

    @torch.inference_mode()
    def compress_to_bpp(self, image, bpp: float, *, effort: int = 0, progress=None, **refine_overrides):
        """Image -> (bytes of the .dpc file whose rate, file bytes x 8 / pixels, is nearest `bpp`; its quality).

        The autoencoder runs once; the quality is searched on the continuous scale
        (RateScale.search). The header records the nearest level's default refinement with
        `refine_overrides` (e.g. steps=4) applied. With `effort`, the search runs on one-pass
        files, then the effort search at most twice: at that quality, and at the quality whose
        one-pass rate is the target scaled by what the first search saved.
        """
        return search_bpp(self, image, bpp, check_effort(effort), progress, refine_overrides)

    def _write(self, image, latent, rate: RatePoint, refine: RefineSettings, effort=0, progress=None) -> bytes:
        header = self.format.header(image.width, image.height, rate, refine)
        if not effort:
            return self.format.write(header, self.entropy.compress(latent, rate.level))
        found = self.effort_search.run_on_image(image, latent, rate.level, effort, self.options, progress)
        return self.format.write(header, self.entropy.encode(found.symbols, found.params))

    @functools.cached_property
    def effort_search(self) -> EffortSearch:
        """The encoder's per-image search (codec/effort.py), built on first use."""
        return EffortSearch.for_weights(self.entropy, self.autoencoder.decoder, self.bundle.info.get("lambdas"))

    @torch.inference_mode()
    def encode(self, image) -> torch.Tensor:
        """Image -> autoencoder latent (1,C,H_pad/8,W_pad/8) of its canvas: the image centred, its
        edges replicated to a multiple of 64 (codec/canvas.py); on tiles for large images (flat memory)."""
        return self._encode_rgb(encodable(image, self.limits))

    def _encode_rgb(self, image: Image.Image) -> torch.Tensor:
        x = Canvas(image.height, image.width).pad(image_to_tensor(image).to(self.device))
        with on_device(self.autoencoder.encoder, self.options):
            return self.autoencoder.encode_tiled(x, ENCODE_TILE)

    # -- decompress ------------------------------------------------------------------
    def read_header(self, data: bytes) -> Header:
        """Validate and return a .dpc file's header (no decoding)."""
        return read_header(data, self.limits)[0]

    @torch.inference_mode()
    def decompress(
        self,
        data: bytes,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        start: float | None = None,
        early_exit: float | None = None,
        realism: float | None = None,
        tile: int = DEFAULT_TILE,
        fidelity: bool = False,
        progress=None,
    ) -> Image.Image:
        """Bytes of a .dpc file -> RGB PIL image of the original width and height.

        Default: the perceptual decoder draws the latent, refined first as the header records;
        each refinement keyword that is not None overrides the header (steps=0: no refinement).
        realism (0..1; None: the weights' default): for dpc-v3 weights whose refiner has a realism
        input, 0 the lowest distortion, 1 the most realistic texture (codec/models/latent_refiner.py).
        fidelity=True: the autoencoder's MSE decoder without refinement, the highest PSNR /
        MS-SSIM (refinement keywords are then refused). `tile`: pixel-decoding tile side in px
        (0 = no tiling). The same file, options and device give identical pixels.
        """
        tile = check_tile(tile)
        overrides = dict(steps=steps, sampler=sampler, guidance=guidance, seed=seed, start=start, early_exit=early_exit)
        check_fidelity(fidelity, overrides | dict(realism=realism))
        codec, header, symbols, params = self._open(data, progress)
        latent = codec.entropy.synthesise(symbols.y, params, header.level)
        (progress or (lambda *_: None))("entropy", 1, 1)
        if not fidelity:
            settings = with_overrides(header.refine, overrides)
            side = refiner_side(header, params) | dict(realism=realism)
            latent = codec.refiner.refine(latent, header.quality, settings, bool(tile), progress, **side)
        x = codec.pixels.decode(latent, tile, None if fidelity else header.level, progress)
        return tensor_to_image(Canvas.of_header(header).crop(x))

    @property
    def stages(self) -> "Stages":
        """The stages one at a time, for scripts, tests and evaluation (codec/stages.py)."""
        return Stages(self)

    def _open(self, data: bytes, progress=None) -> tuple["Codec", Header, Symbols, object]:
        """Bytes -> (the codec whose weights made the file: this one or an older shipped model,
        header, symbols, entropy parameters). The header is parsed once."""
        container = self.format.parse(data)
        codec = self._for_model(container.header.model_id)
        codec.format.check(container)
        if progress:
            progress("entropy", 0, 1)
        header = container.header
        z_shape = codec.entropy.z_shape(*codec.format.latent_size(header, codec.autoencoder.cfg.factor))
        return (codec, header, *codec.entropy.decode(container, z_shape, header.level))

    def _for_model(self, model_id: int) -> "Codec":
        """This codec, or (when this one runs the shipped weights) the older shipped model with that id."""
        if model_id == self.model_id or not self.bundle.shipped:
            return self
        return self._older.get(model_id) or self


def decode_stages(autoencoder, runners, prior_weights=None, decoder_weights=None, latent_refiner=None):
    """(refiner, pixel decoders) for a codec's autoencoder: TAEF2's (dpc-v3: the codec file's
    one-step latent refiner, if it has one), or our autoencoder's with its prior and perceptual decoder."""
    if isinstance(autoencoder, Taef2):
        refiner = NoRefiner() if latent_refiner is None else OneStepRefiner(latent_refiner, runners.options, runners)
        return refiner, Taef2Pixels(autoencoder.decoder, autoencoder.tuned, runners.options, runners)
    refiner = Refiner(prior_weights, runners.options, runners)
    decoders = PixelDecoders(autoencoder.decoder, autoencoder.cfg.factor, decoder_weights, runners.options, runners)
    return refiner, decoders
