"""Shared fixtures: one loaded Codec for the whole session, small synthetic images,
a small real .dpc file, and an in-process runner for the `dpc` CLI."""

from dataclasses import dataclass

import pytest
from helpers import make_smooth, make_textured
from PIL import Image

import dpc.cli as cli_module
from codec import Codec


@pytest.fixture(scope="session")
def codec() -> Codec:
    """The shipped weights, loaded once for the session."""
    return Codec.load()


@pytest.fixture(scope="session")
def smooth_image() -> Image.Image:
    return make_smooth()


@pytest.fixture(scope="session")
def textured_image() -> Image.Image:
    return make_textured()


@pytest.fixture(scope="session")
def small_dpc(codec) -> bytes:
    """A real, small .dpc file (a 24x16 image at quality 1): cheap to corrupt bit by bit."""
    return codec.compress(make_smooth(24, 16), quality=1)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def dpc(monkeypatch, capsys, codec):
    """Run `dpc ARGS...` in-process via dpc.cli.main; returns CliResult(exit code, stdout, stderr).

    The CLI loads the shipped weights on every call; here it reuses the session's
    Codec (the same weights) unless --weights is given, to keep the suite fast.
    """
    real_loader = cli_module._load_codec
    monkeypatch.setattr(cli_module, "_load_codec", lambda args: codec if args.weights is None else real_loader(args))

    def run(*args) -> CliResult:
        capsys.readouterr()  # drop anything printed before this call
        code = cli_module.main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
