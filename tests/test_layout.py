"""The layout's rules (docs/architecture.md), read from the source, and a command line that answers at once.

    bitstream/  <-  codec/  <-  eval/  <-  dpc/       (an arrow: "is imported by")
                        ^-------- scripts/

- bitstream/ imports neither torch nor any package of ours.
- codec/ imports bitstream/ only; never eval/ or dpc/.
- eval/ never imports dpc/; eval/, scripts/ and dpc/ use only public names of codec and bitstream.
- `dpc --help`, `dpc info` and argument errors import no torch.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("bitstream", "codec", "eval", "dpc")


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """Every import in a file, at any depth: (absolute module, imported names, line)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in _modules(folder):
        for module, _, line in _imports(path):
            if module.split(".")[0] in forbidden:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


def test_bitstream_imports_no_torch_and_nothing_of_ours():
    assert _violations("bitstream", ("torch", "codec", "eval", "dpc")) == []


def test_codec_never_imports_eval_or_the_application():
    assert _violations("codec", ("eval", "dpc")) == []


def test_eval_never_imports_the_application():
    assert _violations("eval", ("dpc",)) == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.mark.parametrize("folder", ["eval", "scripts", "dpc"])
def test_users_of_the_library_touch_only_public_names(folder):
    out = []
    for path in _modules(folder):
        where = path.relative_to(ROOT)
        for module, names, line in _imports(path):
            if module.split(".")[0] in ("codec", "bitstream") and (
                any(_private(part) for part in module.split(".")) or any(_private(n) for n in names)
            ):
                out.append(f"{where}:{line} imports a private name from {module}")
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                out.append(f"{where}:{node.lineno} uses .{node.attr}")
    assert out == []


def test_the_rules_catch_what_they_forbid(tmp_path, monkeypatch):
    """The checker itself: a codec module importing eval, and a script reaching a private name, are found."""
    fake = tmp_path / "codec"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from eval.metrics import psnr\n    return psnr\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "s.py").write_text("from codec.api import _hidden\nx = thing._tables\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _violations("codec", ("eval", "dpc")) == ["codec/bad.py:2 imports eval.metrics"]
    with pytest.raises(AssertionError):
        test_users_of_the_library_touch_only_public_names("scripts")


def _loaded_after(code: str) -> set[str]:
    """Top-level packages a fresh interpreter has imported after running `code`."""
    probe = f"import sys\n{code}\nprint('MODULES', *sorted({{m.split('.')[0] for m in sys.modules}}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("MODULES ")]
    assert lines, result.stderr
    return set(lines[-1].split()[1:])


def test_help_info_and_usage_errors_import_no_torch(tmp_path):
    from bitstream import Container, Header, write_container

    dpc = tmp_path / "a.dpc"
    dpc.write_bytes(write_container(Container(Header(width=8, height=8, quality=1, model_id=1), b"z", b"y", 0)))
    run = "from dpc.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass"
    for args in (["--help"], ["info", str(dpc)], ["compress"], ["decompress", "x.dpc", "--tile", "nope"]):
        loaded = _loaded_after(run.format(args=args))
        assert "dpc" in loaded, args  # the probe ran
        assert not loaded & {"torch", "numpy", "PIL", "compressai", "diffusers"}, (args, loaded)


def test_a_decode_imports_neither_compressai_nor_diffusers_nor_eval():
    code = (
        "from skimage import data\nfrom codec import Codec\nc = Codec.load()\n"
        "c.decompress(c.compress(data.astronaut()[:64, :64], 1))"
    )
    loaded = _loaded_after(code)
    assert "codec" in loaded and "torch" in loaded
    assert not loaded & {"compressai", "diffusers", "eval", "dpc"}, loaded
