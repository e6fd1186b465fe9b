"""Strided pool slots: a slot holds every n-th row and column of its image (a fresh lattice each
pass), so a budget too small for the split holds n*n times the images and every batch mixes rays
from (nearly) every image, as full load does (docs/loader.md, "Pixel stride")."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_loader import batches, make_dataset

from eyeful_tools.cameras import CameraModel
from eyeful_tools.errors import UsageError
from eyeful_tools.imageio import read_image
from trainer_adapter.data.loader import RayLoader
from trainer_adapter.data.parser import parse_dataset
from trainer_adapter.data.rays import valid_pixel_mask
from trainer_adapter.data.schedule import ImageStream, choose_stride, lattice_bytes, plan_pool


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("kind", ["plain", "fisheye", "masks", "exr"])
def test_a_strided_pool_gives_each_ray_its_own_pixel_and_reaches_every_valid_one(
    tmp_path: Path, kind: str, stride: int
) -> None:
    """Every ray's colour is the decoded image's at the ray's (row, col), never a neighbour's;
    nothing outside the valid region is drawn; over stride**2 passes every valid pixel is."""
    dataset = parse_dataset(
        make_dataset(
            tmp_path,
            count=4,
            model=CameraModel.OPENCV_FISHEYE if kind == "fisheye" else CameraModel.OPENCV,
            crop_radius=7.0 if kind == "fisheye" else None,
            masks=kind == "masks",
            exr=kind == "exr",
        )
    )
    train = dataset.indices("train")
    images = {int(i): read_image(dataset.image_paths[i]).astype(np.float32) for i in train}
    scale = 1.0 if kind == "exr" else 1.0 / 255.0
    valid = valid_pixel_mask(dataset.cameras[0])
    if kind == "masks":
        valid[: 16 // 2, : 20 // 3] = False
    hits = np.zeros((len(dataset), *valid.shape), dtype=np.int64)
    options = dict(rays_per_batch=2048, pool_images=2, swap_rate=1, pool_stride=stride)
    with RayLoader(dataset, **options) as loader:
        assert loader.plan.stride == stride and loader._pixels.shape[1:3] == (
            -(-16 // stride),
            -(-20 // stride),
        )
        for batch in batches(loader, len(train) * stride * stride + 2):
            index = batch["image_index"].numpy()
            rows, cols = batch["pixels"].numpy().T
            expected = np.stack(
                [images[int(i)][r, c] for i, r, c in zip(index, rows, cols, strict=True)]
            )
            np.testing.assert_array_equal(batch["rgb"].numpy(), expected * np.float32(scale))
            np.add.at(hits, (index, rows, cols), 1)
    for i in train:
        assert np.all(hits[i][valid] > 0), "every valid pixel comes round"
        assert np.all(hits[i][~valid] == 0), "nothing outside the valid region is drawn"


def test_each_image_takes_every_lattice_once_in_stride_squared_passes() -> None:
    count, stride = 30, 3
    stream = ImageStream(np.arange(100, 100 + count), seed=7)
    rows = stream.rows(range(0, count * stride * stride))
    offsets = stream.lattice_offsets(range(0, count * stride * stride), stride)
    assert offsets.min() == 0 and offsets.max() == stride - 1
    lattices = offsets[:, 0] * stride + offsets[:, 1]
    for row in range(count):
        assert sorted(lattices[rows == row].tolist()) == list(range(stride * stride))
    assert len(set(lattices[:count].tolist())) > 1, "images of one pass differ in lattice"
    assert not stream.lattice_offsets(range(0, count), 1).any()


def test_auto_stride_is_the_smallest_whose_pool_holds_the_split() -> None:
    shape, per_pixel = (96, 144), 3
    whole = lattice_bytes(shape, per_pixel, 1)
    assert lattice_bytes(shape, per_pixel, 4) == 24 * 36 * 3
    # the split fits whole, or no budget: whole images, held resident
    assert choose_stride(280, shape, per_pixel, cache_bytes=280 * whole) == 1
    assert choose_stride(280, shape, per_pixel, cache_bytes=None) == 1
    # a tenth of the data: 4 (2 and 3 hold 98 and 220 of the 280 images)
    assert choose_stride(280, shape, per_pixel, cache_bytes=28 * whole) == 4
    # half: 2 already holds the split (and its staging)
    assert choose_stride(280, shape, per_pixel, cache_bytes=140 * whole) == 2
    # far too small a budget: the coarsest automatic stride, and never past an image side
    assert choose_stride(10_000, shape, per_pixel, cache_bytes=28 * whole) == 4
    assert choose_stride(10_000, (3, 500), per_pixel, cache_bytes=whole) == 3
    assert choose_stride(280, shape, per_pixel, cache_bytes=28 * whole, stride=2) == 2
    # a lattice holds 16 batches' worth of pixels: at 512 rays 96x144 takes whole images (stride
    # 2 holds 3,456 pixels < 8,192), at 54 rays stride 4 (864 pixels)
    tenth = dict(cache_bytes=28 * whole)
    assert choose_stride(280, shape, per_pixel, rays_per_batch=512, **tenth) == 1
    assert choose_stride(280, shape, per_pixel, rays_per_batch=200, **tenth) == 2
    assert choose_stride(280, shape, per_pixel, rays_per_batch=54, **tenth) == 4
    for bad in (0, 1.5, "two", True, float("inf"), float("nan")):
        with pytest.raises(UsageError, match="pool_stride must be"):
            choose_stride(280, shape, per_pixel, cache_bytes=None, stride=bad)
    assert choose_stride(280, shape, per_pixel, cache_bytes=None, stride=np.int64(3)) == 3
    with pytest.raises(UsageError, match=r"pool_stride 97 is larger than the smallest image side"):
        choose_stride(280, shape, per_pixel, cache_bytes=None, stride=97)
    # pool_images caps the pool: 20 whole images fit beside their staging, 25 do not
    assert choose_stride(280, shape, per_pixel, pool_images=20, **tenth) == 1
    assert choose_stride(280, shape, per_pixel, pool_images=25, rays_per_batch=54, **tenth) == 2
    assert choose_stride(280, shape, per_pixel, pool_images=60, rays_per_batch=54, **tenth) == 2


def test_a_strided_plan_always_streams_and_never_exceeds_the_split() -> None:
    plan = plan_pool(10, 100, cache_bytes=100_000, stride=2)
    assert not plan.resident and plan.pool_images == 10 and plan.stride == 2
    assert plan_pool(10, 100, cache_bytes=100_000).resident  # whole images that fit: resident
    unbounded = plan_pool(10, 100, cache_bytes=None, stride=2)
    assert not unbounded.resident and unbounded.pool_images == 10


def test_the_default_cache_holds_a_2k_capture_at_stride_3(tmp_path: Path) -> None:
    """The nerfacto preset's 2 GiB on riverview's 960 2K JPEGs: stride 3 puts all 960 in the
    pool (whole images: 223); apartment's 3,800 fit 3,577 at stride 4."""
    from trainer_adapter.presets import make_options

    budget = make_options("nerfacto").loader.cache_bytes
    shape = (1368, 2048)
    rays = make_options("nerfacto").loader.train_num_rays_per_batch
    assert choose_stride(960, shape, 3, cache_bytes=budget, rays_per_batch=rays) == 3
    plan = plan_pool(960, lattice_bytes(shape, 3, 3), cache_bytes=budget, stride=3)
    assert plan.pool_images == 960 and plan.pool_bytes <= budget
    assert choose_stride(3800, shape, 3, cache_bytes=budget, rays_per_batch=rays) == 4
    plan = plan_pool(3800, lattice_bytes(shape, 3, 4), cache_bytes=budget, stride=4)
    assert plan.pool_images == 3577 and plan.pool_bytes <= budget


