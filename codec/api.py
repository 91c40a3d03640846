"""`Codec`: the public Python entry point, a pipeline of stages read top to bottom.

    from codec import Codec
    c = Codec.load()
    data = c.compress(pil_image, quality=3)   # bytes of a .dpc file
    image = c.decompress(data)                # PIL RGB image, same size as the input

    compress:    image -> pad to 64 -> autoencoder E (tiles) -> latent (1,C,H/8,W/8)
                 -> entropy stage (codec/entropy): symbols -> z / y bytes -> container (bitstream/)
    decompress:  bytes -> container -> entropy stage -> coarse latent
                 -> refinement (codec/refine.py; steps as the header records, often 0) -> latent
                 -> pixel decoder on tiles (codec/tiling.py) -> crop -> image:
                    the perceptual decoder conditioned on the file's rate level by default
                    (codec/models/perceptual_decoder.py); the autoencoder's MSE decoder with
                    fidelity=True (no refinement: the highest PSNR / MS-SSIM)

Every stage loads its weights on first use. `progress(stage, done, total)` reports the
stages of a decode ("entropy", "refine", "pixels") as they start (done 0) and advance
(refinement steps, pixel tiles).
"""

import math

import torch
from PIL import Image

from bitstream import BitstreamLimits, Header, RatePoint, RefineSettings, bits_per_pixel, read_header

