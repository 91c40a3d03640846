"""`Codec`: the public Python entry point.

    from codec import Codec
    c = Codec.load()
    data = c.compress(pil_image, quality=3)   # bytes of a .dpc file
    image = c.decompress(data)                # PIL RGB image, same size as the input

Data flow (see codec/autoencoder.py and codec/compressor.py for the stages):

    image -> pad to a multiple of 64 -> E -> latent -> compressor -> symbols
          -> bitstream (constriction + container) -> bytes
    bytes -> container -> z symbols -> entropy parameters -> y symbols
          -> latent_hat -> D -> crop -> image
"""

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bitstream import (
    BitstreamLimits,
    Container,
    Header,
    decode_symbols,
    encode_symbols,
    read_container,
    read_header,
    symbol_check,
    write_container,
)

from .compressor import HyperParams
from .errors import BitstreamError, CodecError, DecoderDesyncError, ImageTooLargeError, ModelMismatchError
from .images import image_to_tensor, tensor_to_image, to_rgb
from .model_files import ModelBundle, load_model

PAD_MULTIPLE = 64  # autoencoder 8 x compressor 2 x hyperprior 4
DEFAULT_QUALITY = 3


@dataclass(frozen=True)
class Symbols:
    """Everything the entropy coder carries for one image (all int32 arrays)."""

    z: np.ndarray  # (1, Z, H/64, W/64) hyper-latent symbols
    y: np.ndarray  # (1, M, H/16, W/16) latent symbols


class Codec:
    """Compress PIL images to `.dpc` bytes and back with one set of shipped weights."""

    def __init__(self, bundle: ModelBundle, device: str = "cpu", limits: BitstreamLimits | None = None):
        self.bundle = bundle
        self.device = torch.device(device)
        self.limits = limits or BitstreamLimits()
        self.autoencoder = bundle.autoencoder.to(self.device)
        self.compressor = bundle.compressor.to(self.device)
        # The entropy parameters decide how every y symbol is decoded, so encoder and
        # decoder must derive the same table indexes from z. They are computed on the
        # CPU in float64 whatever `device` is: a GPU's convolutions (TF32 by default)
        # round differently from a CPU's and would make files undecodable elsewhere.
        self._entropy_parameters = copy.deepcopy(bundle.compressor).to("cpu", torch.float64)
        self._z_tables = self.compressor.z_tables()
        self._y_tables = self.compressor.y_tables()

    @classmethod
    def load(cls, weights=None, device: str = "cpu", max_pixels: int | None = None) -> "Codec":
        """Load the shipped weights (or a given .safetensors file)."""
        limits = BitstreamLimits() if max_pixels is None else BitstreamLimits(max_pixels=max_pixels)
        return cls(load_model(weights), device=device, limits=limits)

    @property
    def qualities(self) -> range:
        """Valid quality levels; 1 is the lowest rate."""
        return range(1, self.compressor.cfg.levels + 1)

    @property
    def model_id(self) -> int:
        return self.bundle.model_id

    # -- compress --------------------------------------------------------------------
    @torch.inference_mode()
    def compress(self, image: Image.Image, quality: int = DEFAULT_QUALITY) -> bytes:
        """PIL image (any mode; see codec.images) -> bytes of a .dpc file."""
        level = self.check_quality(quality)
        image = self._encodable(image)
        symbols, params = self._analyse(image, level)
        header = Header(width=image.width, height=image.height, quality=quality, model_id=self.model_id)
        return self._write(header, symbols, params)

    def write_symbols(self, header: Header, symbols: Symbols) -> bytes:
        """Entropy-code given symbols into a .dpc file, exactly as compress() does after analyse().

        The inverse of decode_symbols(): for tools that make files from symbols (fuzzing, tests).
        """
        params = self._entropy_parameters.hyper_params(torch.from_numpy(symbols.z), header.quality - 1)
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
    def analyse(self, image: Image.Image, quality: int = DEFAULT_QUALITY) -> Symbols:
        """Image -> the integer symbols compress() entropy-codes."""
        level = self.check_quality(quality)
        return self._analyse(self._encodable(image), level)[0]

    def _analyse(self, image: Image.Image, level: int) -> tuple[Symbols, HyperParams]:
        x = image_to_tensor(image).to(self.device)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % PAD_MULTIPLE, 0, -h % PAD_MULTIPLE), mode="replicate")
        latent = self.autoencoder.encode(x)
        y, z_symbols = self.compressor.analyse(latent, level)
        params = self._entropy_parameters.hyper_params(z_symbols.cpu(), level)
        y_symbols = self.compressor.y_symbols(y, params, level)
        return Symbols(z=z_symbols.cpu().numpy(), y=y_symbols.cpu().numpy()), params

    # -- decompress ------------------------------------------------------------------
    def read_header(self, data: bytes) -> Header:
        """Validate and return a .dpc file's header (no decoding)."""
        return read_header(data, self.limits)[0]

    @torch.inference_mode()
    def decompress(self, data: bytes) -> Image.Image:
        """Bytes of a .dpc file -> RGB PIL image of the original width and height."""
        header, latent_hat = self.decode_latent(data)
        x = self.autoencoder.decode(latent_hat)
        return tensor_to_image(x[..., : header.height, : header.width])

    @torch.inference_mode()
    def decode_latent(self, data: bytes) -> tuple[Header, torch.Tensor]:
        """Bytes -> (header, reconstructed latent (1, C, H_pad/8, W_pad/8))."""
        header, symbols, params = self._decode(data)
        y = torch.from_numpy(symbols.y).to(self.device)
        return header, self.compressor.synthesise(y, params, header.quality - 1)

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
        level = self.check_quality(header.quality, error=BitstreamError)
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
    def _encodable(self, image: Image.Image) -> Image.Image:
        """RGB version of `image`, refused if a decoder with our limits would refuse its file."""
        image = to_rgb(image, self.limits.max_pixels)
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
