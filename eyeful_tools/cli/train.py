"""``eyeful train`` / ``eyeful eval`` / ``eyeful render``: the bundled Nerfacto.

torch and ``trainer_adapter`` are imported inside the commands, so the CLI (and the data tools)
load without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from eyeful_tools.cli._app import app, console, need_torch, summary
from eyeful_tools.errors import UsageError


def _auto_or_int(option: str, text: str | None) -> int | str | None:
    """``--downscale`` / ``--pool-stride``: ``auto`` or an integer (its range is checked where
    the option is used: with the other options, or by the loader)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return int(text)
    except ValueError:
        raise UsageError(option, f"must be 'auto' or a positive integer, got {text!r}") from None


# the longer options of ``eyeful train``, defined apart so the command stays readable
_POOL_STRIDE = typer.Option(
    None,
    help="auto | N: when the images do not fit --cache-bytes, a pool slot holds every Nth "
    "pixel row and column (a new lattice each pass), so the pool holds N*N times the "
    "images; 1: whole images (default auto, docs/loader.md).",
)
_DOWNSCALE = typer.Option(
    None,
    help="N: train on images_N/ (from eyeful downscale); auto (default): as ns-train, the "
    "copies that bring the largest side to <= 1600 px when they exist. Eval and render follow.",
)
_COMPILE = typer.Option(
    None,
    "--compile/--no-compile",
    help="Fused hash-grid kernels, the same maths: C++ on CPU (built once, about 40 s; "
    "nerfacto steps about 2.5x faster), torch.compile on GPUs (default off).",
)


@app.command("train")
def train_command(
    data: Path = typer.Argument(..., help="A dataset folder (with transforms.json) or the file."),
    preset: str | None = typer.Option(
        None, help="tiny | nerfacto | nerfacto-big (default nerfacto; with --load-dir the run's)."
    ),
    max_steps: int | None = typer.Option(
        None, help="Total steps (default: the preset's). With --load-dir, more extends the run."
    ),
    output_dir: Path | None = typer.Option(
        None, help="Runs go to DIR/<capture>/<preset>/<time>/ (default outputs)."
    ),
    load_dir: Path | None = typer.Option(
        None, help="Resume this run (or its checkpoints) with its preset, data and options."
    ),
    device: str | None = typer.Option(None, help="auto | cpu | cuda | xpu | mps"),
    cache_bytes: int | None = typer.Option(None, help="Bound on decoded training images, bytes."),
    pool_stride: str | None = _POOL_STRIDE,
    downscale: str | None = _DOWNSCALE,
    orientation: str | None = typer.Option(
        None, help="up | pca | vertical | none: how the world is rotated (as nerfstudio)."
    ),
    center: str | None = typer.Option(None, help="poses | focus | none: what goes to the origin."),
    eval_mode: str | None = typer.Option(
        None,
        help="fraction | filename | interval | all: the split when transforms.json lists none.",
    ),
    eval_interval: int | None = typer.Option(
        None, help="--eval-mode interval: every Nth image is held out (default 8)."
    ),
    curves: bool | None = typer.Option(
        None,
        "--curves/--no-curves",
        help="TensorBoard events, metrics.jsonl and curves.png in the run folder (default on).",
    ),
    steps_per_eval_image: int | None = typer.Option(
        None,
        help="Add a held-out view (ground truth | render) to the curves every N steps "
        "(0: never; default 500, tiny 0).",
    ),
    compile_encodings: bool | None = _COMPILE,
    viewer: bool = typer.Option(
        False, "--viewer", help="Show the run in the browser as it trains (needs eyeful[view])."
    ),
    viewer_port: int = typer.Option(8080, help="--viewer: port (the next free one if taken)."),
    viewer_host: str = typer.Option(
        "127.0.0.1", help="--viewer: address to serve on; 0.0.0.0 exposes it to the network."
    ),
) -> None:
    """Train Nerfacto on a converted capture; writes config, dataparser transforms, checkpoints.

    Options left out take the preset's values (see docs/train.md); the dataparser options are
    nerfstudio's. All are stored with the run, so eval, render and --load-dir use them.

    Example: eyeful train data/eyefultower/riverview/images-jpeg-2k --preset tiny --max-steps 500

    Example: eyeful train ns-data/poster --orientation vertical --eval-mode interval
    """
    need_torch()
    from trainer_adapter.runs import resolve_options

    settings = {
        "max_steps": max_steps, "device": device, "cache_bytes": cache_bytes,
        "pool_stride": _auto_or_int("--pool-stride", pool_stride),
        "output_dir": None if output_dir is None else str(output_dir),
        "downscale": _auto_or_int("--downscale", downscale), "orientation": orientation, "center": center,
        "eval_mode": eval_mode, "eval_interval": eval_interval, "curves": curves,
        "steps_per_eval_image": steps_per_eval_image, "compile_encodings": compile_encodings,
    }  # fmt: skip
    # bad options and resume mismatches fail here, before anything is shown or written
    options, checkpoint = resolve_options(data, preset=preset, load_dir=load_dir, settings=settings)
    result = _train(options, checkpoint, viewer, viewer_host, viewer_port)
    summary(_trained_line(result))


