"""The layout's rules (docs/architecture.md), read from the source, and a command line that answers at once.

    bitstream/  <-  codec/  <-  eval/  <-  dpc/       (an arrow: "is imported by")
                        ^-------- scripts/

- bitstream/ imports neither torch nor any package of ours.
- codec/ imports bitstream/ only; never eval/ or dpc/.
- eval/ never imports dpc/; eval/, scripts/ and dpc/ use only public names of codec and bitstream.
- No import cycle inside a package (module A imports B imports ... A), at any depth of the code.
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


@pytest.mark.parametrize("folder", [*OURS, "scripts"])
def test_no_private_name_is_imported_from_another_package(folder):
    """Inside a package, modules may share private helpers; across packages only public names pass."""
    out = []
    for path in _modules(folder):
        for module, names, line in _imports(path):
            package = module.split(".")[0]
            if package in (*OURS, "scripts") and package != folder:
                if any(_private(part) for part in module.split(".")) or any(_private(n) for n in names):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports a private name from {module}")
    assert out == []


def test_the_rules_catch_what_they_forbid(tmp_path, monkeypatch):
    """The checker itself: a codec module importing eval, and a script reaching a private name, are found."""
    fake = tmp_path / "codec"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from eval.metrics import psnr\n    return psnr\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "s.py").write_text("from codec.pipeline import _hidden\nx = thing._tables\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _violations("codec", ("eval", "dpc")) == ["codec/bad.py:2 imports eval.metrics"]
    with pytest.raises(AssertionError):
        test_users_of_the_library_touch_only_public_names("scripts")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(folder: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (at any depth: a lazy import counts).

    `from pkg import name` (or `from . import name`) is an edge to pkg.name where that is a module,
    else to pkg (its __init__). Scripts run with scripts/ on sys.path: `from train_prior import x`
    is scripts.train_prior."""
    modules = {_module_name(p): p for p in _modules(folder)}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for module, names, _ in _imports(path):
            if folder == "scripts" and f"scripts.{module}" in modules and module not in modules:
                module = f"{folder}.{module}"
            targets = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            if module in modules and (not names or len(targets) < len(names)):
                targets.add(module)
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """One line per group of modules that import each other: a shortest cycle ("a -> b -> a"), and
    the whole group where it is larger."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    out = []
    for group in groups:  # a shortest way round, from the group's first module back to it
        start = min(group)
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nxt = sorted(graph[path[-1]] & group)
            if start in nxt:
                more = f" (all of {', '.join(sorted(group))} reach each other)" if len(group) > len(path) else ""
                out.append(" -> ".join([*path, start]) + more)
                break
            for n in nxt:
                if n not in seen:
                    seen.add(n)
                    paths.append([*path, n])
    return sorted(out)


@pytest.mark.parametrize(
    "folder",
    [
        "bitstream",
        "codec",
        "eval",
        "dpc",
        "scripts",
    ],
)
def test_no_import_cycle_inside_any_package(folder):
    assert _cycles(_import_graph(folder)) == []


def test_the_cycle_check_sees_relative_and_package_imports(tmp_path, monkeypatch):
    """The checker itself: `from . import b` and `from pkg import a` (modules) are edges, and a lazy
    import inside a function counts; `from pkg import name` of a non-module is an edge to pkg's __init__."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .c import thing\n")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n")
    (pkg / "c.py").write_text("thing = 1\n")
    (pkg / "d.py").write_text("from pkg import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = _import_graph("pkg")
    assert graph == {"pkg": {"pkg.c"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set(), "pkg.d": {"pkg"}}
    assert _cycles(graph) == ["pkg.a -> pkg.b -> pkg.a"]
    (pkg / "c.py").write_text("from pkg import d\n")
    assert _cycles(_import_graph("pkg")) == ["pkg -> pkg.c -> pkg.d -> pkg", "pkg.a -> pkg.b -> pkg.a"]


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
