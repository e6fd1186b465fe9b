"""``eyeful train --load-dir``: a resumed run keeps what it learned with. A different preset,
dataset or model/data option is refused naming both values, before anything is written; a
larger ``--max-steps`` extends the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eyeful_tools.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def first_run(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, run folder) of a 2-step tiny run."""
    from eyeful_tools.convert import convert_capture

    root = tmp_path_factory.mktemp("resume")
    shutil.copytree(synth_v2, root / synth_v2.name)
    convert_capture(root / synth_v2.name, resolutions=["jpeg_1k"])
    data = root / synth_v2.name / "images-jpeg-1k"
    args = ["train", str(data), "--preset", "tiny", "--max-steps", "2", "--device", "cpu",
            "--output-dir", str(root / "out")]  # fmt: skip
    assert main(args) == 0
    return data, next((root / "out" / "synth-v2" / "tiny").iterdir())


def _resume(data: Path, run: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--load-dir", str(run), "--device", "cpu", "--output-dir",
            str(out), *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "flag", "message"),
    [
        (["--preset", "nerfacto"], "--preset",
         "{run} was trained with preset 'tiny', not 'nerfacto' (resume without --preset, or "
         "start a new run)"),
        (["--orientation", "pca"], "--orientation",
         "{run} was trained with orientation 'up', not 'pca' (a resumed run keeps what it "
         "learned with)"),
        (["--max-steps", "2"], "--max-steps",
         "{run}/nerfstudio_models/step-000000001.ckpt has already trained 2 steps; give more "
         "than 2 to extend it"),
    ],
    ids=["preset", "data-option", "max-steps"],
)  # fmt: skip
def test_resume_refuses_a_mismatch_naming_both(
    first_run: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    flag: str,
    message: str,
) -> None:
    data, run = first_run
    out = tmp_path / "out"
    assert main(_resume(data, run, out, *extra)) == 1
    assert capsys.readouterr().err.strip() == f"error: {flag}: {message.format(run=run)}"
    assert not out.exists()


def test_resume_refuses_another_dataset(
    first_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = first_run
    other = tmp_path / "other"
    shutil.copytree(data, other)
    assert main(_resume(other, run, tmp_path / "out")) == 1
    trained = (data / "transforms.json").resolve()
    assert capsys.readouterr().err.strip() == (
        f"error: {other}: {run} was trained on {trained}, not {(other / 'transforms.json')}"
    )
    assert not (tmp_path / "out").exists()


def test_a_larger_max_steps_extends_the_run(
    first_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = first_run
    out = tmp_path / "out"
    # the same preset, given again, and a loader option are fine
    args = _resume(
        data, run, out, "--max-steps", "4", "--preset", "tiny", "--cache-bytes", "100000000",
        "--pool-stride", "2",
    )  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "trained to step 3" in capsys.readouterr().err
    resumed = next((out / "synth-v2" / "tiny").iterdir())
    assert resumed != run
    assert [p.name for p in (resumed / "nerfstudio_models").iterdir()] == ["step-000000003.ckpt"]
    config = json.loads((resumed / "config.json").read_text())
    assert config["options"]["optim"]["max_steps"] == 4
    assert config["options"]["loader"]["cache_bytes"] == 100_000_000
    assert config["options"]["loader"]["pool_stride"] == 2
    assert config["facts"]["resumed_from"] == str(run / "nerfstudio_models/step-000000001.ckpt")
    assert json.loads((run / "config.json").read_text())["options"]["optim"]["max_steps"] == 2


def test_a_resumed_run_may_turn_compile_on_and_off(first_run: tuple[Path, Path]) -> None:
    """--compile changes how the same maths runs, not what the run learned: resuming with it
    on or off is allowed (it was refused as a model option, and a run trained with it could
    not be resumed where no compiler is)."""
    from trainer_adapter.runs import resolve_options

    data, run = first_run
    for wanted in (True, False):
        settings = {"max_steps": 4, "compile_encodings": wanted}
        options, _ = resolve_options(data, load_dir=run, settings=settings)
        assert options.model.compile_encodings is wanted


def test_a_compiled_run_loads_eagerly_where_nothing_compiles(
    first_run: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """eval, render and the viewer of a --compile run, on a machine that cannot compile, use
    the eager encodings with a warning (they failed with a traceback at the first render)."""
    from trainer_adapter import device
    from trainer_adapter.evaluate import load_run
    from trainer_adapter.model.encodings import HashEncoding

    _, run = first_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["options"]["model"]["compile_encodings"] = True
    (copy / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(device, "kernel_build_problem", lambda _device: "no compiler here")
    loaded = load_run(copy, "cpu")
    assert loaded.options.model.compile_encodings is False
    encodings = [m for m in loaded.model.modules() if isinstance(m, HashEncoding)]
    assert encodings and not any(m.fused_kernels for m in encodings)
    assert f"{copy}: hash encodings run eagerly (the same maths): no compiler here" in caplog.text


def test_a_compiled_sparse_run_loads_without_asking_for_a_compiler(
    first_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sparse table gradients keep the torch path, so loading such a --compile run checks (and
    builds) nothing, as training does not (it built the C++ kernels and warned needlessly)."""
    from trainer_adapter import device
    from trainer_adapter.evaluate import load_run

    _, run = first_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["options"]["model"].update(compile_encodings=True, sparse_grad=True)
    (copy / "config.json").write_text(json.dumps(config))
    asked = []
    monkeypatch.setattr(device, "kernel_build_problem", lambda d: asked.append(d) or "no compiler")
    loaded = load_run(copy, "cpu")
    assert asked == [] and loaded.options.model.compile_encodings is True
