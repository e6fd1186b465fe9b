"""The import layering, checked on every import statement anywhere in a module.

Imports are found with ``ast`` (inside functions, ``if TYPE_CHECKING:`` blocks and ``try:``
included), so a lazy import cannot hide an upward or cross dependency. Layers, bottom up:
each may import its own layer and those below, never one above.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("eyeful_tools", "trainer_adapter", "bench")

#: (layer, members) bottom up; ``name`` is that module, ``name.*`` the package and everything in it
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "eyeful_tools",
            "eyeful_tools.errors",
            "eyeful_tools.fsio",
            "eyeful_tools.archive",
            "eyeful_tools.cameras",
            "eyeful_tools.catalog",
            "eyeful_tools.eyeful_formats",
            "eyeful_tools.procpool",
            "eyeful_tools.blur",
            "eyeful_tools.image_limits",
            "eyeful_tools.imageio",
            "eyeful_tools.exr_layout",
            "eyeful_tools.spherical_mp4",
            "eyeful_tools.transforms",
        ),
    ),
    (
        "formats",
        (
            "eyeful_tools.split",
            "eyeful_tools.ios_depth",
            "eyeful_tools.ios_import",
            "eyeful_tools.importer",
            "eyeful_tools.colmap_io.*",
            "eyeful_tools.s3sync.*",
            "eyeful_tools.synth.*",
        ),
    ),
    ("readers", ("eyeful_tools.readers.*",)),
    (
        "pipelines",
        (
            "eyeful_tools.convert",
            "eyeful_tools.download",
            "eyeful_tools.downscale",
            "eyeful_tools.sfm",
            "eyeful_tools.importers",
            "eyeful_tools.locals3",
            "eyeful_tools.schema",
            "eyeful_tools.view.*",
        ),
    ),
    ("trainer", ("trainer_adapter.*",)),
    ("entry points", ("eyeful_tools.cli.*", "bench.*")),
)

#: what the S3 layer may use from the rest of the project: it knows nothing about cameras
S3SYNC_MAY_IMPORT = ("eyeful_tools.errors", "eyeful_tools.fsio")
#: never imported by the data tools (``eyeful_tools`` installs and runs without torch)
TORCH_SIDE = ("torch", "trainer_adapter")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or package, for ``from pkg import name``)
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports_in(source: str, module: str, is_package: bool, known: set[str]) -> Iterator[Import]:
    """Every import statement in ``source``, however deeply nested."""
    tree = ast.parse(source)
    function_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    function_lines.add(id(inner))
    for node in ast.walk(tree):
        nested = id(node) in function_lines
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, nested)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield Import(module, name if name in known else base, node.lineno, nested)


def all_imports() -> list[Import]:
    modules = project_modules()
    known = set(modules)
    found = []
    for name, path in modules.items():
        found.extend(imports_in(path.read_text(), name, path.name == "__init__.py", known))
    return found


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (specificity, layer)
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            base = member.removesuffix(".*")
            exact = module == base
            inside = member.endswith(".*") and module.startswith(base + ".")
            if (exact or inside) and (best is None or len(base) > best[0]):
                best = (len(base), index)
    return None if best is None else best[1]


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


IMPORTS = all_imports()
PROJECT = [i for i in IMPORTS if i.target.split(".")[0] in PACKAGES]


def where(i: Import) -> str:
    return f"{i.module} (line {i.line}) imports {i.target}"


def test_the_scanner_sees_nested_and_relative_imports() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from eyeful_tools.cli import main\n"
        "def f():\n    if True:\n        import torch.nn as nn\n"
        "        from . import cameras\n"
    )
    known = {"eyeful_tools.cameras"}
    found = {(i.target, i.in_function) for i in imports_in(source, "eyeful_tools.x", False, known)}
    assert ("eyeful_tools.cli", False) in found
    assert ("torch.nn", True) in found
    assert ("eyeful_tools.cameras", True) in found


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in project_modules() if layer_of(m) is None)
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {missing}"


def test_no_upward_imports() -> None:
    upward = [
        f"{where(i)}: {LAYERS[layer_of(i.module) or 0][0]} -> {LAYERS[layer_of(i.target) or 0][0]}"
        for i in PROJECT
        if (layer_of(i.target) or 0) > (layer_of(i.module) or 0)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for i in PROJECT:
        if i.target != i.module and not is_under(i.module, i.target):  # a package's own init
            graph.setdefault(i.module, set()).add(i.target)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_readers_do_not_import_each_other() -> None:
    crossing = [
        where(i)
        for i in PROJECT
        if is_under(i.module, "eyeful_tools.readers")
        and is_under(i.target, "eyeful_tools.readers")
        and i.target not in (i.module, "eyeful_tools.readers")
    ]
    assert not crossing, "\n".join(crossing)


def test_entry_points_do_not_import_each_other() -> None:
    """A CLI command module uses only the shared app objects from the CLI package; the
    benchmarks and the CLI call the library, never each other."""
    crossing = [
        where(i)
        for i in PROJECT
        if (
            is_under(i.module, "eyeful_tools.cli")
            and i.module != "eyeful_tools.cli"
            and is_under(i.target, "eyeful_tools.cli")
            and i.target not in ("eyeful_tools.cli._app", i.module)
        )
        or (is_under(i.module, "bench") and is_under(i.target, "eyeful_tools.cli"))
        or (is_under(i.module, "eyeful_tools.cli") and is_under(i.target, "bench"))
    ]
    assert not crossing, "\n".join(crossing)


def test_the_data_tools_never_import_torch() -> None:
    """Nothing in ``eyeful_tools`` imports torch or the trainer; the CLI may, inside the
    commands that train, so that the other commands start without them."""
    bad = [
        where(i)
        for i in IMPORTS
        if is_under(i.module, "eyeful_tools")
        and any(is_under(i.target, t) for t in TORCH_SIDE)
        and not (is_under(i.module, "eyeful_tools.cli") and i.in_function)
    ]
    assert not bad, "\n".join(bad)


def test_s3sync_knows_nothing_of_cameras() -> None:
    bad = [
        where(i)
        for i in PROJECT
        if is_under(i.module, "eyeful_tools.s3sync")
        and not is_under(i.target, "eyeful_tools.s3sync")
        and i.target not in S3SYNC_MAY_IMPORT
    ]
    assert not bad, "\n".join(bad)