def _train(options: Any, checkpoint: Path | None, viewer: bool, host: str, port: int) -> Any:
    """Train with the live viewer served around the run when asked (and this process serves
    it), stopping the server however training ends."""
    shown = _serves_viewer(viewer)
    observers, stop = _start_viewer(options, host, port) if shown else ([], None)
    try:
        return _train_with_progress(options, checkpoint, observers)
    finally:
        if stop is not None:
            stop()


def _trained_line(result: Any) -> str:
    """The one-line summary of a finished run: where it is, its last step, train PSNR, speed
    and (when tracked) how many training images the sampled rays reached."""
    stats = result.stats
    return (
        f"trained to step {result.last_step} in {result.run_dir} "
        f"(train psnr {stats.get('psnr', float('nan')):.2f} dB, "
        f"{stats.get('mean_rays_per_sec', stats.get('rays_per_sec', 0.0)):.0f} rays/s)"
        + (f"; {result.coverage.summary()}" if result.coverage is not None else "")
    )


def _serves_viewer(asked: bool) -> bool:
    """Under torchrun only rank 0 serves ``--viewer``: it is the one that renders, and one URL
    is printed, not one per process."""
    from trainer_adapter.trainer import launch_rank

    return asked and launch_rank() == 0


def _start_viewer(options: Any, host: str, port: int) -> tuple[list[Any], Any]:
    """``--viewer``: serve the dataset's view now (its URL printed before training starts) and
    the observer that renders the model into it as it trains; and what stops the server."""
    from eyeful_tools.cli._app import out
    from eyeful_tools.view.content import load_content
    from eyeful_tools.view.server import import_viser, start_viewer
    from trainer_adapter.data.parser import parse_dataset, resolve_downscale
    from trainer_adapter.live_render import TrainingView

    import_viser()  # the missing-extra error before anything is read
    kwargs = options.data.parser_kwargs()
    # the images training reads (poses do not depend on it, but images_1 may not be there)
    kwargs["downscale"] = resolve_downscale(options.data.data, kwargs["downscale"])
    dataset = parse_dataset(options.data.data, **kwargs)
    normalised = dataset.normalised_from_transforms_world()
    viewer = start_viewer(load_content(dataset.transforms_path, normalised), host, port)
    out.print(f"viewer: open {viewer.url} (it stops when training ends)", soft_wrap=True)
    return [TrainingView(viewer.server)], viewer.stop


