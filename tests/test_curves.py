"""Training curves (issue 19): TensorBoard event files read back with tensorboard's own
``EventAccumulator``, ``metrics.jsonl`` with the same steps and numbers, ``curves.png``, eval
images, resume, the observer hook, and a run without the ``tensorboard`` package."""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: steps_per_log 2 over 5 steps: the first step, every 2nd (1, 3) and the last (4)
LOGGED = [0, 1, 3, 4]


class Recorder:
    """A TrainObserver that remembers what it was shown."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.keys: set[str] = set()
        self.ended = 0
        self.fail_at = fail_at

    def on_step(self, trainer: Any, step: int, stats: Mapping[str, float]) -> None:
        self.steps.append(step)
        self.keys |= set(stats)
        if step == self.fail_at:
            raise RuntimeError("observer failed on purpose")

    def on_end(self, trainer: Any) -> None:
        self.ended += 1


@pytest.fixture(scope="module")
def data(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eyeful_tools.convert import convert_capture

    root = tmp_path_factory.mktemp("curves")
    shutil.copytree(synth_v2, root / synth_v2.name)
    convert_capture(root / synth_v2.name, resolutions=["jpeg_1k"])
    return root / synth_v2.name / "images-jpeg-1k"


def _train(data: Path, out: Path, **settings: Any) -> Any:
    from trainer_adapter.trainer import train

    settings = {"max_steps": 5, "steps_per_log": 2, **settings}
    return train(data, preset="tiny", device="cpu", output_dir=out, **settings)


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Recorder]]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    recorder = Recorder()
    out = tmp_path_factory.mktemp("runs")
    result = _train(data, out, steps_per_eval_image=2, timestamp="a", observers=[recorder])
    torch.set_num_threads(threads)
    yield result.run_dir, recorder


def _events(run_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_event_files_hold_every_scalar_at_the_logged_steps(run: tuple[Path, Recorder]) -> None:
    run_dir, _ = run
    assert list(run_dir.glob("events.out.tfevents.*")), "no event file directly in the run folder"
    events = _events(run_dir)
    rows = {row["step"]: row for row in _rows(run_dir)}
    assert sorted(rows) == LOGGED
    for tag, key in [("loss/total", "loss"), ("train/psnr", "psnr")]:
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == LOGGED, tag
        assert [s.value for s in scalars] == pytest.approx([rows[s][key] for s in LOGGED])
    tags = set(events.Tags()["scalars"])
    expected = {"loss/rgb_loss", "loss/interlevel_loss", "loss/distortion_loss",
                "lr/fields", "lr/proposal_networks", "speed/rays_per_sec",
                "loader/images_seen", "loader/images", "loader/decode_wait_s"}  # fmt: skip
    assert expected <= tags, expected - tags
    assert all(0 < rows[s]["lr_fields"] <= 1e-2 for s in LOGGED)
    assert rows[4]["images"] == rows[4]["images_seen"] > 0


def test_eval_images_every_n_steps(run: tuple[Path, Recorder]) -> None:
    """steps_per_eval_image 2: steps 1 and 3 end a block of 2 (both are log steps)."""
    run_dir, _ = run
    images = _events(run_dir).Images("eval/held_out")
    assert [image.step for image in images] == [1, 3]
    picture = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert picture.ndim == 3 and picture.shape[1] % 2 == 0  # ground truth | render
    truth, render = np.split(picture, 2, axis=1)
    assert truth.std() > 5 and render.std() > 0, "blank ground truth or render"
    psnr = {row["step"]: row.get("eval_image_psnr") for row in _rows(run_dir)}
    assert psnr[1] is not None and psnr[3] is not None and psnr[0] is None and psnr[4] is None


def test_curves_png_is_a_plot(run: tuple[Path, Recorder]) -> None:
    run_dir, _ = run
    with Image.open(run_dir / "curves.png") as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 20, "blank plot"


def test_observers_see_the_log_cadence_and_end_once(run: tuple[Path, Recorder]) -> None:
    _, recorder = run
    assert recorder.steps == LOGGED
    assert recorder.ended == 1
    expected = {"loss", "rgb_loss", "psnr", "lr_fields", "rays_per_sec", "decode_wait_s"}
    assert expected <= recorder.keys


def test_resume_continues_the_curves(run: tuple[Path, Recorder], data: Path) -> None:
    """The resumed run's folder holds the whole curve: the earlier rows, then its own."""
    run_dir, _ = run
    resumed = _train(data, run_dir.parents[2], load_dir=run_dir, max_steps=7, timestamp="b")
    rows = _rows(resumed.run_dir)
    assert [row["step"] for row in rows] == [*LOGGED, 5, 6]
    assert rows[:4] == _rows(run_dir)
    steps = [s.step for s in _events(resumed.run_dir).Scalars("loss/total")]
    assert steps == [*LOGGED, 5, 6]


