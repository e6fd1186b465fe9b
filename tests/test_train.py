"""The bundled Nerfacto end to end: learning on the synthetic captures, resume, checkpoints,
DDP, eval/render commands and their errors. CPU only, tiny images and few steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eyeful_tools.cli import main

LEARN_STEPS = 200
EVAL_IMAGES = 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _converted(capture: Path, tmp: Path, resolutions: list[str]) -> Path:
    from eyeful_tools.convert import convert_capture

    copy = tmp / capture.name
    shutil.copytree(capture, copy)
    convert_capture(copy, resolutions=resolutions)
    return copy


@pytest.fixture(scope="module")
def v2_capture(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _converted(synth_v2, tmp_path_factory.mktemp("train-v2"), ["jpeg_1k", "exr_2k"])


@pytest.fixture(scope="module")
def v1_capture(synth_v1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _converted(synth_v1, tmp_path_factory.mktemp("train-v1"), ["jpeg_1k"])


def _constant_oracle_psnr(data: Path, hdr: dict | None) -> float:
    """PSNR of the best constant colour per image (the mean), averaged like eval: what a model
    that learned nothing but the average colour would score."""
    from trainer_adapter.data.loader import iter_eval_images
    from trainer_adapter.data.parser import parse_dataset
    from trainer_adapter.hdr import run_tonemapper

    tonemap = run_tonemapper(hdr)
    values = []
    for i, item in enumerate(iter_eval_images(parse_dataset(data), "test")):
        if i >= EVAL_IMAGES:
            break
        gt = tonemap(item.rgb.float()).clamp(0, 1)[item.valid]
        values.append(float(-10 * torch.log10(((gt - gt.mean(0)) ** 2).mean())))
    return sum(values) / len(values)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rig", "folder"),
    [("v2", "images-jpeg-1k"), ("v1", "images-jpeg-1k"), ("v2", "images-2k")],
    ids=["v2-jpeg", "v1-fisheye", "v2-exr"],
)
def test_tiny_learns_held_out_views(
    rig: str, folder: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from trainer_adapter.evaluate import evaluate
    from trainer_adapter.trainer import train

    data = request.getfixturevalue(f"{rig}_capture") / folder
    out = tmp_path / "out"
    untrained = train(data, preset="tiny", max_steps=1, output_dir=out, device="cpu", timestamp="0")
    trained = train(
        data, preset="tiny", max_steps=LEARN_STEPS, output_dir=out, device="cpu", timestamp="n"
    )
    before = evaluate(untrained.run_dir, device="cpu", max_images=EVAL_IMAGES).results["psnr"]
    after = evaluate(trained.run_dir, device="cpu", max_images=EVAL_IMAGES).results["psnr"]
    meta = json.loads((trained.run_dir / "config.json").read_text())["facts"]
    assert meta["is_hdr"] == (folder == "images-2k")
    oracle = _constant_oracle_psnr(data, meta["hdr"])
    assert after > before + 2.0, (before, after)
    assert after > oracle + 0.5, (oracle, after)


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    from trainer_adapter.trainer import latest_checkpoint

    return torch.load(latest_checkpoint(run_dir), weights_only=True)


def test_resume_equals_straight_run(v2_capture: Path, tmp_path: Path) -> None:
    from trainer_adapter.trainer import train

    data = v2_capture / "images-jpeg-1k"
    # a cache of 8 of the 28 training images: the pool streams (5 images, 1.5 swapped per step;
    # whole images: at 50x75 a stride-2 lattice, 950 pixels, is smaller than 16 batches of 64),
    # and the loader's state in the checkpoint resumes the stream where it stopped
    small = {"train_num_rays_per_batch": 64, "swap_rate": 1.5, "cache_bytes": 8 * 50 * 75 * 3}
    n = 4
    common = dict(preset="tiny", device="cpu", overrides=small)
    straight = train(data, max_steps=2 * n, output_dir=tmp_path / "a", timestamp="s", **common)
    first = train(data, max_steps=n, output_dir=tmp_path / "b", timestamp="1", **common)
    resumed = train(
        data,
        max_steps=2 * n,
        output_dir=tmp_path / "b",
        timestamp="2",
        load_dir=first.run_dir,
        **common,
    )
    assert resumed.last_step == straight.last_step == 2 * n - 1
    a, b = _params(straight.run_dir), _params(resumed.run_dir)
    assert a["step"] == b["step"] == 2 * n - 1
    assert a["pipeline"].keys() == b["pipeline"].keys()
    for key, value in a["pipeline"].items():
        assert torch.allclose(value.float(), b["pipeline"][key].float(), atol=1e-6), key
    fields_a, fields_b = a["optimizers"]["fields"], b["optimizers"]["fields"]
    assert fields_a["state"][0]["step"] == fields_b["state"][0]["step"]
    assert a["schedulers"]["fields"]["last_epoch"] == b["schedulers"]["fields"]["last_epoch"]
    # the same stream position and coverage counters, over the whole run
    assert a["loader"]["head"] == b["loader"]["head"] == 5 + int(1.5 * (2 * n - 1))
    assert a["loader"]["rays"] == b["loader"]["rays"] and sum(a["loader"]["rays"]) == 2 * n * 64
    assert straight.coverage.passes == resumed.coverage.passes == 0
    coverage = json.loads((resumed.run_dir / "coverage.json").read_text())
    assert coverage["steps"] == 2 * n and coverage["images"] == 28


def test_checkpoints_layout_keep_latest_and_weights_only(v2_capture: Path, tmp_path: Path) -> None:
    from trainer_adapter.trainer import train

    reports: list[tuple[int, dict]] = []  # (step, the stats dict it saw)
    result = train(
        v2_capture / "images-jpeg-1k",
        preset="tiny",
        max_steps=5,
        output_dir=tmp_path,
        device="cpu",
        timestamp="t",
        overrides={
            "steps_per_save": 2,
            "keep_checkpoints": 2,
            "train_num_rays_per_batch": 32,
            "steps_per_log": 2,
        },
        report=lambda step, total, stats: reports.append((step, stats)),
    )
    # progress every step; the loss is read back (fresh stats) on the first step, every
    # steps_per_log steps and on the last
    assert [step for step, _ in reports] == [0, 1, 2, 3, 4]
    fresh = [s for (s, new), (_, old) in zip(reports[1:], reports, strict=False) if new is not old]
    assert [0, *fresh] == [0, 1, 3, 4]
    assert result.run_dir == tmp_path / "synth-v2" / "tiny" / "t"
    names = sorted(p.name for p in (result.run_dir / "nerfstudio_models").iterdir())
    assert names == ["step-000000002.ckpt", "step-000000004.ckpt"]
    state = torch.load(result.run_dir / "nerfstudio_models" / names[-1], weights_only=True)
    keys = {"step", "pipeline", "optimizers", "schedulers", "scalers", "loader", "hash_grid"}
    assert set(state) == keys
    assert state["hash_grid"] == "torch"  # tinycudann does not import here
    transforms = json.loads((result.run_dir / "dataparser_transforms.json").read_text())
    assert len(transforms["transform"]) == 3 and transforms["scale"] > 0
    config = json.loads((result.run_dir / "config.json").read_text())
    options = config["options"]
    assert options["model"]["average_init_density"] == 0.01 and options["preset"] == "tiny"
    assert config["facts"]["hash_grid"] == options["model"]["implementation"] == "torch"


def test_downscale_trains_and_evaluates_on_images_n(v2_capture: Path, tmp_path: Path) -> None:
    """``--downscale 2`` reads images_2/ (from eyeful downscale); eval of the run follows it."""
    from eyeful_tools.downscale import downscale
    from trainer_adapter.evaluate import load_run
    from trainer_adapter.trainer import train

    data = v2_capture / "images-jpeg-1k"
    downscale(data, factors=[2], jobs=1)
    result = train(
        data,
        preset="tiny",
        max_steps=2,
        output_dir=tmp_path,
        device="cpu",
        timestamp="d",
        downscale=2,
        overrides={"train_num_rays_per_batch": 32},
    )
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["options"]["data"]["downscale"] == 2
    run = load_run(result.run_dir, device="cpu")
    full = json.loads((data / "transforms.json").read_text())["frames"][0]
    assert run.dataset.image_paths[0].parent.name == "images_2"
    assert run.dataset.cameras[0].width_px == full["w"] // 2


def test_ddp_two_gloo_processes(v2_capture: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    eyeful = Path(sys.executable).with_name("eyeful")
    if not torchrun.exists() or not eyeful.exists():
        pytest.fail("torchrun and the eyeful script must be installed in the venv")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(torchrun), "--standalone", "--nproc-per-node", "2", str(eyeful), "train",
        str(v2_capture / "images-jpeg-1k"), "--preset", "tiny", "--max-steps", "3",
        "--device", "cpu", "--output-dir", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoints = list(tmp_path.glob("synth-v2/tiny/*/nerfstudio_models/*.ckpt"))
    assert [c.name for c in checkpoints] == ["step-000000002.ckpt"]
    config = json.loads((checkpoints[0].parent.parent / "config.json").read_text())
    assert config["facts"]["world_size"] == 2 and config["facts"]["distributed"]
    run_dir = checkpoints[0].parent.parent  # only rank 0 writes the curves
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert steps == [0, 2]  # the first and the last step (steps_per_log 10)


def test_cli_train_eval_render(
    v2_capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = v2_capture / "images-jpeg-1k"
    rc = main(["train", str(data), "--preset", "tiny", "--max-steps", "2", "--device", "cpu",
               "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "trained to step 1" in capsys.readouterr().err
    run_dir = next((tmp_path / "out" / "synth-v2" / "tiny").iterdir())
    metrics_path = tmp_path / "metrics.json"
    assert main(["eval", str(run_dir), "--output", str(metrics_path), "--device", "cpu"]) == 0
    document = json.loads(metrics_path.read_text())
    for key in ("psnr", "ssim", "lpips", "num_rays_per_sec", "fps"):
        assert key in document["results"] and f"{key}_std" in document["results"]
    assert document["results"]["lpips"] is None and "lpips" in document["notes"]
    side = list((run_dir / "eval" / "test" / "side_by_side").glob("*.png"))
    assert len(side) == document["num_images"] > 0
    from eyeful_tools.imageio import read_image

    assert read_image(side[0]).shape == (75, 100, 3)  # gt | render
    path = {
        "render_width": 16, "render_height": 12, "fps": 10,
        "camera_path": [
            {"camera_to_world": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0.3, 0, 0, 0, 1], "fov": 60},
            {"camera_to_world": [0, 0, 1, 0.3, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], "fov": 50},
        ],
    }  # fmt: skip
    path_file = tmp_path / "path.json"
    path_file.write_text(json.dumps(path))
    video = tmp_path / "path.mp4"
    rc = main(["render", str(run_dir), "--camera-path", str(path_file), "--output", str(video),
               "--device", "cpu"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    import cv2

    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 16
    capture.release()
    orbit = tmp_path / "orbit.mp4"
    rc = main(["render", str(run_dir), "--output", str(orbit), "--frames", "2", "--device", "cpu",
               "--width", "32", "--height", "24"])  # fmt: skip
    assert rc == 0 and orbit.stat().st_size > 0
    _render_panoramas(run_dir, path, tmp_path, capsys)


def _render_panoramas(
    run_dir: Path, path: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--camera-type`` and the camera path's ``camera_type`` (issue 19): an equirectangular
    orbit video; an ODS path as PNG frames, left eye on top with the IPD in the run's scale;
    VR180 side by side; an unknown camera_type and an existing output refused in one line."""
    import cv2
    import numpy as np
    from helpers import spherical_payload

    import trainer_adapter.render as render
    from eyeful_tools.cameras import RenderCameraType, StereoLayout
    from eyeful_tools.imageio import read_image
    from trainer_adapter.evaluate import load_run

    cpu = ["--device", "cpu"]
    equi = tmp_path / "equi.mp4"
    rc = main(["render", str(run_dir), "--camera-type", "equirectangular", "--output", str(equi),
               "--frames", "1", "--width", "32", "--height", "16", *cpu])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    capture = cv2.VideoCapture(str(equi))
    size = (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    assert size == (32, 16) and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 1
    capture.release()
    payload = spherical_payload(equi)  # 360-degree video metadata, as ns-render adds
    assert payload is not None and b"equirectangular" in payload and b"StereoMode" not in payload
    path_file = tmp_path / "ods_path.json"
    path_file.write_text(json.dumps({**path, "camera_type": "omnidirectional"}))
    frames_dir = tmp_path / "ods"
    ods = ["render", str(run_dir), "--camera-path", str(path_file), "--output", str(frames_dir),
           "--ipd", "0.5", *cpu]  # fmt: skip
    assert main(ods) == 0, capsys.readouterr().err
    frames = sorted(frames_dir.iterdir())
    assert [f.name for f in frames] == ["00000.png", "00001.png"]
    run = load_run(run_dir, "cpu")
    ipd = 0.5 * run.dataset.dataparser_scale
    left, right = render.render_eyes(RenderCameraType.ODS, 16, 12, 60.0, ipd)
    pose = render.read_camera_path(path_file).poses[1]
    expected = [
        render.render_frame(run, [eye], pose, StereoLayout.TOP_BOTTOM) for eye in (left, right)
    ]
    np.testing.assert_array_equal(read_image(frames[1]), np.concatenate(expected, axis=0))
    capsys.readouterr()
    assert main(ods) == 1  # the frames folder exists
    assert capsys.readouterr().err.strip() == (
        f"error: {frames_dir}: already exists (pass --overwrite to replace it)"
    )
    assert main([*ods[:2], "--camera-type", "vr180", *ods[2:], "--overwrite"]) == 0
    assert read_image(sorted(frames_dir.iterdir())[0]).shape == (12, 32, 3)  # left | right
    path_file.write_text(json.dumps({**path, "camera_type": "cubemap"}))
    capsys.readouterr()
    assert main([*ods, "--overwrite"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {path_file}: camera_type 'cubemap' is not one of perspective, fisheye, "
        "equirectangular, omnidirectional, ods, vr180"
    )


def test_cli_errors(v2_capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'config.json'}: not a training run (config.json missing)"
    )
    data = v2_capture / "images-jpeg-1k"
    assert main(["train", str(data), "--preset", "huge", "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --preset: unknown preset 'huge'") and not any(tmp_path.iterdir())
    for bad_stride, why in (
        ("two", "--pool-stride: must be 'auto' or a positive integer, got 'two'"),
        ("0", "pool_stride must be at least 1, got 0"),
        ("100000", "pool_stride 100000 is larger than the smallest image side (50 px)"),
    ):
        argv = ["train", str(data), "--pool-stride", bad_stride, "--output-dir", str(tmp_path)]
        argv += ["--preset", "tiny", "--cache-bytes", "100000"]
        assert main(argv) == 1
        assert capsys.readouterr().err.strip() == f"error: {why}"
        assert not any(tmp_path.iterdir()), "a loader option is refused before the run folder"
    run = tmp_path / "run"
    (run / "nerfstudio_models").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"options": {"data": {"data": str(data)}}}))
    bad = run / "nerfstudio_models" / "step-000000001.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["eval", str(run)]) == 1
    assert capsys.readouterr().err.strip().startswith(f"error: {bad}: not a loadable checkpoint")
    bad_path = tmp_path / "bad_path.json"
    bad_path.write_text(json.dumps({"render_width": 8, "render_height": 8, "camera_path": []}))
    from eyeful_tools.errors import InputFormatError
    from trainer_adapter.render import read_camera_path

    with pytest.raises(InputFormatError, match="camera_path is empty"):
        read_camera_path(bad_path)