def _train_with_progress(options: Any, checkpoint: Path | None, observers: list[Any]) -> Any:
    """Train under a rich progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from trainer_adapter.data.coverage import progress_text
    from trainer_adapter.trainer import run_training

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f} psnr {task.fields[psnr]:.2f}"),
        TextColumn("{task.fields[rays]:.0f} rays/s"),
        TextColumn("{task.fields[coverage]}"),
        TimeRemainingColumn(),
    )
    # off when stderr is not a terminal: a transient bar would leave a blank line before the
    # one-line error of a failed run
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task("train", total=None, loss=0.0, psnr=0.0, rays=0.0, coverage="")

        def report(step: int, total: int, stats: dict[str, float]) -> None:
            progress.update(
                task,
                total=total,
                completed=step + 1,
                loss=stats["loss"],
                psnr=stats["psnr"],
                rays=stats["rays_per_sec"],
                coverage=progress_text(stats),
            )

        return run_training(options, checkpoint, report=report, observers=observers)


@app.command("eval")
def eval_command(
    run_dir: Path = typer.Argument(..., help="A training run folder (with config.json)."),
    split: str = typer.Option("test", help="train | val | test"),
    output: Path | None = typer.Option(None, help="Metrics JSON (default RUN_DIR/eval/SPLIT/)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | xpu | mps"),
    chunk_bytes: int | None = typer.Option(
        None, help="Memory budget of one render chunk, bytes (default 1 GiB; at most a batch)."
    ),
) -> None:
    """Render a split and write ns-eval style metrics, renders and gt|render images.

    Example: eyeful eval outputs/riverview/tiny/2026-01-01_120000 --split test
    """
    need_torch()
    from trainer_adapter.evaluate import evaluate

    result = evaluate(run_dir, split=split, output=output, device=device, chunk_bytes=chunk_bytes)
    r = result.results
    summary(
        f"{len(result.per_image)} {split} images: psnr {r['psnr']:.2f} dB, ssim {r['ssim']:.3f}, "
        f"lpips null, {r['num_rays_per_sec']:.0f} rays/s -> {result.metrics_path}"
    )


@app.command("render")
def render_command(
    run_dir: Path = typer.Argument(..., help="A training run folder (with config.json)."),
    output: Path = typer.Option(
        ..., help="A video (.mp4, .avi) or a folder (no suffix) for 00000.png, 00001.png, ..."
    ),
    camera_path: Path | None = typer.Option(
        None, help="nerfstudio camera path JSON (viewer or Blender add-on; default: an orbit)."
    ),
    camera_type: str | None = typer.Option(
        None,
        help="perspective | fisheye | equirectangular | vr180 | ods (default: the camera "
        "path's camera_type, else perspective).",
    ),
    ipd: float = typer.Option(
        0.064, help="Eye distance of vr180 and ods in metres of the capture (nerfstudio's 64 mm)."
    ),
    stereo_layout: str | None = typer.Option(
        None,
        help="top-bottom | side-by-side: how the eyes share a frame, left first (default as "
        "ns-render: ods top-bottom, vr180 side-by-side).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    frames: int | None = typer.Option(
        None, help="Orbit frames (default 60; a camera path sets its own)."
    ),
    width: int | None = typer.Option(
        None, help="Orbit frame width per eye (default 320; 512 for panoramas, 256 for vr180)."
    ),
    height: int | None = typer.Option(
        None, help="Orbit frame height per eye (default 240; 256 for panoramas and vr180)."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda | xpu | mps"),
    chunk_bytes: int | None = typer.Option(
        None, help="Memory budget of one render chunk, bytes (default 1 GiB; at most a batch)."
    ),
) -> None:
    """Render a nerfstudio camera path, or an orbit around the scene, to a video or PNG frames.

    Example: eyeful render outputs/riverview/tiny/2026-01-01_120000 --camera-type ods
    --output ods.mp4
    """
    need_torch()
    from eyeful_tools.cameras import RenderCameraType, StereoLayout
    from trainer_adapter.render import ORBIT_SIZE_PX, render_video

    _refuse_orbit_options(camera_path, frames=frames, width=width, height=height)
    kind = _choice("--camera-type", camera_type, RenderCameraType)
    layout = _choice("--stereo-layout", stereo_layout, StereoLayout)
    size = None
    if width is not None or height is not None:
        default = ORBIT_SIZE_PX[kind or RenderCameraType.PERSPECTIVE]
        size = (width or default[0], height or default[1])
    path, count = render_video(
        run_dir,
        output,
        camera_path=camera_path,
        camera_type=kind,
        ipd_m=ipd,
        stereo_layout=layout,
        overwrite=overwrite,
        device=device,
        frames=60 if frames is None else frames,
        orbit_size_px=size,
        chunk_bytes=chunk_bytes,
    )
    summary(f"rendered {count} frames -> {path}")


def _refuse_orbit_options(camera_path: Path | None, **orbit: int | None) -> None:
    """--frames/--width/--height shape the orbit; with a camera path they would be ignored."""
    given = [name for name, value in orbit.items() if value is not None]
    if camera_path is not None and given:
        raise UsageError(
            f"--{given[0]}",
            "shapes the orbit only; a camera path sets its own size and frame count "
            "(render_width, render_height, fps x seconds)",
        )


def _choice(flag: str, value: str | None, choices: type[Any]) -> Any:
    """``value`` as a member of the enum ``choices`` (None stays None), or a one-line error."""
    if value is None:
        return None
    try:
        return choices(value.strip().lower())
    except ValueError:
        names = ", ".join(member.value for member in choices)
        raise UsageError(flag, f"{value!r} is not one of {names}") from None