@pytest.mark.parametrize("swap_rate", [1.5, "auto"])
def test_a_pool_of_the_whole_split_holds_each_image_exactly_once(
    tmp_path: Path, swap_rate: float | str
) -> None:
    """When the strided pool holds the whole split, each image is replaced by its own next
    lattice: at every step every training image is in the pool exactly once (a fresh order per
    pass would leave some out for up to half a pass and hold others twice)."""
    dataset = parse_dataset(make_dataset(tmp_path, count=12))
    train = sorted(dataset.indices("train").tolist())
    options = dict(
        rays_per_batch=64, cache_bytes=6 * 20 * 16 * 3, swap_rate=swap_rate, pool_stride=2
    )
    with RayLoader(dataset, seed=4, **options) as loader:
        assert loader.plan.stride == 2 and loader.plan.pool_images == len(train)
        for _ in range(40):
            loader.next_batch()
            assert sorted(loader._pool_index.tolist()) == train
        coverage = loader.coverage()
    assert coverage.passes >= 2 or swap_rate == "auto"
    assert coverage.pool_visits.max() >= 2, "images were replaced by their next lattice"
    assert f"through a pool of {len(train)} at pixel stride 2, " in coverage.summary()
    assert coverage.to_json()["pool_stride"] == 2


def test_a_lattice_too_thin_for_the_mask_is_one_line_naming_the_stride(tmp_path: Path) -> None:
    """A mask whose valid area is one pixel column has no pixel on half the lattices: the run
    stops with one line that says what to change, not a bare 'masks are empty'."""
    from eyeful_tools.errors import InputFormatError
    from eyeful_tools.imageio import write_image

    data = make_dataset(tmp_path, count=4, masks=True)
    for mask in sorted((data / "masks").iterdir()):
        thin = np.zeros((16, 20), dtype=np.uint8)
        thin[:, 7] = 255
        write_image(mask, thin)
    dataset = parse_dataset(data)
    with RayLoader(dataset, rays_per_batch=64, pool_images=2, swap_rate=1, pool_stride=1) as ok:
        for batch in batches(ok, 6):
            assert (batch["pixels"][:, 1] == 7).all()
    loader = RayLoader(dataset, rays_per_batch=64, pool_images=2, swap_rate=1, pool_stride=2)
    with loader, pytest.raises(InputFormatError) as raised:
        batches(loader, 40)
    assert str(raised.value) == (
        "could not sample valid pixels: masks are (nearly) empty, or too thin for the pool's "
        "pixel stride 2: train with --pool-stride 1"
    )