def test_device_helpers() -> None:
    from eyeful_tools.errors import UsageError
    from trainer_adapter import device as devices

    cpu = devices.resolve_device("cpu")
    assert cpu.type == "cpu"
    assert devices.resolve_device("auto").type in ("cpu", "cuda", "xpu", "mps")
    with pytest.raises(UsageError):
        devices.resolve_device("tpu")
    assert devices.autocast_dtype(cpu, True) is None  # fp32 on CPU, as nerfstudio
    assert devices.autocast_dtype(cpu, False, cpu_bf16=True) == torch.bfloat16
    assert devices.autocast_dtype(torch.device("cuda"), True) == torch.float16
    assert not devices.grad_scaler(cpu, None).is_enabled()
    assert devices.distributed_backend(cpu) == "gloo"
    assert devices.peak_memory_bytes(cpu) > 0
    devices.synchronize(cpu)
    devices.empty_cache(cpu)


_REFAULT_PROBE = """
import ctypes, resource, sys
from trainer_adapter.device import keep_freed_host_memory
applied = keep_freed_host_memory() if sys.argv[1] == "keep" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
def touched(size=128 << 20):  # above glibc's largest mmap threshold (32 MiB)
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
touched()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touched()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_freed_host_memory_is_reused_without_page_faults() -> None:
    """A CPU step's large tensors cost page faults each time glibc maps them afresh; after
    keep_freed_host_memory (the trainer's default on the CPU) a freed 128 MiB block is reused:
    no new faults. The control (glibc's defaults) faults every page in again."""
    faults = {}
    for mode in ("default", "keep"):
        result = subprocess.run(
            [sys.executable, "-c", _REFAULT_PROBE, mode],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        applied, count = result.stdout.split()
        faults[mode] = (applied, int(count))
    pages = (128 << 20) // 4096
    assert faults["default"][0] == "False" and faults["default"][1] > pages // 2, faults
    assert faults["keep"][0] == "True" and faults["keep"][1] < pages // 20, faults


def test_metrics_psnr_ssim() -> None:
    from trainer_adapter.evaluate import aggregate, psnr, ssim

    torch.manual_seed(0)
    image = torch.rand(32, 40, 3)
    assert ssim(image, image) == pytest.approx(1.0)
    noisy = (image + 0.1 * torch.randn_like(image)).clamp(0, 1)
    assert 0.0 < ssim(noisy, image) < 0.95
    assert psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.1)) == pytest.approx(20.0)
    results = aggregate([{"psnr": 10.0, "lpips": None}, {"psnr": 12.0, "lpips": None}])
    assert results["psnr"] == 11.0 and results["psnr_std"] == pytest.approx(2**0.5)
    assert results["lpips"] is None


def test_trainer_object_setup_step_save_load_evaluate(v2_capture: Path, tmp_path: Path) -> None:
    """The pieces ``train()`` is made of, used one by one (the API a new loop builds on)."""
    import math

    from trainer_adapter.checkpoints import load_checkpoint
    from trainer_adapter.runs import resolve_options
    from trainer_adapter.trainer import Trainer

    options, _ = resolve_options(
        v2_capture / "images-jpeg-1k",
        preset="tiny",
        settings={"device": "cpu", "output_dir": tmp_path, "train_num_rays_per_batch": 32},
    )
    assert options.model.num_levels == 12 and options.loader.train_num_rays_per_batch == 32
    trainer = Trainer(options)
    trainer.setup()
    try:
        losses = trainer.train_step(0)
        assert set(losses) == {"rgb_loss", "interlevel_loss", "distortion_loss", "loss"}
        path = trainer.save(0)
    finally:
        trainer.close()
    other = Trainer(options)
    other.setup()
    other.close()
    other.load(load_checkpoint(path), path)
    assert other.start_step == 1
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, other.model.state_dict()[key]), key
    results = trainer.evaluate(max_images=1).results
    assert math.isfinite(results["psnr"])
