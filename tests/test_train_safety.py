"""A run that cannot be right or cannot save stops with one line and keeps its last good
checkpoint: the non-finite guard, a full or read-only disk at checkpoint time, and checkpoints
that say which hash grid they hold. CPU, a tiny model, a few steps each."""

from __future__ import annotations

import errno
import itertools
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from eyeful_tools.cli import main
from eyeful_tools.errors import InputFormatError, TrainingError
from trainer_adapter.model.hashgrid_cpu import toolchain_problem
from trainer_adapter.trainer import TrainResult

SMALL = {"train_num_rays_per_batch": 32, "pool_images": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eyeful_tools.convert import convert_capture

    copy = tmp_path_factory.mktemp("safety") / synth_v2.name
    shutil.copytree(synth_v2, copy)
    convert_capture(copy, resolutions=["jpeg_1k"])
    return copy / "images-jpeg-1k"


def _train(data: Path, out: Path, steps: int, **settings: object) -> TrainResult:
    from trainer_adapter.trainer import train

    options = {**SMALL, "steps_per_save": 2, "keep_checkpoints": 10, **settings}
    return train(data, preset="tiny", max_steps=steps, output_dir=out, device="cpu", **options)


def _poison_from(monkeypatch: pytest.MonkeyPatch, first: int, last: int | None = None) -> None:
    """Make the loss NaN on training steps ``first`` .. ``last`` (inclusive; open-ended)."""
    from trainer_adapter.model.nerfacto import NerfactoModel

    original = NerfactoModel.loss_dict
    calls = itertools.count()

    def poisoned(self: NerfactoModel, outputs: dict, gt: torch.Tensor) -> dict:
        losses = original(self, outputs, gt)
        step = next(calls)
        if step >= first and (last is None or step <= last):
            losses["rgb_loss"] = losses["rgb_loss"] * float("nan")
        return losses

    monkeypatch.setattr(NerfactoModel, "loss_dict", poisoned)


def _all_finite(checkpoint: Path) -> bool:
    state = torch.load(checkpoint, weights_only=True)
    tensors = list(state["pipeline"].values())
    for optimizer in state["optimizers"].values():
        for slot in optimizer["state"].values():
            tensors += [v for v in slot.values() if isinstance(v, torch.Tensor)]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*/tiny/*/nerfstudio_models/*.ckpt"))


# ---------------------------------------------------------------------------------------------
# the non-finite guard


def test_a_loss_that_stays_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _poison_from(monkeypatch, 5)
    out = tmp_path / "out"
    rc = main(["train", str(data), "--preset", "tiny", "--max-steps", "20", "--device", "cpu",
               "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "non-finite for 3 steps in a row from step 5; training stopped at step 7" in err
    assert _checkpoints(out) == []  # the tiny preset saves every 500 steps: nothing to keep
    assert "no checkpoint was written" in err

    monkeypatch.undo()
    _poison_from(monkeypatch, 5)
    with pytest.raises(TrainingError, match="from step 5; training stopped at step 7") as caught:
        _train(data, tmp_path / "api", 20)
    kept = _checkpoints(tmp_path / "api")
    assert kept == ["step-000000002.ckpt", "step-000000004.ckpt"]
    assert kept[-1] in str(caught.value)
    for path in (tmp_path / "api").glob("*/tiny/*/nerfstudio_models/*.ckpt"):
        assert _all_finite(path)


def test_a_short_nan_burst_is_skipped_and_training_goes_on(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_from(monkeypatch, 3, 4)  # two bad steps, below the patience of 3
    result = _train(data, tmp_path, 8, keep_checkpoints=1)
    assert result.last_step == 7 and result.checkpoint is not None
    assert _all_finite(result.checkpoint)


def test_a_checkpoint_with_nan_is_never_written(tmp_path: Path) -> None:
    from trainer_adapter.checkpoints import save_checkpoint

    state = {"step": 3, "pipeline": {"w": torch.tensor([1.0, float("nan")])}, "optimizers": {}}
    with pytest.raises(TrainingError, match="step 3: the pipeline hold NaN or inf"):
        save_checkpoint(tmp_path, 3, state, keep=1)
    assert not any((tmp_path / "nerfstudio_models").glob("*"))


# ---------------------------------------------------------------------------------------------
# a full or read-only disk at checkpoint time


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, int] | None]:
    """An 88 MiB tmpfs (room for one 14 MiB tiny checkpoint and the 64 MiB reserve that
    ``fsio.require_free_space`` keeps, not for two checkpoints) where this process may mount one
    (root on Linux), else ``None``."""
    mount = tmp_path / "disk"
    mount.mkdir()
    size = 88 << 20
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]
    try:
        mounted = subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        mounted = False
    yield (mount, size) if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def _inject_disk_error(monkeypatch: pytest.MonkeyPatch, code: int, after_saves: int) -> None:
    """``torch.save`` writes part of the file and then fails with ``code``, from the
    ``after_saves``-th save on (where no tmpfs can be mounted)."""
    import trainer_adapter.checkpoints as checkpoints

    original = torch.save
    count = itertools.count()

    def failing(obj: object, handle: object, *args: object, **kwargs: object) -> None:
        if next(count) >= after_saves:
            handle.write(b"partial")  # type: ignore[attr-defined]
            raise OSError(code, "injected")
        original(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "save", failing)


def test_a_full_disk_keeps_the_previous_checkpoint(
    data: Path,
    tmp_path: Path,
    small_disk: tuple[Path, int] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = small_disk[0] if small_disk else tmp_path / "out"
    if small_disk is None:
        _inject_disk_error(monkeypatch, errno.ENOSPC, after_saves=1)
    with pytest.raises(TrainingError) as caught:
        _train(data, out, 6, keep_checkpoints=1)
    folder = next(out.glob("*/tiny/*/nerfstudio_models"))
    message = str(caught.value)
    assert message.startswith(f"{folder}: has too little free space for the checkpoint (")
    assert message.endswith(" bytes needed); the previous checkpoint is kept")
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000002.ckpt"]  # no temp left
    assert _all_finite(folder / "step-000000002.ckpt")
    if small_disk is None:
        return
    # the write itself failing (the space check passed): torch's zip writer reports the ENOSPC
    # as 'unexpected pos'; the user still gets the one line
    import eyeful_tools.fsio as fsio

    shutil.rmtree(out / "synth-v2")  # the disk is empty again, then filled to 20 MiB free
    with open(out / "filler", "wb") as handle:
        for _ in range((shutil.disk_usage(out).free >> 20) - 20):
            handle.write(bytes(1 << 20))
    roomy = shutil.disk_usage(tmp_path)._replace(free=1 << 40)
    monkeypatch.setattr(fsio.shutil, "disk_usage", lambda _: roomy)
    with pytest.raises(TrainingError, match="too little free space") as caught:
        _train(data, out, 6, keep_checkpoints=1, timestamp="write")
    folder = out / "synth-v2" / "tiny" / "write" / "nerfstudio_models"
    assert sorted(p.name for p in folder.iterdir()) == ["step-000000002.ckpt"]
    cause = caught.value.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC  # the real one


def test_a_read_only_disk_is_one_line(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _inject_disk_error(monkeypatch, errno.EROFS, after_saves=0)
    out = tmp_path / "out"
    rc = main(["train", str(data), "--preset", "tiny", "--max-steps", "2", "--device", "cpu",
               "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    folder = next(out.glob("*/tiny/*/nerfstudio_models"))
    assert rc == 1 and err.startswith(f"error: {folder}: is read-only for the checkpoint (")
    assert len(err.splitlines()) == 1 and not any(folder.iterdir())


# ---------------------------------------------------------------------------------------------
# checkpoints say which hash grid they hold


def test_checkpoints_record_the_hash_grid_that_ran(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer_adapter.model.encodings as encodings
    from trainer_adapter.checkpoints import latest_checkpoint
    from trainer_adapter.evaluate import load_run

    run = _train(data, tmp_path, 2).run_dir  # implementation "tcnn" asked, torch ran
    checkpoint = latest_checkpoint(run)
    state = torch.load(checkpoint, weights_only=True)
    assert state["hash_grid"] == "torch"
    # where tinycudann imports, a torch checkpoint still loads, into the torch grid
    monkeypatch.setattr(encodings, "tcnn_available", lambda: True)
    loaded = load_run(run, device="cpu")
    assert isinstance(loaded.model.field.encoding, encodings.HashEncoding)
    # a tcnn checkpoint where tinycudann does not import: one line saying what it needs
    monkeypatch.setattr(encodings, "tcnn_available", lambda: False)
    state["hash_grid"] = "tcnn"
    torch.save(state, checkpoint)
    with pytest.raises(InputFormatError) as caught:
        load_run(run, device="cpu")
    assert str(caught.value) == (
        f"{checkpoint}: trained with tiny-cuda-nn's hash grid, which stores a different grid than "
        "the torch one; load it where tinycudann imports (a CUDA machine)"
    )
    # checkpoints written before the key: told apart by tiny-cuda-nn's parameter name
    del state["hash_grid"]
    state["pipeline"]["field.encoding.encoding.params"] = state["pipeline"].pop(
        "field.encoding.hash_table"
    )
    torch.save(state, checkpoint)
    with pytest.raises(InputFormatError, match="trained with tiny-cuda-nn's hash grid"):
        load_run(run, device="cpu")


def test_compile_without_a_compiler_is_one_line_before_the_run(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--compile needs a C++ compiler on CPU (its kernels are C++); without one it failed at the
    first step with a traceback. Now: one line, and no run folder."""
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    out = tmp_path / "out"
    rc = main(["train", str(data), "--preset", "tiny", "--max-steps", "2", "--device", "cpu",
               "--compile", "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(
        "error: --compile: no C++ compiler (no-such-c++-compiler is not"
    )
    assert len(err.splitlines()) == 1 and not out.exists()


def test_compile_with_sparse_gradients_needs_no_compiler(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sparse table gradients keep the torch path, so --compile has nothing to build there and
    must not refuse the run for want of a compiler (it did: the check ran before the model)."""
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    result = _train(data, tmp_path / "out", 1, compile_encodings=True, sparse_grad=True)
    assert math.isfinite(result.stats["loss"])


@pytest.mark.skipif(toolchain_problem() is not None, reason="no C++ toolchain here")
def test_a_compile_run_trains_through_the_cpu_kernels_with_the_same_loss(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile on CPU runs every hash encoding through the C++ kernels, and the first step's
    loss (same seed, same batch) is the eager run's up to float order."""
    from trainer_adapter.model import hashgrid_cpu

    calls = []
    original = hashgrid_cpu.FusedHashEncode.forward

    def counted(ctx: object, *args: torch.Tensor) -> torch.Tensor:
        calls.append(args[1].shape)
        return original(ctx, *args)

    monkeypatch.setattr(hashgrid_cpu.FusedHashEncode, "forward", staticmethod(counted))
    losses = {}
    for compiled in (False, True):
        result = _train(data, tmp_path / str(compiled), 1, compile_encodings=compiled)
        losses[compiled] = result.stats["loss"]
    assert len(calls) >= 3  # the step's two proposal networks and the main field, at least
    assert losses[True] == pytest.approx(losses[False], rel=1e-5), losses