def test_a_run_from_before_strided_pools_resumes_with_whole_images() -> None:
    from trainer_adapter.options import TrainOptions, options_from_legacy

    old = TrainOptions.from_dict({"loader": {"cache_bytes": 123, "swap_rate": "auto"}})
    assert old.loader.pool_stride == 1 and old.loader.cache_bytes == 123
    assert TrainOptions.from_dict(TrainOptions().to_dict()).loader.pool_stride == "auto"
    flat = options_from_legacy({"config": {"cache_bytes": 123}, "data": "x"})
    assert flat.loader.pool_stride == 1 and flat.loader.cache_bytes == 123


def test_the_summary_says_how_much_of_each_image_a_short_strided_run_drew_from(
    tmp_path: Path,
) -> None:
    dataset = parse_dataset(make_dataset(tmp_path, count=12))
    options = dict(rays_per_batch=64, cache_bytes=6 * 20 * 16 * 3, swap_rate=1, pool_stride=2)
    with RayLoader(dataset, **options) as loader:
        batches(loader, 12)  # 11 + 11 positions: 2 passes of 4 lattices
        coverage = loader.coverage()
    assert coverage.passes == 2
    assert (
        "each image was in the pool as 2 of its 4 pixel lattices (stride 2), so rays came "
        "from about 50% of its pixels" in coverage.summary()
    )


def test_a_whole_split_lattice_pool_resumes_with_each_rays_own_pixel(tmp_path: Path) -> None:
    """A pool of the whole split (stride 2, the first pass's order repeated), stopped and
    resumed: the resumed batches are the straight run's, and every ray's colour is its pixel's."""
    from test_loader import assert_same_batches

    dataset = parse_dataset(make_dataset(tmp_path, count=12))
    images = {int(i): read_image(dataset.image_paths[i]) for i in dataset.indices("train")}
    options = dict(
        rays_per_batch=256, cache_bytes=6 * 20 * 16 * 3, swap_rate=1.5, pool_stride=2, seed=9
    )
    with RayLoader(dataset, **options) as straight:
        assert straight.plan.pool_images == len(images)
        expected = batches(straight, 30)
    with RayLoader(dataset, **options) as first:
        batches(first, 17)
        state = first.state_dict()
    with RayLoader(dataset, **options) as resumed:
        resumed.load_state_dict(state)
        assert_same_batches(batches(resumed, 13), expected[17:])
    for batch in expected:
        index = batch["image_index"].numpy()
        rows, cols = batch["pixels"].numpy().T
        colours = np.stack(
            [images[int(i)][r, c] for i, r, c in zip(index, rows, cols, strict=True)]
        )
        np.testing.assert_array_equal(batch["rgb"].numpy(), colours * np.float32(1.0 / 255.0))


def test_full_load_refuses_the_stride_lazy_mode_would(tmp_path: Path) -> None:
    """Full load ignores the stride, but a value lazy mode refuses is the same one line there."""
    dataset = parse_dataset(make_dataset(tmp_path, count=4))
    for bad, why in ((0, "at least 1"), (97, "larger than the smallest image side (16 px)")):
        with pytest.raises(UsageError, match=rf"pool_stride .*{re.escape(why)}"):
            RayLoader(dataset, mode="full", pool_stride=bad)