def test_without_tensorboard_training_goes_on(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the CLI: one warning, no event file; metrics.jsonl (with the eval image's PSNR
    of --steps-per-eval-image 1) and curves.png are still written."""
    from eyeful_tools.cli import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    args = ["train", str(data), "--preset", "tiny", "--max-steps", "2", "--device", "cpu",
            "--output-dir", str(tmp_path), "--steps-per-eval-image", "1"]  # fmt: skip
    assert main(args) == 0
    warnings = [r.getMessage() for r in caplog.records if "tensorboard" in r.getMessage()]
    assert len(warnings) == 1 and "not installed" in warnings[0]
    run_dir = next((tmp_path / data.parent.name / "tiny").iterdir())
    assert not list(run_dir.glob("events.out.tfevents.*"))
    rows = _rows(run_dir)
    assert [row["step"] for row in rows] == [0, 1]
    assert all(row["eval_image_psnr"] > 5 for row in rows)
    assert (run_dir / "curves.png").is_file()


def test_curves_off_and_observers_ended_on_failure(data: Path, tmp_path: Path) -> None:
    from trainer_adapter.trainer import train

    recorder = Recorder(fail_at=1)
    with pytest.raises(RuntimeError, match="on purpose"):
        train(data, preset="tiny", device="cpu", output_dir=tmp_path, max_steps=3,
              steps_per_log=1, curves=False, observers=[recorder])  # fmt: skip
    assert recorder.ended == 1
    run_dir = next((tmp_path / data.parent.name / "tiny").iterdir())
    assert not list(run_dir.glob("events.out.tfevents.*"))
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "curves.png").exists()


def test_a_negative_eval_image_cadence_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eyeful_tools.cli import main

    args = ["train", str(data), "--preset", "tiny", "--output-dir", str(tmp_path / "out"),
            "--steps-per-eval-image", "-1"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: --steps-per-eval-image: must be 0 (off) or more, got -1"
    assert not (tmp_path / "out").exists()


def test_a_full_disk_under_the_event_writer_is_one_error_naming_the_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorBoard's writer thread fails on ENOSPC: no traceback from the thread, and the
    writer's next call in the run raises an OSError naming the run folder."""
    import errno

    from tensorboard.summary.writer.record_writer import RecordWriter

    from trainer_adapter import curves

    writes = RecordWriter.write
    disk = {"full": False}

    def write(self: Any, data: bytes) -> None:
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        writes(self, data)

    monkeypatch.setattr(RecordWriter, "write", write)
    writer = curves._summary_writer(tmp_path, None)
    writer.flush()  # the file's header is on disk; the disk fills up after it
    disk["full"] = True
    with pytest.raises(OSError) as raised, curves._events_named(tmp_path):
        for step in range(1000):  # until the thread's failure comes back to this one
            writer.add_scalar("loss/total", 1.0, step)
        writer.close()
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path)
    assert "Traceback" not in capfd.readouterr().err


def test_curves_png_of_a_run_without_finite_values_warns_nothing(tmp_path: Path) -> None:
    """A run stopped by the non-finite guard logs null losses: its curves.png is still drawn,
    and matplotlib's empty-legend warning does not reach the user's terminal."""
    import warnings

    from trainer_adapter.curves_plot import write_curves_png

    rows = [{"step": step, "loss": None, "psnr": None} for step in (0, 10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert write_curves_png(tmp_path / "curves.png", rows)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_stopped_by_its_time_budget_logs_its_last_step(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that the time budget ends before max_steps shows its last step like a finished
    run's (it used to stop before a step, unlogged, at the budget check)."""
    import time
    import types

    from trainer_adapter import trainer as trainer_module

    skipped = [0.0]  # the trainer's clock jumps an hour while the observer sees step 1
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + skipped[0])
    monkeypatch.setattr(trainer_module, "time", clock)

    class Sleeper(Recorder):
        def on_step(self, trainer: Any, step: int, stats: Mapping[str, float]) -> None:
            super().on_step(trainer, step, stats)
            if step == 1:
                skipped[0] = 3600.0

    recorder = Sleeper()
    result = _train(data, tmp_path, max_steps=50, observers=[recorder], time_budget_s=600.0)
    assert result.last_step == 2
    assert recorder.steps == [0, 1, 2]
