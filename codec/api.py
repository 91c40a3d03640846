"""`Codec`: the public Python entry point.

    from codec import Codec
    c = Codec.load()
    data = c.compress(pil_image, quality=3)   # bytes of a .dpc file
    image = c.decompress(data)                # PIL RGB image, same size as the input

Data flow (see codec/autoencoder.py and codec/compressor.py for the stages):

    image -> pad to a multiple of 64 -> E -> latent -> compressor -> symbols
          -> bitstream (constriction + container) -> bytes
    bytes -> container -> z symbols -> entropy parameters -> y symbols
          -> coarse latent -> diffusion prior (steps as the file records, often 0;
             codec/sampling.py) -> latent_hat
          -> pixel decoder on overlapping tiles (codec/tiling.py) -> crop -> image:
             the perceptual decoder, conditioned on the file's rate level, by default
             (codec/perceptual_decoder.py); the autoencoder's own MSE decoder with
             fidelity=True (no refinement: the highest PSNR / MS-SSIM)

The refinement settings the encoder intends travel in the header (bitstream/hints.py);
decompress() uses them unless told otherwise.
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bitstream import (
    FORMAT_VERSION,
    RATE_OFFSET_VERSION,
    RATE_STEPS,
    BitstreamLimits,
    Container,
    Header,
    RefineSettings,
    decode_symbols,
    encode_symbols,
    pack_hints,
    read_container,
    read_header,
    symbol_check,
    write_container,
)

from .compressor import HyperParams
from .errors import (
    BitstreamError,
    CodecError,
    DecoderDesyncError,
    ImageTooLargeError,
    InvalidOptionError,
    ModelMismatchError,
)
from .images import as_image, image_to_tensor, tensor_to_image, to_rgb
from .model_files import (
    DEFAULT_DECODER_WEIGHTS,
    DEFAULT_PRIOR_WEIGHTS,
    ModelBundle,
    load_decoder,
    load_model,
    load_prior,
    read_prior_config,
)
from .perceptual_decoder import PerceptualDecoder
from .prior import LatentPrior
from .runtime import Runner, RunOptions, on_device, prepare, set_attention
from .tiling import tile_map

PAD_MULTIPLE = 64  # autoencoder 8 x compressor 2 x hyperprior 4
# Rates beyond the trained levels: gains extrapolated this many levels below the first
# and above the last (docs/rates.md measures them).
RATE_EXTRAPOLATION = (4, 2)
DEFAULT_QUALITY = 3
# Tiles (image px). The decoder's receptive field is under 8 latent px and the encoder's
# under 64 px, so a halo of that much context makes tiles agree with an untiled run.
DEFAULT_TILE = 512  # pixel decoding; 0 = no tiling anywhere
DECODE_HALO, DECODE_OVERLAP = 8, 8  # latent px (the fidelity decoder; the perceptual one has its own halo)
ENCODE_TILE, ENCODE_HALO, ENCODE_OVERLAP = 1024, 64, 64  # image px
# The prior sees a wide context (mid-block attention), so it is tiled only beyond
# 2048 px; its tiles overlap by 32 latent px and carry 32 px of halo.
PRIOR_TILE, PRIOR_HALO, PRIOR_OVERLAP = 256, 32, 32  # latent px


@dataclass(frozen=True)
class Symbols:
    """Everything the entropy coder carries for one image (all int32 arrays)."""

    z: np.ndarray  # (1, Z, H/64, W/64) hyper-latent symbols
    y: np.ndarray  # (1, M, H/16, W/16) latent symbols


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
        """`options` (codec/runtime.py) say how decoding runs; without them, fp32 on `device`."""
        self.bundle = bundle
        self.prior_weights = prior_weights if prior_weights is not None else DEFAULT_PRIOR_WEIGHTS
        self.decoder_weights = decoder_weights if decoder_weights is not None else DEFAULT_DECODER_WEIGHTS
        self.options = options if options is not None else RunOptions(device=str(device))
        self.int8_table = int8_table
        self._prior: LatentPrior | None = None  # loaded on first refinement
        self._prior_cfg = None  # its config, read once from the file's metadata
        self._prior_sha256 = ""
        self._perceptual: PerceptualDecoder | None = None  # loaded on first perceptual decode
        self._decoder_sha256 = ""
        self._runners: dict[str, Runner] = {}  # decoding models as they run: prior, perceptual, plain
        self.device = torch.device(self.options.device)
        self.limits = limits or BitstreamLimits()
        self.autoencoder = bundle.autoencoder.to(self.options.home)
        self.compressor = bundle.compressor.to(self.options.home)
        # The entropy parameters decide how every y symbol is decoded, so encoder and
        # decoder must derive the same table indexes from z. They are computed on the
        # CPU in float64 whatever `device` is: a GPU's convolutions (TF32 by default)
        # round differently from a CPU's and would make files undecodable elsewhere.
        self._entropy_parameters = copy.deepcopy(bundle.compressor).to("cpu", torch.float64)
        self._z_tables = self.compressor.z_tables()
        self._y_tables = self.compressor.y_tables()

    @classmethod
    def load(
        cls,
        weights=None,
        device: str = "cpu",
        max_pixels: int | None = None,
        prior_weights=None,
        *,
        dtype: str = "fp32",
        int8: bool = False,
        offload: bool = False,
        compile: bool = False,
        channels_last: bool = False,
        attention: str = "sdpa",
        int8_table=None,
        decoder_weights=None,
    ) -> "Codec":
        """Load the shipped weights (or given .safetensors files: codec, diffusion prior,
        perceptual decoder `decoder_weights`).

        The keywords after `prior_weights` are the deployment options of codec/runtime.py
        (dtype "fp32"/"fp16"/"bf16", int8, offload, compile, channels_last, attention
        "sdpa"/"eager"); `int8_table`: another INT8 calibration table than the shipped one.
        """
        options = RunOptions(
            device=str(device),
            dtype=dtype,
            int8=int8,
            offload=offload,
            compile=compile,
            channels_last=channels_last,
            attention=attention,
        )
        limits = BitstreamLimits() if max_pixels is None else BitstreamLimits(max_pixels=max_pixels)
        return cls(
            load_model(weights),
            limits=limits,
            prior_weights=prior_weights,
            options=options,
            int8_table=int8_table,
            decoder_weights=decoder_weights,
        )

    @property
    def prior(self) -> LatentPrior:
        """The diffusion prior as loaded (fp32; loaded from `prior_weights` on first use)."""
        if self._prior is None:
            bundle = load_prior(self.prior_weights)
            self._prior, self._prior_sha256 = bundle.prior.to(self.options.home), bundle.sha256
        return self._prior

    @property
    def perceptual_decoder(self) -> PerceptualDecoder:
        """The perceptual pixel decoder as loaded (fp32; loaded from `decoder_weights` on first use)."""
        if self._perceptual is None:
            bundle = load_decoder(self.decoder_weights)
            self._perceptual, self._decoder_sha256 = bundle.decoder.to(self.options.home), bundle.sha256
        return self._perceptual

    def _runner(self, name: str) -> Runner:
        """A decoding model ("prior", "perceptual", "plain") as it runs under self.options."""
        if name not in self._runners:
            if name == "prior":
                module = self.prior
                set_attention(module.unet, self.options.attention)
            else:
                module = self.perceptual_decoder if name == "perceptual" else self.autoencoder.decoder
            if self.options.int8:
                try:
                    from .quantization import load_table, quantize
                except ImportError as exc:  # torch.ao.quantization is deprecated upstream
                    raise CodecError(f"INT8 decoding needs torch.ao.quantization, missing here: {exc}") from None

                table = load_table(self.int8_table, self.weights_sha256())
                module = quantize(name, module, table)
            self._runners[name] = Runner(prepare(module, self.options), self.options)
        return self._runners[name]

    def weights_sha256(self) -> dict[str, str]:
        """SHA-256 of the codec, prior and perceptual-decoder weight files (what an INT8 table is tied to)."""
        self.prior  # noqa: B018 (loads it, and with it its digest)
        self.perceptual_decoder  # noqa: B018
        return {"codec": self.bundle.sha256, "prior": self._prior_sha256, "decoder": self._decoder_sha256}

    def warm_up(self, stages=("prior", "perceptual", "plain")) -> None:
        """Build the decoding models now (load, quantize, cast) rather than on first use."""
        for name in stages:
            self._runner(name)

    def default_refine(self, quality: int) -> RefineSettings:
        """The refinement compress() writes into a file of this quality (measured per level,
        recorded in the prior's weight file; between levels, the nearest level's)."""
        level = self.rate_point(quality)[0] - 1
        if self._prior_cfg is None:
            self._prior_cfg = self._prior.cfg if self._prior is not None else read_prior_config(self.prior_weights)
        cfg = self._prior_cfg
        return RefineSettings(
            steps=cfg.default_steps[level], sampler=cfg.default_sampler, guidance=cfg.default_guidance
        )

    @property
    def qualities(self) -> range:
        """Valid quality levels; 1 is the lowest rate."""
        return range(1, self.compressor.cfg.levels + 1)

    @property
    def model_id(self) -> int:
        return self.bundle.model_id

    # -- compress --------------------------------------------------------------------
    @torch.inference_mode()
    def compress(self, image, quality: float = DEFAULT_QUALITY, refine: RefineSettings | None = None) -> bytes:
        """Image -> bytes of a .dpc file.

        `image`: a PIL image (any mode; see codec.images), an (H, W) or (H, W, 3) uint8
        numpy array, or a path to an image file; anything else is an ImageReadError.

        `quality`: a trained level 1..6, or any value from -3 to 8 in steps of 1/32 for
        rates between and beyond them (see rate_point(); such files are format version 3).
        `refine`: the decoder settings to record in the header (default: the nearest
        level's measured default, `default_refine`); steps 0 records none (no refinement).
        """
        nearest, offset = self.rate_point(quality)
        image = self._encodable(image)
        latent = self._encode(self._padded(image))
        return self._code(
            image, latent, nearest, offset, refine if refine is not None else self.default_refine(nearest)
        )

    @property
    def rate_levels(self) -> tuple[int, int]:
        """The 0-based levels the rate scale spans: trained 0..L-1, extrapolated beyond."""
        return -RATE_EXTRAPOLATION[0], self.compressor.cfg.levels - 1 + RATE_EXTRAPOLATION[1]

    def rate_point(self, quality: float) -> tuple[int, int]:
        """quality -> (nearest trained quality, rate offset in 1/32 level); CodecError if out of range.

        Trained levels are the integers 1..6; between them the gains are interpolated,
        and up to 4 levels below the first and 2 above the last they are extrapolated.
        """
        if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)):
            raise InvalidOptionError(f"quality must be a number, got {quality!r}")
        low, high = (level + 1 for level in self.rate_levels)
        if not low <= quality <= high:  # also refuses nan
            raise InvalidOptionError(
                f"quality must be between {low} and {high} "
                f"(1..{self.compressor.cfg.levels} are trained), got {quality!r}"
            )
        steps = round((float(quality) - 1) * RATE_STEPS)  # on the 1/32 grid
        nearest = min(max(round(steps / RATE_STEPS) + 1, 1), self.compressor.cfg.levels)
        return nearest, steps - (nearest - 1) * RATE_STEPS

    def _code(self, image, latent, quality: int, offset: int, refine: RefineSettings) -> bytes:
        """Latent of `image` -> .dpc bytes at trained `quality` + `offset`/32 levels."""
        with on_device(self.compressor, self.options):
            symbols, params = self._symbols(latent, quality - 1 + offset / RATE_STEPS)
        header = Header(
            width=image.width,
            height=image.height,
            quality=quality,
            model_id=self.model_id,
            hints=pack_hints(refine) if refine.steps else b"",
            version=RATE_OFFSET_VERSION if offset else FORMAT_VERSION,
            rate_offset=offset,
        )
        return self._write(header, symbols, params)

    @torch.inference_mode()
    def compress_to_bpp(self, image: Image.Image, bpp: float, **refine_overrides) -> tuple[bytes, float]:
        """Image -> (bytes of the .dpc file whose rate is nearest `bpp`, its quality).

        Rate is the file's size x 8 / pixels (header included). The autoencoder runs once;
        the rate is searched over the continuous quality scale (-3..8 in steps of 1/32):
        every integer first, then bisection between the two that bracket the target.
        A target beyond reach gives the end of the scale. The header records the nearest
        level's default refinement with `refine_overrides` (e.g. steps=4) applied.
        """
        if isinstance(bpp, bool) or not isinstance(bpp, (int, float)) or not 0 < bpp < 64:
            raise InvalidOptionError(f"target bpp must be a number in (0, 64), got {bpp!r}")
        image = self._encodable(image)
        latent = self._encode(self._padded(image))
        pixels = image.width * image.height
        tried: dict[int, bytes] = {}  # grid step -> file

        def rate(step: int) -> float:
            if step not in tried:
                nearest, offset = self.rate_point(1 + step / RATE_STEPS)
                try:
                    settings = self.default_refine(nearest).with_overrides(**refine_overrides)
                except ValueError as exc:
                    raise InvalidOptionError(str(exc)) from None
                tried[step] = self._code(image, latent, nearest, offset, settings)
            return len(tried[step]) * 8 / pixels

        low, high = self.rate_levels
        grid = [k * RATE_STEPS for k in range(low, high + 1)]
        below = [g for g in grid if rate(g) <= bpp]
        a = below[-1] if below else grid[0]
        b = next((g for g in grid if g > a and rate(g) > bpp), a)
        while b - a > 1:  # rate grows with the level: bisect on the grid
            mid = (a + b) // 2
            a, b = (mid, b) if rate(mid) <= bpp else (a, mid)
        step = min(tried, key=lambda k: abs(np.log(rate(k) / bpp)))
        return tried[step], 1 + step / RATE_STEPS

    def write_symbols(self, header: Header, symbols: Symbols) -> bytes:
        """Entropy-code given symbols into a .dpc file, exactly as compress() does after analyse().

        The inverse of decode_symbols(): for tools that make files from symbols (fuzzing, tests).
        """
        params = self._entropy_parameters.hyper_params(torch.from_numpy(symbols.z), header.level)
        return self._write(header, symbols, params)

    def _write(self, header: Header, symbols: Symbols, params: HyperParams) -> bytes:
        z_data = encode_symbols(symbols.z, self._z_indexes(symbols.z.shape), self._z_tables)
        y_data = encode_symbols(symbols.y, params.indexes.cpu().numpy(), self._y_tables)
        return write_container(
            Container(
                header=header,
                z_data=z_data,
                y_data=y_data,
                symbol_check=symbol_check(symbols.z, symbols.y, *params.check_arrays()),
            )
        )

    @torch.inference_mode()
    def analyse(self, image: Image.Image, quality: float = DEFAULT_QUALITY) -> Symbols:
        """Image -> the integer symbols compress() entropy-codes."""
        nearest, offset = self.rate_point(quality)
        latent = self._encode(self._padded(self._encodable(image)))
        with on_device(self.compressor, self.options):
            return self._symbols(latent, nearest - 1 + offset / RATE_STEPS)[0]

    def _symbols(self, latent: torch.Tensor, level: float) -> tuple[Symbols, HyperParams]:
        """Latent (1,C,h,w) -> the integer symbols at a 0-based level, and y's entropy parameters."""
        y, z_symbols = self.compressor.analyse(latent, level)
        params = self._entropy_parameters.hyper_params(z_symbols.cpu(), level)
        y_symbols = self.compressor.y_symbols(y, params, level)
        return Symbols(z=z_symbols.cpu().numpy(), y=y_symbols.cpu().numpy()), params

    @torch.inference_mode()
    def latent_pairs(self, image: Image.Image, qualities=None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Image -> (autoencoder latent, {quality: coarse latent the decoder reconstructs}).

        Both (1, C, H_pad/8, W_pad/8): what refinement starts from and what it aims at
        (training and evaluation of the diffusion prior). Exactly the latents compress()
        and decode_latent() give, without the (lossless) entropy coding in between.
        """
        image = self._encodable(image)
        latent = self._encode(self._padded(image))
        coarse = {}
        self.compressor.to(self.device)  # several stages in a row: on the device once (offload)
        for quality in qualities or self.qualities:
            nearest, offset = self.rate_point(quality)  # any quality of the continuous scale
            level = nearest - 1 + offset / RATE_STEPS
            symbols, params = self._symbols(latent, level)
            coarse[quality] = self.compressor.synthesise(torch.from_numpy(symbols.y).to(self.device), params, level)
        self.compressor.to(self.options.home)
        return latent, coarse

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

        Default: the perceptual decoder draws the latent, refined first as the file's header
        records; each refinement keyword that is not None overrides the header (steps=0: no
        refinement). fidelity=True: the autoencoder's MSE decoder without refinement, the
        highest PSNR / MS-SSIM (refinement keywords are then refused). `tile`: pixel-decoding
        tile side in px (0 = no tiling). The same file, options and device give identical pixels.
        """
        tile = self.check_tile(tile)
        overrides = dict(steps=steps, sampler=sampler, guidance=guidance, seed=seed, start=start, early_exit=early_exit)
        given = [k for k, v in overrides.items() if v is not None]
        if fidelity and given:
            raise InvalidOptionError(f"fidelity decoding does not refine; drop {', '.join(given)}")
        header, coarse = self.decode_latent(data)
        if fidelity:
            x = self.decode_pixels(coarse, tile)
        else:
            try:
                settings = header.refine.with_overrides(**overrides)
            except ValueError as exc:
                raise CodecError(str(exc)) from None
            latent = self.refine_latent(coarse, header.quality, settings, tile=tile, progress=progress)
            x = self.decode_pixels(latent, tile, level=header.level)
        return tensor_to_image(x[..., : header.height, : header.width])

    @torch.inference_mode()
    def refine_latent(
        self, coarse: torch.Tensor, quality: int, settings: RefineSettings, tile: int = DEFAULT_TILE, progress=None
    ) -> torch.Tensor:
        """Coarse latent (1,C,h,w) -> refined latent with the diffusion prior (unchanged if steps 0)."""
        from .sampling import refine

        if settings.steps == 0:
            return coarse
        level = self.check_quality(quality)
        prior_tile = PRIOR_TILE if tile else 0
        net = self._runner("prior")
        with on_device(net, self.options):
            return refine(self.prior, coarse, level, settings, prior_tile, PRIOR_HALO, PRIOR_OVERLAP, progress, net=net)

    @torch.inference_mode()
    def decode_pixels(self, latent: torch.Tensor, tile: int = DEFAULT_TILE, level: float | None = None) -> torch.Tensor:
        """Latent (1,C,h,w) -> image tensor (1,3,8h,8w), on overlapping tiles of `tile` px.

        level None: the fidelity (autoencoder) decoder. A 0-based rate level (a file's
        `header.level`, between and beyond the trained levels too): the perceptual decoder
        conditioned on it.
        """
        tile = self.check_tile(tile)
        f = self.autoencoder.cfg.factor
        if level is None:
            decoder = self._runner("plain")
            with on_device(decoder, self.options):
                return tile_map(decoder, latent, tile // f, DECODE_OVERLAP, DECODE_HALO, up=f)
        decoder = self._runner("perceptual")
        halo = self.perceptual_decoder.cfg.receptive_field
        levels = torch.tensor([float(level)], device=latent.device)
        with on_device(decoder, self.options):
            return tile_map(lambda z: decoder(z, levels), latent, tile // f, DECODE_OVERLAP, halo, up=f)

    @torch.inference_mode()
    def decode_latent(self, data: bytes) -> tuple[Header, torch.Tensor]:
        """Bytes -> (header, reconstructed latent (1, C, H_pad/8, W_pad/8))."""
        header, symbols, params = self._decode(data)
        y = torch.from_numpy(symbols.y).to(self.device)
        with on_device(self.compressor, self.options):
            return header, self.compressor.synthesise(y, params, header.level)

    @torch.inference_mode()
    def quantized_latent(self, data: bytes) -> torch.Tensor:
        """Bytes -> the entropy decoder's latent y_hat = symbols + means (1, M, H/16, W/16),
        float64, in the gained domain: bit-identical on every device, or an error."""
        header, symbols, params = self._decode(data)
        return self.compressor.quantized_latent(torch.from_numpy(symbols.y), params)

    @torch.inference_mode()
    def decode_symbols(self, data: bytes) -> tuple[Header, Symbols]:
        """Bytes -> (header, symbols), checked against the container's symbol check."""
        header, symbols, _ = self._decode(data)
        return header, symbols

    def _decode(self, data: bytes) -> tuple[Header, Symbols, HyperParams]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BitstreamError(f"expected bytes, got {type(data).__name__}")
        container = read_container(data, self.limits)
        header = container.header
        if header.model_id != self.model_id:
            raise ModelMismatchError(
                f"file was made with other model weights (model id {header.model_id:04x}; "
                f"loaded weights are {self.model_id:04x})"
            )
        self.check_quality(header.quality, error=BitstreamError)
        level = header.level
        low, high = self.rate_levels
        if not low <= level <= high:
            raise BitstreamError(f"corrupt header: rate level {level + 1:g} is outside {low + 1}..{high + 1}")
        z_shape = self._z_shape(header)
        z = decode_symbols(container.z_data, self._z_indexes(z_shape), self._z_tables).astype(np.int32)
        params = self._entropy_parameters.hyper_params(torch.from_numpy(z), level)
        y = decode_symbols(container.y_data, params.indexes.cpu().numpy(), self._y_tables).astype(np.int32)
        if symbol_check(z, y, *params.check_arrays()) != container.symbol_check:
            raise DecoderDesyncError(
                "decoded symbols fail their check: the file is corrupt or was encoded with "
                "entropy parameters this decoder cannot reproduce"
            )
        return header, Symbols(z=z, y=y), params

    # -- helpers ---------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """(1,3,H,W) -> latent (1,C,H/8,W/8), on tiles for large images (flat memory)."""
        f = self.autoencoder.cfg.factor
        with on_device(self.autoencoder.encoder, self.options):
            return tile_map(self.autoencoder.encode, x, ENCODE_TILE, ENCODE_OVERLAP, ENCODE_HALO, down=f)

    @staticmethod
    def check_tile(tile: int) -> int:
        """Tile side in px: 0 (no tiling) or a multiple of 64 from 128; CodecError otherwise."""
        if (
            isinstance(tile, bool)
            or not isinstance(tile, (int, np.integer))
            or not (tile == 0 or (tile >= 128 and tile % PAD_MULTIPLE == 0))
        ):
            raise InvalidOptionError(
                f"tile must be 0 (off) or a multiple of {PAD_MULTIPLE} of at least 128, got {tile!r}"
            )
        return int(tile)

    def _padded(self, image: Image.Image) -> torch.Tensor:
        """RGB image -> (1,3,H_pad,W_pad) on the device, edges replicated to a multiple of 64."""
        x = image_to_tensor(image).to(self.device)
        h, w = x.shape[-2:]
        return F.pad(x, (0, -w % PAD_MULTIPLE, 0, -h % PAD_MULTIPLE), mode="replicate")

    def _encodable(self, image) -> Image.Image:
        """RGB version of `image` (what compress() accepts), refused if a decoder with our limits would
        refuse its file."""
        image = to_rgb(as_image(image, self.limits.max_pixels), self.limits.max_pixels)
        if max(image.size) > self.limits.max_side:
            raise ImageTooLargeError(f"image is {image.width}x{image.height}; sides must be 1..{self.limits.max_side}")
        return image

    def check_quality(self, quality: int, error: type[CodecError] = CodecError) -> int:
        """The model's level index (0-based) for a quality; `error` if there is no such level."""
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or quality not in self.qualities:
            raise error(f"quality must be one of {list(self.qualities)}, got {quality!r}")
        return int(quality) - 1

    def _z_shape(self, header: Header) -> tuple[int, int, int, int]:
        ph = -(-header.height // PAD_MULTIPLE)
        pw = -(-header.width // PAD_MULTIPLE)
        return (1, self.compressor.cfg.z_channels, ph, pw)

    @staticmethod
    def _z_indexes(shape) -> np.ndarray:
        """z uses one CDF table per channel."""
        return np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)
