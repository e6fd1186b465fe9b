"""Project-wide rules: one conventions module, functions under 80 lines, CLI help, schemas,
error lines (the import layering is tests/test_layers.py)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from eyeful_tools import schema
from eyeful_tools.cli import COMMAND_MODULES, app, command_modules, load_commands, main

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    path
    for package in ("eyeful_tools", "trainer_adapter", "bench")
    for path in ROOT.glob(f"{package}/**/*.py")
)
CONVENTIONS_MODULE = ROOT / "eyeful_tools" / "cameras.py"

#: axis flips and world permutations that belong in eyeful_tools/cameras.py only
AXIS_PATTERNS = [
    re.compile(r"\[\s*2\s*,\s*0\s*,\s*1\s*(,\s*3\s*)?\]"),  # nerfstudio's row permutation
    re.compile(r"diag\(\s*\[?\s*1(\.0*)?\s*,\s*-\s*1(\.0*)?\s*,\s*-\s*1"),  # OpenCV <-> OpenGL
    re.compile(r"\[\s*:\s*(3\s*)?,\s*[12]\s*(:\s*3\s*)?\]\s*\*=\s*-\s*1"),  # column negation
    re.compile(r"(array|tensor)\(\s*\[\s*1(\.0*)?\s*,\s*-\s*1(\.0*)?\s*,\s*-\s*1(\.0*)?\s*[,\]]"),
]


#: intrinsics scaled by a ratio of image sizes (cameras.rescale_intrinsics does it)
RESCALE_PATTERNS = [
    re.compile(r"\b(scale_[xy]|[xy]_scale)\b\s*[*/]|[*/]=?\s*\(?\s*(scale_[xy]|[xy]_scale)\b"),
    re.compile(r"\*\s*\(\s*\w*(w|h|width|height)\w*\s*/\s*\w*(w|h|width|height)\w*\s*\)"),
    re.compile(r"\b(fx|fy|cx|cy|fl_x|fl_y|radius\w*)\s*\*=?\s*\w*(factor|scale)\b"),
]
#: nerfstudio's every-8th held-out rule (cameras.held_out_every)
EVERY_8TH_PATTERNS = [
    re.compile(r"%\s*(8|EVAL_INTERVAL|eval_interval)\b"),
    re.compile(r"\[\s*\w*\s*::\s*(8|EVAL_INTERVAL|eval_interval)\s*\]"),
    re.compile(r"\bEVAL_INTERVAL\s*=\s*\d"),
]
#: the images_N folder layout (cameras.downscaled_folder, downscaled_file, is_downscaled_folder)
LAYOUT_PATTERNS = [
    re.compile(r"(images|masks|depths)_\{"),
    re.compile(r"[\"'](images|masks|depths)_[\"'(\\]"),
    re.compile(r"\(images\|masks\|depths\)_"),
    re.compile(r"\{\s*(kind|folder|name)\b[\w.]*\s*\}_\{"),
]
CONVENTIONS = {
    "axis flips/permutations": AXIS_PATTERNS,
    "intrinsics rescaling": RESCALE_PATTERNS,
    "the every-8th rule": EVERY_8TH_PATTERNS,
    "the images_N layout": LAYOUT_PATTERNS,
}


def offenders(patterns: list[re.Pattern[str]]) -> list[str]:
    found = []
    for path in SOURCES:
        if path == CONVENTIONS_MODULE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in patterns):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize("what", CONVENTIONS)
def test_conventions_live_in_one_module(what: str) -> None:
    found = offenders(CONVENTIONS[what])
    assert not found, f"{what} outside cameras.py:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("what", "samples"),
    [
        (
            "axis flips/permutations",
            [
                "c2w[:, 1:3] *= -1",
                "m = m[[2, 0, 1, 3], :]",
                "np.diag([1, -1, -1, 1])",
                "flip = np.array([1.0, -1.0, -1.0])",
                "flip = torch.tensor([1, -1, -1, 1], device=device)",
            ],
        ),
        (
            "intrinsics rescaling",
            [
                "item.fl_x = value * scale_x",
                "cx=camera.cx * x_scale,",
                "fx = fx * (new_w / width)",
                "fl_y *= scale_y",
                "centre = (round(camera.cx * factor), round(camera.cy * factor))",
            ],
        ),
        (
            "the every-8th rule",
            [
                "held = every % eval_interval == 0",
                "held[index] = rank % 8 == 0",
                "val = names[::8]",
                "EVAL_INTERVAL = 8",
            ],
        ),
        (
            "the images_N layout",
            [
                'base / f"images_{factor}" / name',
                'return f"{kind.value}_{factor}"',
                're.compile(r"^(images|masks|depths)_\\d+$")',
                'd.startswith(("images_", "masks_"))',
            ],
        ),
    ],
)
def test_the_grep_catches_each_convention(what: str, samples: list[str]) -> None:
    """The rules above must be able to fail: each sample re-derives a convention."""
    missed = [s for s in samples if not any(p.search(s) for p in CONVENTIONS[what])]
    assert not missed, f"{what}: not caught: {missed}"


#: the project's "functions under ~80 lines" rule, counted from ``def`` to the last line
MAX_FUNCTION_LINES = 80


def long_functions(source: str, name: str) -> list[str]:
    """Every function in ``source`` (methods and nested functions included) that is longer than
    MAX_FUNCTION_LINES, as ``name:line: function is N lines``."""
    return [
        f"{name}:{node.lineno}: {node.name} is {length} lines"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]


def test_no_function_is_longer_than_80_lines() -> None:
    found = [
        entry
        for path in SOURCES
        for entry in long_functions(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, (
        f"split into smaller functions (at most {MAX_FUNCTION_LINES} lines each):\n"
        + "\n".join(found)
    )


def test_the_length_rule_can_fail() -> None:
    """81 lines are caught, in a method and around a nested function too; 80 lines pass."""

    def lines(count: int, indent: str) -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(count))

    assert long_functions("def f():\n" + lines(80, "    "), "m.py") == ["m.py:1: f is 81 lines"]
    assert long_functions("def f():\n" + lines(79, "    "), "m.py") == []
    method = "class C:\n    def m(self):\n" + lines(80, " " * 8)
    assert long_functions(method, "m.py") == ["m.py:2: m is 81 lines"]
    nested = "def outer():\n    def inner():\n" + lines(79, " " * 8)
    assert long_functions(nested, "m.py") == ["m.py:1: outer is 81 lines"]


def test_data_tools_never_import_torch() -> None:
    code = "import sys, eyeful_tools.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _commands(group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_command_table_matches_what_modules_register() -> None:
    load_commands()
    group = typer.main.get_command(app)
    assert set(group.commands) == set(COMMAND_MODULES)
    assert {m for modules in COMMAND_MODULES.values() for m in modules} == set(command_modules())


def test_a_command_loads_only_its_own_modules() -> None:
    code = (
        "import sys; from eyeful_tools.cli import main; main(['list']);"
        "sys.exit(1 if 'cv2' in sys.modules or 'pycolmap' in sys.modules else 0)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], check=False, capture_output=True).returncode
        == 0
    )


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    load_commands()
    group = typer.main.get_command(app)
    commands = list(_commands(group))
    assert ("list",) in commands and ("schema",) in commands
    missing = []
    for command in commands:
        assert main([*command, "--help"]) == 0
        if "Example: eyeful" not in capsys.readouterr().out:
            missing.append(" ".join(command))
    assert not missing, f"commands without 'Example: eyeful ...' in --help: {missing}"


def test_schemas_are_current() -> None:
    assert schema.stale_schemas() == [], "run `eyeful schema` and commit schemas/"


def test_schema_drift_is_detected(tmp_path: Path) -> None:
    schema.write_schemas(tmp_path)
    assert schema.stale_schemas(tmp_path) == []
    first = tmp_path / next(iter(schema.SCHEMAS))
    first.write_text(first.read_text().replace("fl_x", "focal_x"))
    assert schema.stale_schemas(tmp_path) == [first.name]


def test_known_errors_are_one_line_with_exit_1(tmp_path: Path, capsys) -> None:
    from eyeful_tools import transforms
    from eyeful_tools.errors import MissingFileError

    missing = tmp_path / "nope.json"
    with pytest.raises(MissingFileError):
        transforms.read_transforms(missing)
    # through the CLI the same error is exit 1 and one stderr line naming the file
    capsys.readouterr()
    assert main(["split", str(missing)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {missing}: "), lines
    # an unknown option value is a usage error (exit 2), not a traceback
    assert main(["schema", "--bogus"]) == 2


@pytest.mark.parametrize("rig", ["v2", "v1"])
def test_synthetic_capture_files_match_the_eyeful_schemas(rig: str, request) -> None:
    """The generator and the format models describe the same files (each able to catch the other)."""
    import json

    from eyeful_tools.eyeful_formats import KrtFile, SplitsFile

    capture = request.getfixturevalue(f"synth_{rig}")
    cameras_json = json.loads((capture / "cameras.json").read_text())
    krt = KrtFile.model_validate(cameras_json)
    assert {c.distortionModel for c in krt.KRT} == {
        "RadialAndTangential" if rig == "v2" else "Fisheye"
    }
    splits = SplitsFile.model_validate_json((capture / "splits.json").read_text())
    assert splits.test and splits.train
    cameras_json["KRT"][0]["T"] = cameras_json["KRT"][0]["T"][:3]
    with pytest.raises(ValueError, match="T"):
        KrtFile.model_validate(cameras_json)


def test_the_wheel_ships_the_schemas(tmp_path: Path) -> None:
    """The schemas are package data: an installed eyeful has them (not just a checkout)."""
    import importlib.util
    import zipfile

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    for package in ("eyeful_tools", "trainer_adapter"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            *isolation,
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
    )
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"eyeful_tools/schemas/{name}" for name in schema.SCHEMAS} <= names
    assert schema.SCHEMA_DIR == ROOT / "eyeful_tools" / "schemas"
    assert (ROOT / "schemas").resolve() == schema.SCHEMA_DIR  # the checkout's link to them