from .effort import EffortSearch
from .entropy import HyperpriorCodec, Symbols
from .errors import CodecError, InvalidOptionError
from .file_format import FileFormat
from .images import encodable, image_to_tensor, tensor_to_image
from .model_files import ModelBundle, load_model
from .models.taef2 import Taef2
from .options import DEFAULT_TILE, PAD_MULTIPLE, RunOptions, check_effort, check_tile
from .pixels import PixelDecoders, Taef2Pixels
from .rate import DEFAULT_QUALITY, RateScale
from .refine import NoRefiner, Refiner
from .runtime import Runners, on_device
from .shipped import shipped_weights
from .tiling import pad_to_multiple

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
        if isinstance(self.autoencoder, Taef2):  # dpc-v3: TAEF2's decoder, no diffusion prior yet
            self.refiner = NoRefiner()
            self.pixels = Taef2Pixels(self.autoencoder.decoder, self.autoencoder.tuned, self.options, self.runners)
        else:
            self.refiner = Refiner(prior_weights, self.options, self.runners)
            factor = self.autoencoder.cfg.factor
            self.pixels = PixelDecoders(self.autoencoder.decoder, factor, decoder_weights, self.options, self.runners)
        self._effort_search: EffortSearch | None = None
        # What an older shipped model needs to decode its files like this one (see `_codec_for`).
        self._stage_weights = dict(int8_table=int8_table, decoder_weights=decoder_weights)
        self._legacy: dict[int, Codec] = {}

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
        return cls(
            load_model(weights),
            limits=limits,
            prior_weights=prior_weights,
            options=run,
            int8_table=int8_table,
            decoder_weights=decoder_weights,
        )

    # -- the stages' models, each loaded on first use (refiner.prior, pixels.perceptual) ----
    def weights_sha256(self) -> dict[str, str]:
        """SHA-256 of the codec, prior and perceptual-decoder weight files (what an INT8 table is tied to)."""
        self.refiner.prior, self.pixels.perceptual  # noqa: B018 (loads them, and with them their digests)
        return {"codec": self.bundle.sha256, "prior": self.refiner.sha256, "decoder": self.pixels.sha256}

    def runner(self, name: str):
        """A decoding model ("prior", "perceptual", "plain") as it runs under the options."""
        return self.refiner.net() if name == "prior" else self.pixels.net(name)

    def warm_up(self, stages=("prior", "perceptual", "plain")) -> None:
        """Build the decoding models now (load, quantize, cast) rather than on first use."""
        for name in stages:
            if name == "prior" and isinstance(self.refiner, NoRefiner):
                continue  # weights without a diffusion prior (dpc-v3)
            self.runner(name)

    @property
    def qualities(self) -> range:
        """Trained quality levels; 1 is the lowest rate (codec/rate.py: the continuous scale)."""
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
        trained level 1..6, or any value from -3 to 8 in steps of 1/32 (codec/rate.py).
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
        if isinstance(bpp, bool) or not isinstance(bpp, (int, float)) or not 0 < bpp < 64:
            raise InvalidOptionError(f"target bpp must be a number in (0, 64), got {bpp!r}")
        effort = check_effort(effort)
        image = encodable(image, self.limits)
        latent = self._encode_rgb(image)
        pixels = image.width * image.height
        files: dict[tuple[RatePoint, int], bytes] = {}

        def bpp_of(rate: RatePoint, effort: int = 0) -> float:
            if (rate, effort) not in files:
                try:
                    settings = self.refiner.default(rate.nearest).with_overrides(**refine_overrides)
                except ValueError as exc:
                    raise InvalidOptionError(str(exc)) from None
                files[rate, effort] = self._write(image, latent, rate, settings, effort, progress)
            return bits_per_pixel(len(files[rate, effort]), pixels)

        rate = self.rates.search(bpp_of, bpp)
        if effort:
            saved = bpp_of(rate, effort) / bpp_of(rate)
            bpp_of(self.rates.search(bpp_of, bpp / saved), effort)
            rate = min((r for r, e in files if e == effort), key=lambda r: abs(math.log(bpp_of(r, effort) / bpp)))
        return files[rate, effort], rate.quality

    def _write(self, image, latent, rate: RatePoint, refine: RefineSettings, effort=0, progress=None) -> bytes:
        header = self.format.header(image.width, image.height, rate, refine)
        if not effort:
            return self.format.write(header, self.entropy.compress(latent, rate.level))
        x = pad_to_multiple(image_to_tensor(image).to(self.device), PAD_MULTIPLE)
        hook = (lambda done, total: progress("effort", done, total)) if progress else None
        with on_device(self.autoencoder.decoder, self.options), on_device(self.entropy.compressor, self.options):
            found = self.effort_search.run(x, latent, rate.level, effort, (image.height, image.width), hook)
        return self.format.write(header, self.entropy.encode(found.symbols, found.params))

    @property
    def effort_search(self) -> EffortSearch:
        """The encoder's per-image search (codec/effort.py), built on first use."""
        if self._effort_search is None:
            lambdas = self.bundle.info.get("lambdas")
            if not lambdas:
                raise InvalidOptionError(
                    "these weights record no rate-distortion trade-offs (lambdas): effort needs them"
                )
            self._effort_search = EffortSearch(self.entropy, self.autoencoder.decoder, lambdas)
        return self._effort_search

    @torch.inference_mode()
    def encode(self, image) -> torch.Tensor:
        """Image -> autoencoder latent (1,C,H_pad/8,W_pad/8), edges replicated to a multiple of 64;
        on tiles for large images (flat memory)."""
        return self._encode_rgb(encodable(image, self.limits))

    def _encode_rgb(self, image: Image.Image) -> torch.Tensor:
        x = pad_to_multiple(image_to_tensor(image).to(self.device), PAD_MULTIPLE)
        with on_device(self.autoencoder.encoder, self.options):
            return self.autoencoder.encode_tiled(x, ENCODE_TILE)

    @torch.inference_mode()
    def analyse(self, image, quality: float = DEFAULT_QUALITY) -> Symbols:
        """Image -> the integer symbols compress() entropy-codes."""
        return self.entropy.analyse(self.encode(image), self.rates.point(quality).level)[0]

    def write_symbols(self, header: Header, symbols: Symbols) -> bytes:
        """Symbols -> a .dpc file, as compress() writes them (the inverse of decode_symbols; fuzzing, tests),
        with the weights the header's model id names (these, or an older shipped model's)."""
        codec = self._codec_for_model(header.model_id)
        params = codec.entropy.parameters(symbols, header.level)
        return codec.format.write(header, codec.entropy.encode(symbols, params))

    @torch.inference_mode()
    def latent_pairs(self, image, qualities=None) -> tuple[torch.Tensor, dict]:
        """Image -> (autoencoder latent, {quality: the coarse latent decompress() reconstructs}),
        both (1,C,H_pad/8,W_pad/8), without the (lossless) bytes in between (training, evaluation)."""
        latent = self.encode(image)
        points = {q: self.rates.point(q).level for q in qualities or self.qualities}
        coarse = self.entropy.forward(latent, sorted(set(points.values())))
        return latent, {q: coarse[level] for q, level in points.items()}

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
        tile: int = DEFAULT_TILE,
        fidelity: bool = False,
        progress=None,
    ) -> Image.Image:
        """Bytes of a .dpc file -> RGB PIL image of the original width and height.

        Default: the perceptual decoder draws the latent, refined first as the header records;
        each refinement keyword that is not None overrides the header (steps=0: no refinement).
        fidelity=True: the autoencoder's MSE decoder without refinement, the highest PSNR /
        MS-SSIM (refinement keywords are then refused). `tile`: pixel-decoding tile side in px
        (0 = no tiling). The same file, options and device give identical pixels.
        """
        codec = self._codec_for(data)
        if codec is not self:
            return codec.decompress(
                data, steps=steps, sampler=sampler, guidance=guidance, seed=seed, start=start,
                early_exit=early_exit, tile=tile, fidelity=fidelity, progress=progress,
            )  # fmt: skip
        tile = check_tile(tile)
        overrides = dict(steps=steps, sampler=sampler, guidance=guidance, seed=seed, start=start, early_exit=early_exit)
        given = [k for k, v in overrides.items() if v is not None]
        if fidelity and given:
            raise InvalidOptionError(f"fidelity decoding does not refine; drop {', '.join(given)}")
        header, latent = self.decode_latent(data, progress)
        if not fidelity:
            try:
                settings = header.refine.with_overrides(**overrides)
            except ValueError as exc:
                raise InvalidOptionError(str(exc)) from None
            latent = self.refiner.refine(latent, header.quality, settings, bool(tile), progress)
        x = self.pixels.decode(latent, tile, None if fidelity else header.level, progress)
        return tensor_to_image(x[..., : header.height, : header.width])

    @torch.inference_mode()
    def decode_latent(self, data: bytes, progress=None) -> tuple[Header, torch.Tensor]:
        """Bytes -> (header, coarse latent (1, C, H_pad/8, W_pad/8))."""
        if (codec := self._codec_for(data)) is not self:
            return codec.decode_latent(data, progress)
        progress = progress or (lambda *_: None)
        progress("entropy", 0, 1)
        header, symbols, params = self._decode(data)
        latent = self.entropy.synthesise(symbols.y, params, header.level)
        progress("entropy", 1, 1)
        return header, latent

    @torch.inference_mode()
    def decode_symbols(self, data: bytes) -> tuple[Header, Symbols]:
        """Bytes -> (header, symbols), checked against the container's symbol check."""
        if (codec := self._codec_for(data)) is not self:
            return codec.decode_symbols(data)
        header, symbols, _ = self._decode(data)
        return header, symbols

    @torch.inference_mode()
    def quantized_latent(self, data: bytes) -> torch.Tensor:
        """Bytes -> y_hat = symbols + means (1, M, H/16, W/16), float64, in the gained domain:
        bit-identical on every device, or an error."""
        if (codec := self._codec_for(data)) is not self:
            return codec.quantized_latent(data)
        _, symbols, params = self._decode(data)
        return self.entropy.compressor.quantized_latent(torch.from_numpy(symbols.y), params)

    def _codec_for(self, data) -> "Codec":
        """The codec that decodes this file: this one, or, when this one runs the shipped weights,
        the older shipped weights whose model id the file names (so old files decode as before).
        Anything else is left to this codec's checks (and their one-line errors)."""
        if not self.bundle.shipped or not isinstance(data, (bytes, bytearray, memoryview)):
            return self
        try:
            model_id = read_header(data, self.limits)[0].model_id
        except CodecError:
            return self
        return self._codec_for_model(model_id)

    def _codec_for_model(self, model_id: int) -> "Codec":
        """This codec, or (when this one runs the shipped weights) the older shipped model with that id."""
        if model_id == self.model_id or not self.bundle.shipped:
            return self
        if model_id not in self._legacy:
            path = shipped_weights(model_id)
            if path is None:
                return self
            legacy = Codec(load_model(path), limits=self.limits, options=self.options, **self._stage_weights)
            # INT8 tables are calibrated for the default weights; an older model's files use that one
            legacy.runners.digests = self.weights_sha256
            if type(legacy.autoencoder) is type(self.autoencoder):  # the same latent space: one prior
                legacy.refiner = self.refiner
            self._legacy[model_id] = legacy
        return self._legacy[model_id]

    def _decode(self, data: bytes):
        container = self.format.read(data)
        header = container.header
        z_shape = self.entropy.z_shape(*self.format.latent_size(header, self.autoencoder.cfg.factor))
        return (header, *self.entropy.decode(container, z_shape, header.level))

    @torch.inference_mode()
    def refine_latent(self, coarse, quality: int, settings: RefineSettings, tile: int = DEFAULT_TILE, progress=None):
        """Coarse latent (1,C,h,w) -> refined latent with the diffusion prior (unchanged if steps 0)."""
        self.rates.check(RatePoint(quality), CodecError)
        return self.refiner.refine(coarse, quality, settings, bool(check_tile(tile)), progress)

    @torch.inference_mode()
    def decode_pixels(self, latent, tile: int = DEFAULT_TILE, level: float | None = None, progress=None):
        """Latent (1,C,h,w) -> image tensor (1,3,8h,8w), on overlapping tiles of `tile` px.

        level None: the fidelity (autoencoder) decoder. A 0-based rate level (a file's
        `header.level`, between and beyond the trained levels too): the perceptual decoder
        conditioned on it.
        """
        return self.pixels.decode(latent, check_tile(tile), level, progress)
