"""What a Codec writes into and checks in a `.dpc` container (the bytes are bitstream/'s).

write: image size, RatePoint, refinement, entropy Sections -> Header -> container bytes
parse: bytes -> container (the header read once); check: refused unless these weights made it
       (model id) and code its rate
"""

from bitstream import (
    LAYOUT_CENTRED,
    LAYOUT_TWO_PASS,
    LAYOUT_VERSION,
    BitstreamLimits,
    Container,
    Header,
    RatePoint,
    RefineSettings,
    pack_hints,
    read_container,
    write_container,
)

from .canvas import Canvas
from .entropy import Sections
from .errors import BitstreamError, ModelMismatchError
from .quality_scale import RateScale
from .shipped import check_coding


class FileFormat:
    """The container side of one set of weights: its model id, rate scale and limits."""

    def __init__(self, model_id: int, rates: RateScale, limits: BitstreamLimits, two_pass: bool = False):
        """`two_pass`: the weights code y in two checkerboard passes."""
        self.model_id, self.rates, self.limits, self.two_pass = model_id, rates, limits, two_pass

    def header(self, width: int, height: int, rate: RatePoint, refine: RefineSettings) -> Header:
        """The header of a new file: format version 5, the image centred in its canvas
        (codec/canvas.py), y in one or two passes as the weights code it."""
        return Header(
            width=width,
            height=height,
            quality=rate.nearest,
            model_id=self.model_id,
            hints=pack_hints(refine) if refine.steps else b"",
            version=LAYOUT_VERSION,
            rate_offset=rate.offset,
            layout=LAYOUT_CENTRED | (LAYOUT_TWO_PASS if self.two_pass else 0),
        )

    @staticmethod
    def write(header: Header, sections: Sections) -> bytes:
        return write_container(
            Container(header, sections.z_data, sections.y_data, sections.symbol_check, sections.y_rest_data)
        )

    def parse(self, data: bytes) -> Container:
        """Bytes -> the container, whatever model made it (within the limits); BitstreamError otherwise."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BitstreamError(f"expected bytes, got {type(data).__name__}")
        return read_container(data, self.limits)

    def check(self, container: Container) -> Container:
        """The container, if these weights made it and can decode it; BitstreamError otherwise."""
        if container.header.model_id != self.model_id:
            raise ModelMismatchError(
                f"file was made with other model weights (model id {container.header.model_id:04x}; "
                f"loaded weights are {self.model_id:04x})"
            )
        check_coding(container.header, self.rates, self.two_pass)
        return container

    @staticmethod
    def latent_size(header: Header, factor: int) -> tuple[int, int]:
        """(height, width) of the padded latent the file codes, for an autoencoder of that factor."""
        return tuple(side // factor for side in Canvas.of_header(header).padded)
