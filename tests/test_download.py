"""eyeful download: selection, incremental re-runs, repair, safety, faults, interrupts.

Everything talks real S3 over HTTP to a moto server on 127.0.0.1 (see ``s3_fixtures``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import namedtuple
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import botocore
import pytest
from s3_fixtures import BUCKET, HOSTILE_KEYS, PREFIX, fault_proxy, mini_bucket

from eyeful_tools import catalog
from eyeful_tools.cli import main
from eyeful_tools.download import DownloadRequest, capture_selector, plan_download, run_download
from eyeful_tools.errors import DownloadError, UsageError
from eyeful_tools.s3sync import (
    MANIFEST_NAME,
    PARTIAL_SUFFIX,
    TransferOptions,
    UnsafeKeyError,
    make_client,
    partial_path,
)
from eyeful_tools.s3sync.keys import SIDECAR_SUFFIX, safe_relative_path
from eyeful_tools.s3sync.parts import wants_parts
from eyeful_tools.s3sync.transfer import (
    ETagHasher,
    check_with_s3_part_sizes,
    hash_file_matches,
    verify_partial,
)

__all__ = ["mini_bucket"]  # the fixture, imported so pytest finds it
FAST = TransferOptions(attempts=6, backoff_base_s=0.005, backoff_max_s=0.02, chunk_bytes=16384)


def _tree(root: Path) -> dict[str, bytes]:
    """Relative posix path -> bytes of every regular file below ``root`` (sync's own files too)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _expected(src: Path, resolutions: list[str], include: list[str] = ()) -> dict[str, bytes]:
    select, _ = capture_selector(resolutions, list(include))
    return {rel: data for rel, data in _tree(src).items() if select(rel)}


def _downloaded(dest: Path) -> dict[str, bytes]:
    return {k: v for k, v in _tree(dest).items() if not k.endswith(MANIFEST_NAME)}


def _cli(bucket, dest: Path, *args: str) -> list[str]:
    return [
        "download", "--endpoint-url", bucket.endpoint_url, "--bucket", BUCKET,
        "--prefix", PREFIX, "--dest", str(dest), "--jobs", "4", *args,
    ]  # fmt: skip


def _request(bucket, dest: Path, name: str, **kwargs) -> DownloadRequest:
    return DownloadRequest(
        captures=[name],
        resolutions=kwargs.pop("resolutions", ["jpeg_2k"]),
        dest=dest,
        endpoint_url=kwargs.pop("endpoint_url", bucket.endpoint_url),
        bucket=BUCKET,
        prefix=PREFIX,
        jobs=kwargs.pop("jobs", 4),
        **kwargs,
    )


def _sync(bucket, dest: Path, name: str, options=FAST, progress=None, **kwargs):
    request = _request(bucket, dest, name, **kwargs)
    client = (
        make_client(request.endpoint_url, jobs=request.jobs) if "endpoint_url" in kwargs else None
    )
    plan = plan_download(request, client=client)
    return run_download(plan, convert=False, options=options, progress=progress)


# --- selection ------------------------------------------------------------------------------


def test_default_selection_is_calibration_plus_one_resolution(
    mini_bucket, tmp_path, capsys
) -> None:
    src = mini_bucket.add_capture("sel")
    assert main(_cli(mini_bucket, tmp_path, "--capture", "sel", "--no-convert")) == 0
    got = _downloaded(tmp_path / "sel")
    want = _expected(src, ["jpeg_2k"])
    assert got == want
    assert {"cameras.json", "cameras.xml", "splits.json"} <= set(got)
    assert any(k.startswith("images-jpeg-2k/10/") for k in got)
    assert not any(k.startswith(("images-jpeg-1k", "images-2k", "colmap")) for k in got)
    assert not any(k.endswith((".mp4", ".pdf", ".obj", ".bin")) for k in got)
    assert (tmp_path / "sel" / MANIFEST_NAME).is_file()
    err = capsys.readouterr().err
    assert f"plan: {len(want)} files" in err
    assert f"downloaded {len(want)} files" in err.splitlines()[-1]


def test_extras_are_opt_in(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("extras")
    args = ["--capture", "extras", "--resolution", "exr_2k", "--no-convert"]
    includes = ["--include", "colmap", "--include", "mesh", "--include", "report"]
    assert main(_cli(mini_bucket, tmp_path, *args, *includes, "--include", "video")) == 0
    got = set(_downloaded(tmp_path / "extras"))
    assert set(_expected(src, ["exr_2k"], ["colmap", "mesh", "report", "video"])) == got
    for rel in (
        "colmap/sparse/0/cameras.txt",
        "mesh.jpg",
        "extras-final.pdf",
        "images-jpeg-2k/10.mp4",
    ):
        assert rel in got
    assert any(k.startswith("images-2k/") and k.endswith(".exr") for k in got)
    assert not any(k.startswith("images-jpeg-2k/1") and k.endswith(".jpg") for k in got)
    assert "big.bin" not in got


def test_dry_run_plans_and_writes_nothing(mini_bucket, tmp_path, capsys) -> None:
    src = mini_bucket.add_capture("dry")
    rc = main(_cli(mini_bucket, tmp_path, "--capture", "dry", "--dry-run"))
    assert rc == 0
    assert not tmp_path.joinpath("dry").exists()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"dry run, {len(_expected(src, ['jpeg_2k']))} files (")
    assert "0 (0 B) already present" in line and "skipped" in line


def test_cli_defaults_match_the_library() -> None:
    from eyeful_tools import download
    from eyeful_tools.cli import download as cli_download

    assert cli_download.DEFAULT_JOBS == download.DEFAULT_JOBS == DownloadRequest().jobs


def test_bad_names_give_one_line_errors(capsys) -> None:
    assert main(["download", "--resolution", "jpeg_16k", "--dry-run"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: unknown resolution 'jpeg_16k'; choose from "
        + ", ".join(catalog.RESOLUTIONS)
        + " or all"
    )
    assert main(["download", "--capture", "nowhere", "--dry-run"]) == 1
    assert "error: unknown capture 'nowhere'" in capsys.readouterr().err


# --- incremental, changed, repaired ---------------------------------------------------------


def test_second_run_transfers_nothing(mini_bucket, tmp_path, capsys) -> None:
    mini_bucket.add_capture("again")
    first = _sync(mini_bucket, tmp_path, "again")
    assert first.sync.ok and first.sync.files_fetched > 10 and first.sync.bytes_transferred > 0
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        second = _sync(mini_bucket, tmp_path, "again", endpoint_url=url)
    assert second.sync.ok
    assert second.sync.bytes_transferred == 0 and second.sync.files_fetched == 0
    assert second.sync.files_present == first.sync.files_fetched
    assert not log.entries  # listing only: not a single object GET
    assert main(_cli(mini_bucket, tmp_path, "--capture", "again", "--no-convert")) == 0
    assert "downloaded 0 files (0 B)" in capsys.readouterr().err


def test_big_folders_are_listed_per_subfolder_on_resync(mini_bucket, tmp_path, monkeypatch) -> None:
    """A folder the manifest knows to be big is listed per camera folder, in one round; a
    camera folder that appeared since is found in a second round."""
    monkeypatch.setattr("eyeful_tools.s3sync.plan.FANOUT_MIN_KEYS", 5)
    src = mini_bucket.add_capture("fan")
    _sync(mini_bucket, tmp_path, "fan")
    mini_bucket.put("fan", "images-jpeg-2k/99/99_DSC0001.jpg", b"new camera")
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "fan", endpoint_url=url)
    assert report.sync.files_fetched == 1
    assert _downloaded(tmp_path / "fan") == _expected(src, ["jpeg_2k"])
    queries = [parse_qs(urlsplit(p).query) for p in log.paths]
    deep = [q["prefix"][0] for q in queries if "prefix" in q and "delimiter" not in q]
    assert f"{PREFIX}fan/images-jpeg-2k/10/" in deep  # a known camera folder, listed directly
    assert f"{PREFIX}fan/images-jpeg-2k/99/" in deep  # the new one, found by the delimiter
    assert f"{PREFIX}fan/images-jpeg-2k/" not in deep  # the big folder is never paged through


def test_changed_object_is_refetched(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("changed")
    _sync(mini_bucket, tmp_path, "changed")
    mini_bucket.put("changed", "splits.json", b'{"train": [], "test": ["changed"]}\n')
    report = _sync(mini_bucket, tmp_path, "changed")
    assert report.sync.files_fetched == 1
    assert report.sync.bytes_transferred == len(b'{"train": [], "test": ["changed"]}\n')
    assert _downloaded(tmp_path / "changed") == _expected(src, ["jpeg_2k"])


def test_truncated_or_edited_local_file_is_repaired(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("repair")
    _sync(mini_bucket, tmp_path, "repair")
    image = next((tmp_path / "repair" / "images-jpeg-2k" / "11").glob("*.jpg"))
    image.write_bytes(image.read_bytes()[:100])  # truncated by hand
    cameras = tmp_path / "repair" / "cameras.json"
    data = bytearray(cameras.read_bytes())
    data[10] ^= 1  # same size, different bytes, different mtime
    cameras.write_bytes(bytes(data))
    os.utime(cameras, ns=(1, 1))
    report = _sync(mini_bucket, tmp_path, "repair")
    assert report.sync.files_fetched == 2
    assert _downloaded(tmp_path / "repair") == _expected(src, ["jpeg_2k"])


def test_files_without_manifest_are_verified_not_refetched(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("adopt")
    _sync(mini_bucket, tmp_path, "adopt")
    (tmp_path / "adopt" / MANIFEST_NAME).unlink()  # e.g. downloaded with the AWS CLI
    report = _sync(mini_bucket, tmp_path, "adopt")
    assert report.sync.bytes_transferred == 0 and report.sync.files_fetched == 0
    assert report.sync.files_verified == len(_expected(src, ["jpeg_2k"]))


# --- safety, access, disk --------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    ["../x", "a/../../x", "/etc/passwd", "a\\b", "a//b", "./a", "C:/x", "a/\x00b", "", "a/..",
     MANIFEST_NAME, "a/b.jpg.1234abcd" + PARTIAL_SUFFIX, "a/b.jpg.1234abcd" + SIDECAR_SUFFIX],
)  # fmt: skip
def test_unsafe_keys_are_refused(rel: str) -> None:
    with pytest.raises(UnsafeKeyError):
        safe_relative_path(rel)


def test_safe_keys_pass() -> None:
    assert safe_relative_path("images-jpeg-2k/10/10_DSC0001.jpg").parts[-1] == "10_DSC0001.jpg"
    assert str(safe_relative_path("a..b/c")) == "a..b/c"


def test_hostile_keys_are_refused_and_reported(mini_bucket, tmp_path, capsys) -> None:
    src = mini_bucket.add_capture("hostile")
    dest = tmp_path / "dest"
    rc = main(
        _cli(mini_bucket, dest, "--capture", "hostile", "--resolution", "jpeg_1k", "--no-convert")
    )
    assert rc == 1
    err = capsys.readouterr().err
    for rel in HOSTILE_KEYS:
        assert f"failed: s3://{BUCKET}/{PREFIX}hostile/{rel}: unsafe key refused" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"error: s3://{BUCKET}/{PREFIX}hostile/images-jpeg-1k/")
    )
    assert _downloaded(dest / "hostile") == _expected(src, ["jpeg_1k"])
    assert (
        main([*_cli(mini_bucket, dest, "--capture", "hostile", "-r", "jpeg_1k"), "--dry-run"]) == 0
    )
    assert f"refused: {PREFIX}hostile/{HOSTILE_KEYS[0]}: unsafe key" in capsys.readouterr().err
    assert not [
        p for p in tmp_path.rglob("*") if p.name in ("escape.jpg", "evil.jpg") or "\\" in p.name
    ]


def test_anonymous_access_works_and_private_buckets_refuse(mini_bucket, tmp_path) -> None:
    client = make_client(mini_bucket.endpoint_url)
    assert client.meta.config.signature_version is botocore.UNSIGNED
    mini_bucket.add_capture("anon")
    assert _sync(mini_bucket, tmp_path, "anon").sync.ok
    from eyeful_tools.locals3 import admin_client

    admin = admin_client(mini_bucket.endpoint_url)
    admin.put_object(Bucket=BUCKET, Key="no-acl.bin", Body=b"abc")  # readable by policy alone
    assert client.head_object(Bucket=BUCKET, Key="no-acl.bin")["ContentLength"] == 3
    assert client.get_object(Bucket=BUCKET, Key="no-acl.bin")["Body"].read() == b"abc"
    admin.create_bucket(Bucket="private-mirror")
    admin.put_object(Bucket="private-mirror", Key=f"{PREFIX}p/cameras.json", Body=b"{}")
    request = _request(mini_bucket, tmp_path, "p")
    request.bucket = "private-mirror"
    report = run_download(plan_download(request), convert=False, options=FAST)
    assert [u for u, _ in report.sync.failures] == [f"s3://private-mirror/{PREFIX}p/cameras.json"]
    assert all("403" in r or "AccessDenied" in r for _, r in report.sync.failures)
    assert not (tmp_path / "p" / "cameras.json").exists()


def test_disk_space_is_checked_before_transfer(mini_bucket, tmp_path) -> None:
    mini_bucket.add_capture("full")
    plan = plan_download(_request(mini_bucket, tmp_path, "full"))
    Usage = namedtuple("Usage", "total used free")
    with pytest.raises(DownloadError, match="not enough free space: the plan needs"):
        run_download(plan, convert=False, disk_usage=lambda _: Usage(10**9, 10**9, 1000))
    assert not (tmp_path / "full").exists()


# --- faults, resume, interrupts ---------------------------------------------------------------


def _faults(key: str, count: int) -> str:
    """Every object fails its first request in one of four ways, some fail twice."""
    digest = int(hashlib.md5(key.encode()).hexdigest(), 16)
    actions = ("slowdown", "drop", "truncate", "corrupt")
    if count == 0:
        return actions[digest % 4]
    if count == 1 and digest % 3 == 0:
        return actions[(digest // 4) % 4]
    return "ok"


def test_fault_injection_ends_byte_identical(mini_bucket, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="eyeful_tools.s3sync.transfer")
    src = mini_bucket.add_capture("faults")
    big = bytes(range(256)) * 400  # 100 KiB: several chunks, so drops land mid-body
    mini_bucket.put("faults", "images-jpeg-2k/10/10_DSC9999.jpg", big)
    with fault_proxy(mini_bucket.endpoint_url, _faults) as (url, log):
        report = _sync(mini_bucket, tmp_path, "faults", endpoint_url=url)
    assert report.sync.ok, report.sync.failures
    assert _downloaded(tmp_path / "faults") == _expected(src, ["jpeg_2k"])
    assert {"slowdown", "drop", "truncate", "corrupt"} <= set(log.actions())
    assert any(r and r.startswith("bytes=") for _, r in log.ranges())  # resumed, not restarted
    retried = "\n".join(caplog.messages)
    for reason in ("SlowDown", "short body", "do not match the CRC32", "IncompleteRead"):
        assert reason in retried, reason
    assert not list(tmp_path.rglob(f"*{PARTIAL_SUFFIX}"))


def test_signed_access_with_a_profile_survives_faults(
    mini_bucket, tmp_path, monkeypatch, caplog
) -> None:
    """--profile goes through botocore (SigV4), with the same retries and verification."""
    caplog.set_level(logging.INFO, logger="eyeful_tools.s3sync.transfer")
    (tmp_path / "config").write_text("[profile mirror]\nregion = us-east-1\n")
    (tmp_path / "credentials").write_text(
        "[mirror]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    src = mini_bucket.add_capture("signed", hostile=False)
    dest = tmp_path / "dest"
    with fault_proxy(mini_bucket.endpoint_url, _faults) as (url, log):
        request = _request(mini_bucket, dest, "signed", endpoint_url=url, profile="mirror")
        plan = plan_download(request)
        assert plan.client.meta.config.signature_version is not botocore.UNSIGNED
        report = run_download(plan, convert=False, options=FAST)
    assert report.sync.ok, report.sync.failures
    assert _downloaded(dest / "signed") == _expected(src, ["jpeg_2k"])
    assert {"drop", "truncate", "corrupt"} <= set(log.actions())
    assert "checksum mismatch" in "\n".join(caplog.messages)  # botocore checks S3's CRC32
    with pytest.raises(UsageError, match="AWS profile 'nobody' not found"):
        plan_download(_request(mini_bucket, dest, "signed", profile="nobody"))


def test_a_file_that_keeps_failing_is_reported_and_others_complete(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("stuck")
    bad = f"{PREFIX}stuck/cameras.xml"
    with fault_proxy(mini_bucket.endpoint_url, lambda k, c: "drop" if k == bad else "ok") as (
        url,
        _,
    ):
        report = _sync(mini_bucket, tmp_path, "stuck", endpoint_url=url)
    assert [u for u, _ in report.sync.failures] == [f"s3://{BUCKET}/{bad}"]
    assert not (tmp_path / "stuck" / "cameras.xml").exists()
    want = _expected(src, ["jpeg_2k"])
    want.pop("cameras.xml")
    assert {
        k: v for k, v in _downloaded(tmp_path / "stuck").items() if not k.endswith(PARTIAL_SUFFIX)
    } == want


def test_ranged_resume_from_a_partial_file(mini_bucket, tmp_path) -> None:
    mini_bucket.add_capture("resume")
    data = os.urandom(200_000)
    mini_bucket.put("resume", "cameras.json", data)
    etag = hashlib.md5(data).hexdigest()
    target = tmp_path / "resume" / "cameras.json"
    target.parent.mkdir(parents=True)
    partial_path(target, etag).write_bytes(data[:123_456])
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "resume", endpoint_url=url)
    assert report.sync.ok and target.read_bytes() == data
    assert (f"{PREFIX}resume/cameras.json", "bytes=123456-") in log.ranges()
    others = sum(len(v) for k, v in _downloaded(tmp_path / "resume").items() if k != "cameras.json")
    assert report.sync.bytes_transferred == others + len(data) - 123_456


class _InterruptAfter:
    """A progress display whose first update raises, like Ctrl-C mid-transfer."""

    def start(self, files: int, total_bytes: int) -> None:
        pass

    def update(self, files_done: int, bytes_done: int) -> None:
        if bytes_done > 0:
            raise KeyboardInterrupt

    def finish(self) -> None:
        pass


def test_interrupt_leaves_no_truncated_file_and_rerun_completes(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("ctrlc")
    want = _expected(src, ["jpeg_2k"])
    slow = fault_proxy(mini_bucket.endpoint_url, lambda k, c: "slow")
    with slow as (url, _), pytest.raises(KeyboardInterrupt):
        _sync(mini_bucket, tmp_path, "ctrlc", endpoint_url=url, progress=_InterruptAfter())
    after = _tree(tmp_path / "ctrlc")
    finals = {k: v for k, v in after.items() if not k.endswith((PARTIAL_SUFFIX, MANIFEST_NAME))}
    assert len(finals) < len(want)
    assert all(want[k] == v for k, v in finals.items())  # never a truncated final file
    assert any(k.endswith(PARTIAL_SUFFIX) for k in after)  # partials kept for resume
    report = _sync(mini_bucket, tmp_path, "ctrlc")
    assert report.sync.ok and _downloaded(tmp_path / "ctrlc") == want


def test_etag_hasher_single_and_multipart() -> None:
    data = os.urandom(11 << 20)
    single = ETagHasher(hashlib.md5(data).hexdigest(), len(data))
    single.update(data)
    assert single.verdict() is True
    parts = [data[i : i + (5 << 20)] for i in range(0, len(data), 5 << 20)]
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    good, bad = ETagHasher(etag, len(data)), ETagHasher(etag, len(data))
    good.update(data)
    bad.update(data[:-1] + b"\x00")
    assert good.verdict() is True and bad.verdict() is not True


# --- convert afterwards ---------------------------------------------------------------------


def test_download_then_convert(mini_bucket, tmp_path, capsys) -> None:
    mini_bucket.add_capture("conv", hostile=False)
    assert main(_cli(mini_bucket, tmp_path, "--capture", "conv", "--resolution", "jpeg_1k")) == 0
    assert (tmp_path / "conv" / "images-jpeg-1k" / "transforms.json").is_file()
    assert "converted 1 resolution folders" in capsys.readouterr().err


def test_serve_capture_mirrors_the_public_layout(synth_v2, tmp_path, capsys) -> None:
    """What ``make demo`` does: serve a capture as riverview on a local endpoint, download it."""
    from eyeful_tools.locals3 import serve_capture

    with serve_capture(synth_v2, "riverview") as url:
        args = ["download", "--endpoint-url", url, "--dest", str(tmp_path), "--no-convert"]
        assert main(args) == 0
        assert main([*args[:-1], "--capture", "nope", "--no-convert"]) == 1
    assert _downloaded(tmp_path / "riverview") == _expected(synth_v2, ["jpeg_2k"])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1]
        == f"error: s3://{catalog.PUBLIC_BUCKET}/{catalog.PUBLIC_PREFIX}nope/: no such capture"
    )


def test_dest_that_is_a_file_is_a_clear_error(mini_bucket, tmp_path, capsys) -> None:
    mini_bucket.add_capture("blocked", hostile=False)
    (tmp_path / "blocked").write_text("not a folder")
    assert main(_cli(mini_bucket, tmp_path, "--capture", "blocked", "--no-convert")) == 1
    blocked = tmp_path / "blocked"
    assert capsys.readouterr().err.strip() == f"error: {blocked}: exists and is not a folder"
    assert blocked.read_text() == "not a folder"


# --- large objects as ranged parts -----------------------------------------------------------

PART = 16 << 10
PARTS = TransferOptions(
    attempts=6, backoff_base_s=0.005, backoff_max_s=0.02, chunk_bytes=4096,
    part_threshold_bytes=4 * PART, part_bytes=PART,
)  # fmt: skip
BIG = "images-jpeg-2k/10/10_DSC9998.jpg"


def _part_ranges(size: int, part: int = PART) -> list[str]:
    return [f"bytes={a}-{min(size, a + part) - 1}" for a in range(0, size, part)]


def _big(mini_bucket, name: str, parts: float = 5.3, rel: str = BIG) -> tuple[str, bytes, str]:
    """Put a random object of ``parts`` parts; (its S3 key, bytes, ETag)."""
    data = os.urandom(int(parts * PART))
    mini_bucket.put(name, rel, data)
    return f"{PREFIX}{name}/{rel}", data, hashlib.md5(data).hexdigest()


def _ranges_of(log, key: str) -> list[str]:
    return [r for k, r in log.ranges() if k == key]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((PARTIAL_SUFFIX, SIDECAR_SUFFIX))]


def test_large_object_downloads_as_ranged_parts(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("parts")
    key, data, etag = _big(mini_bucket, "parts")
    want = _expected(src, ["jpeg_2k"])
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "parts", endpoint_url=url, options=PARTS)
    assert report.sync.ok, report.sync.failures
    assert _downloaded(tmp_path / "parts") == want and not _leftovers(tmp_path)
    assert sorted(_ranges_of(log, key)) == sorted(_part_ranges(len(data)))  # 6 parts, one each
    big_enough = {f"{PREFIX}parts/{k}" for k, v in want.items() if len(v) >= 4 * PART}
    assert {k for k, _ in log.ranges()} == big_enough  # small files: one plain GET each
    # the same report and manifest entry as a single-stream fetch
    assert report.sync.files_fetched == len(want)
    assert report.sync.bytes_transferred == sum(len(v) for v in want.values())
    entry = json.loads((tmp_path / "parts" / MANIFEST_NAME).read_text())["objects"][BIG]
    assert (entry["key"], entry["size"], entry["etag"]) == (key, len(data), etag)
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        again = _sync(mini_bucket, tmp_path, "parts", endpoint_url=url, options=PARTS)
    assert again.sync.ok and again.sync.files_fetched == 0 and again.sync.bytes_transferred == 0
    assert not log.entries


@pytest.mark.parametrize("profile", [None, "mirror"])
def test_parts_survive_faults_and_the_name_appears_last(
    mini_bucket, tmp_path, caplog, monkeypatch, profile
) -> None:
    """Drops, 503s, truncated and corrupted part bodies: byte-identical, nothing left over, and
    the final name never exists while any part of it is still being requested."""
    caplog.set_level(logging.INFO, logger="eyeful_tools.s3sync")
    name = f"pfault{profile or ''}"
    if profile:  # signed: botocore's get_object with a Range
        (tmp_path / "config").write_text(f"[profile {profile}]\nregion = us-east-1\n")
        (tmp_path / "credentials").write_text(
            f"[{profile}]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        )
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    src = mini_bucket.add_capture(name, hostile=False)
    key, data, _ = _big(mini_bucket, name, parts=7.5)
    dest = tmp_path / "dest"
    target = dest / name / BIG
    early: list[bool] = []
    faults = {0: "drop", 1: "slowdown", 2: "truncate", 3: "corrupt", 5: "drop", 8: "truncate"}

    def schedule(k: str, count: int) -> str:
        if k != key:
            return "ok"
        early.append(target.exists())
        return faults.get(count, "ok")

    with fault_proxy(mini_bucket.endpoint_url, schedule) as (url, log):
        report = _sync(mini_bucket, dest, name, endpoint_url=url, options=PARTS, profile=profile)
    assert report.sync.ok, report.sync.failures
    assert _downloaded(dest / name) == _expected(src, ["jpeg_2k"])
    assert not _leftovers(tmp_path)
    assert set(faults.values()) <= set(log.actions())
    assert early and not any(early)
    # the corrupted part is caught by the whole-file MD5: every part fetched again
    assert len(_ranges_of(log, key)) >= 2 * len(_part_ranges(len(data)))
    retried = "\n".join(caplog.messages)
    for reason in ("SlowDown", "short body", "do not match the MD5 of the ETag"):
        assert reason in retried, reason


class _InterruptAt:
    """A progress display that raises KeyboardInterrupt once ``bytes`` have arrived."""

    def __init__(self, at_bytes: int) -> None:
        self.at_bytes = at_bytes

    def start(self, files: int, total_bytes: int) -> None:
        pass

    def update(self, files_done: int, bytes_done: int) -> None:
        if bytes_done >= self.at_bytes:
            raise KeyboardInterrupt

    def finish(self) -> None:
        pass


def test_parts_only_for_objects_bigger_than_their_share() -> None:
    """Parts pay when an object would otherwise finish alone on one connection; while other
    objects keep the connections busy, one stream each is cheaper."""
    options = TransferOptions(part_threshold_bytes=100, part_bytes=50)
    assert wants_parts(1000, "new", options, others_per_connection_bytes=0)  # a lone object
    assert wants_parts(1000, "changed", options, others_per_connection_bytes=999)
    assert not wants_parts(1000, "new", options, others_per_connection_bytes=1000)  # 20 x 20 MB
    assert not wants_parts(99, "new", options)  # below the threshold
    assert not wants_parts(1000, "verify", options)  # only hashing a local file
    # a partial that already has a sidecar keeps its parts (they are not contiguous)
    assert wants_parts(1000, "new", options, others_per_connection_bytes=10**9, resuming_parts=True)


def test_interrupted_parts_resume_from_the_sidecar(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("presume", hostile=False)
    # queued first, and larger than the rest of the capture, so it goes in parts even over the
    # one connection this test uses to stop at a known point
    key, data, etag = _big(mini_bucket, "presume", parts=40, rel="cameras.json")
    ranges = _part_ranges(len(data))
    slow = fault_proxy(
        mini_bucket.endpoint_url, lambda k, c: "slow" if k == key and c >= 2 else "ok"
    )
    with slow as (url, _), pytest.raises(KeyboardInterrupt):
        _sync(
            mini_bucket, tmp_path, "presume", endpoint_url=url, options=PARTS, jobs=1,
            progress=_InterruptAt(2 * PART),
        )  # fmt: skip
    target = tmp_path / "presume" / "cameras.json"
    partial = partial_path(target, etag)
    sidecar = json.loads(partial.with_name(partial.name + ".parts").read_text())
    done = sidecar["done"]
    assert {0, 1} <= set(done) and len(done) < len(ranges) and not target.exists()
    assert (sidecar["size"], sidecar["etag"], sidecar["part_bytes"]) == (len(data), etag, PART)
    on_disk = partial.read_bytes()
    assert all(on_disk[i * PART : (i + 1) * PART] == data[i * PART : (i + 1) * PART] for i in done)
    plan = plan_download(_request(mini_bucket, tmp_path, "presume", jobs=1))
    want = _expected(src, ["jpeg_2k"])
    assert plan.tally("fetch")[1] == sum(map(len, want.values())) - len(done) * PART
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "presume", endpoint_url=url, options=PARTS)
    assert report.sync.ok and _downloaded(tmp_path / "presume") == want
    missing = [r for i, r in enumerate(ranges) if i not in done]
    assert sorted(_ranges_of(log, key)) == sorted(missing)
    assert report.sync.bytes_transferred == plan.tally("fetch")[1]
    assert not _leftovers(tmp_path)


def test_a_contiguous_partial_without_sidecar_counts_its_whole_parts(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("pprefix", hostile=False)
    key, data, etag = _big(mini_bucket, "pprefix", parts=6.5)
    target = tmp_path / "pprefix" / BIG
    target.parent.mkdir(parents=True)
    partial_path(target, etag).write_bytes(data[: 3 * PART + 100])  # as the single stream leaves
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "pprefix", endpoint_url=url, options=PARTS)
    assert report.sync.ok and _downloaded(tmp_path / "pprefix") == _expected(src, ["jpeg_2k"])
    assert sorted(_ranges_of(log, key)) == sorted(_part_ranges(len(data))[3:])
    others = sum(len(v) for k, v in _expected(src, ["jpeg_2k"]).items() if k != BIG)
    assert report.sync.bytes_transferred == others + len(data) - 3 * PART


def _fake_parts(partial: Path, data: bytes, etag: str, done: list[int]) -> None:
    """A partial and its sidecar as an interrupted parts fetch leaves them."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data)
    record = {"version": 1, "size": len(data), "etag": etag, "part_bytes": PART, "done": done}
    partial.with_name(partial.name + ".parts").write_text(json.dumps(record))


def test_sidecars_of_other_versions_are_discarded(mini_bucket, tmp_path) -> None:
    """The object changed in the bucket (old partial + sidecar are stale), and a sidecar under
    the current name that describes another ETag: neither contributes a byte."""
    src = mini_bucket.add_capture("pstale", hostile=False)
    key, old, old_etag = _big(mini_bucket, "pstale", parts=5)
    target = tmp_path / "pstale" / BIG
    _fake_parts(partial_path(target, old_etag), old, old_etag, [0, 1, 2, 3, 4])
    key, data, etag = _big(mini_bucket, "pstale", parts=5)  # the object changes
    _fake_parts(partial_path(target, etag), bytes(len(data)), "0" * 32, [0, 1, 2, 3, 4])
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "pstale", endpoint_url=url, options=PARTS)
    assert report.sync.ok and _downloaded(tmp_path / "pstale") == _expected(src, ["jpeg_2k"])
    assert sorted(_ranges_of(log, key)) == sorted(_part_ranges(len(data)))
    assert not _leftovers(tmp_path)


def test_a_corrupted_done_part_is_caught_and_refetched(mini_bucket, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="eyeful_tools.s3sync")
    src = mini_bucket.add_capture("pcorrupt", hostile=False)
    key, data, etag = _big(mini_bucket, "pcorrupt", parts=6)
    on_disk = bytearray(data[: 3 * PART] + bytes(len(data) - 3 * PART))
    on_disk[PART + 7] ^= 0x40  # bit rot (or a bad write) in a part the sidecar lists as done
    target = tmp_path / "pcorrupt" / BIG
    _fake_parts(partial_path(target, etag), bytes(on_disk), etag, [0, 1, 2])
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "pcorrupt", endpoint_url=url, options=PARTS)
    assert report.sync.ok and _downloaded(tmp_path / "pcorrupt") == _expected(src, ["jpeg_2k"])
    ranges = _part_ranges(len(data))
    assert sorted(_ranges_of(log, key)) == sorted(ranges[3:] + ranges)  # missing, then all
    assert "do not match the MD5 of the ETag" in "\n".join(caplog.messages)
    assert not _leftovers(tmp_path)


def test_multipart_uploaded_object_is_verified_through_parts(
    mini_bucket, tmp_path, monkeypatch
) -> None:
    """ETag ``md5-3`` of 1 MiB upload parts: downloaded in 256 KiB ranges and checked against
    the multipart ETag (the upload part size inferred from size and part count)."""
    from eyeful_tools.locals3 import admin_client

    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1 << 20)
    src = mini_bucket.add_capture("pmulti", hostile=False)
    data = os.urandom((5 << 20) // 2)
    key = f"{PREFIX}pmulti/{BIG}"
    admin = admin_client(mini_bucket.endpoint_url)
    upload = admin.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    done = []
    for number, start in enumerate(range(0, len(data), 1 << 20), start=1):
        part = admin.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number,
            Body=data[start : start + (1 << 20)],
        )  # fmt: skip
        done.append({"PartNumber": number, "ETag": part["ETag"]})
    admin.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )
    (src / BIG).write_bytes(data)
    assert admin.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"').endswith("-3")
    options = TransferOptions(
        attempts=4, backoff_base_s=0.005, backoff_max_s=0.02, chunk_bytes=1 << 16,
        part_threshold_bytes=1 << 20, part_bytes=1 << 18,
    )  # fmt: skip
    verdicts: list[str] = []

    def spy(*args, **kwargs) -> str:
        verdicts.append(verify_partial(*args, **kwargs))
        return verdicts[-1]

    monkeypatch.setattr("eyeful_tools.s3sync.parts.verify_partial", spy)
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        report = _sync(mini_bucket, tmp_path, "pmulti", endpoint_url=url, options=options)
    assert report.sync.ok and _downloaded(tmp_path / "pmulti") == _expected(src, ["jpeg_2k"])
    assert sorted(_ranges_of(log, key)) == sorted(_part_ranges(len(data), 1 << 18))
    assert verdicts == ["etag"]  # the MD5 of the three 1 MiB parts' MD5s matched


def _multipart(mini_bucket, name: str, data: bytes, part_bytes: int) -> str:
    """Upload ``data`` in ``part_bytes`` parts under capture ``name``'s BIG; its S3 key."""
    from eyeful_tools.locals3 import admin_client

    key = f"{PREFIX}{name}/{BIG}"
    admin = admin_client(mini_bucket.endpoint_url)
    upload = admin.create_multipart_upload(Bucket=BUCKET, Key=key, ACL="public-read")["UploadId"]
    done = []
    for number, start in enumerate(range(0, len(data), part_bytes), start=1):
        part = admin.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number,
            Body=data[start : start + part_bytes],
        )  # fmt: skip
        done.append({"PartNumber": number, "ETag": part["ETag"]})
    admin.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )
    (mini_bucket.source_root / name / BIG).write_bytes(data)
    return key


def test_unusual_multipart_part_size_is_asked_of_s3_and_damage_caught(
    mini_bucket, tmp_path, monkeypatch
) -> None:
    """1.5 MiB upload parts are none of the sizes tried from the ETag alone, so only the size
    could be checked; S3's own part size (HEAD ?partNumber=1) makes the check definite: a part
    damaged in transit is caught and fetched again, and an adopted local copy is verified."""
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 1 << 20)
    src = mini_bucket.add_capture("pmulti15", hostile=False)
    data = os.urandom(4 << 20)
    key = _multipart(mini_bucket, "pmulti15", data, (3 << 20) // 2)
    assert ETagHasher(check_etag := _etag_of(mini_bucket, key), len(data)).can_verify is False
    options = TransferOptions(
        attempts=4, backoff_base_s=0.005, backoff_max_s=0.02, chunk_bytes=1 << 16,
        part_threshold_bytes=1 << 20, part_bytes=1 << 18,
    )  # fmt: skip
    schedule = lambda k, c: "corrupt" if k == key and c == 3 else "ok"  # noqa: E731
    with fault_proxy(mini_bucket.endpoint_url, schedule) as (url, log):
        report = _sync(mini_bucket, tmp_path, "pmulti15", endpoint_url=url, options=options)
    assert report.sync.ok and _downloaded(tmp_path / "pmulti15") == _expected(src, ["jpeg_2k"])
    assert any(p.endswith(f"{BIG}?partNumber=1") for p in log.paths)
    # the damaged object was fetched again in full: every range twice
    assert len(_ranges_of(log, key)) == 2 * len(_part_ranges(len(data), 1 << 18))
    # an adopted copy (no manifest) with this ETag is hashed with S3's part size, not refetched
    (tmp_path / "pmulti15" / ".eyeful-manifest.json").unlink()
    with fault_proxy(mini_bucket.endpoint_url) as (url, log):
        again = _sync(mini_bucket, tmp_path, "pmulti15", endpoint_url=url, options=options)
    assert again.sync.ok and again.sync.bytes_transferred == 0 and not _ranges_of(log, key)
    assert check_etag.endswith("-3")


class _PartSizes:
    """A getter that only answers ``HEAD ?partNumber=N`` from a list (None: no answer)."""

    def __init__(self, sizes: list[int] | None, whole: int | None = None) -> None:
        self.sizes, self.whole, self.asked = sizes, whole, []

    def part_bytes(self, bucket: str, key: str, etag: str, number: int) -> int | None:
        self.asked.append(number)
        if self.whole is not None:  # a server that ignores partNumber: the whole object
            return self.whole
        return self.sizes[number - 1] if self.sizes else None


def test_uneven_parts_and_servers_that_ignore_part_numbers(tmp_path) -> None:
    """A definite mismatch needs the real part layout: uneven parts are asked one by one (an
    intact file must never be called damaged, or it could never be fetched), and answers that
    do not add up to the object give no verdict."""
    sizes = [(6 << 20) + 123, (5 << 20) + 7, 1000]
    data = os.urandom(sum(sizes))
    digests, start = [], 0
    for size in sizes:
        digests.append(hashlib.md5(data[start : start + size]).digest())
        start += size
    etag = f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(sizes)}"
    path = tmp_path / "object.bin"
    path.write_bytes(data)
    assert hash_file_matches(path, etag, len(data)) is None  # no usual part size fits
    getter = _PartSizes(sizes)
    assert check_with_s3_part_sizes(getter, "b", "k", path, etag, len(data)) is True
    assert getter.asked == [1, 2, 3]  # part 1 alone implies 2 parts, so every part was asked
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert check_with_s3_part_sizes(_PartSizes(sizes), "b", "k", path, etag, len(data)) is False
    path.write_bytes(data)
    ignoring = _PartSizes(None, whole=len(data))
    assert check_with_s3_part_sizes(ignoring, "b", "k", path, etag, len(data)) is None
    assert check_with_s3_part_sizes(_PartSizes(None), "b", "k", path, etag, len(data)) is None
    wrong = _PartSizes([sizes[0], sizes[1], 999])  # does not add up to the object
    assert check_with_s3_part_sizes(wrong, "b", "k", path, etag, len(data)) is None


def _etag_of(mini_bucket, key: str) -> str:
    from eyeful_tools.locals3 import admin_client

    head = admin_client(mini_bucket.endpoint_url).head_object(Bucket=BUCKET, Key=key)
    return head["ETag"].strip('"')


def test_a_server_that_ignores_ranges_fails_the_object_clearly(mini_bucket, tmp_path) -> None:
    src = mini_bucket.add_capture("pnorange", hostile=False)
    key, data, etag = _big(mini_bucket, "pnorange")
    schedule = lambda k, c: "norange" if k == key else "ok"  # noqa: E731
    with fault_proxy(mini_bucket.endpoint_url, schedule) as (url, log):
        report = _sync(mini_bucket, tmp_path, "pnorange", endpoint_url=url, options=PARTS)
    [(failed, reason)] = report.sync.failures
    assert failed == f"s3://{BUCKET}/{key}" and "ignored the Range header (HTTP 200)" in reason
    assert len(_ranges_of(log, key)) < len(_part_ranges(len(data)))  # siblings stopped early
    want = _expected(src, ["jpeg_2k"])
    want.pop(BIG)
    got = _downloaded(tmp_path / "pnorange")
    assert {
        k: v for k, v in got.items() if not k.endswith((PARTIAL_SUFFIX, SIDECAR_SUFFIX))
    } == want


# --- ETags that are not MD5s (SSE-KMS) ------------------------------------------------------


def _put_kms(mini_bucket, name: str, rel: str, data: bytes) -> tuple[str, str]:
    """An SSE-KMS object; (its key, the ETag a client is shown: 32 hex digits, not the MD5)."""
    from eyeful_tools.locals3 import admin_client

    key = f"{PREFIX}{name}/{rel}"
    admin_client(mini_bucket.endpoint_url).put_object(
        Bucket=BUCKET, Key=key, Body=data, ACL="public-read", ServerSideEncryption="aws:kms"
    )
    (mini_bucket.source_root / name / rel).write_bytes(data)
    return key, hashlib.md5(b"kms:" + data).hexdigest()


def test_sse_kms_etags_are_not_taken_for_md5s(mini_bucket, tmp_path, capsys) -> None:
    """S3 gives SSE-KMS objects ETags that look like MD5s but are not. Without a checksum header
    such objects are checked by their size and ranges read again (damage in those ranges is
    caught and fetched again) and the report says so; with one, by the checksum."""
    src = mini_bucket.add_capture("kms", hostile=False)
    small_rel = "images-jpeg-2k/10/10_DSC9997.jpg"
    small, small_etag = _put_kms(mini_bucket, "kms", small_rel, os.urandom(3 * PART - 5))
    big, big_etag = _put_kms(mini_bucket, "kms", BIG, os.urandom(int(5.3 * PART)))
    etags = {_etag_of(mini_bucket, small): small_etag, _etag_of(mini_bucket, big): big_etag}
    # two re-read ranges that cover the whole object, so the damage below is always seen
    options = TransferOptions(
        **{**PARTS.__dict__, "verify_ranges": 2, "verify_range_bytes": 4 * PART}
    )
    schedule = lambda k, c: "corrupt" if k in (small, big) and c == 0 else "ok"  # noqa: E731
    with fault_proxy(mini_bucket.endpoint_url, schedule, etags, checksums=False) as (url, log):
        report = _sync(mini_bucket, tmp_path / "a", "kms", endpoint_url=url, options=options)
    assert report.sync.ok, report.sync.failures
    assert _downloaded(tmp_path / "a" / "kms") == _expected(src, ["jpeg_2k"])
    assert sorted(report.sync.checked_by_ranges) == [f"s3://{BUCKET}/{k}" for k in (small, big)]
    assert "corrupt" in log.actions()
    manifest = json.loads((tmp_path / "a" / "kms" / MANIFEST_NAME).read_text())["objects"]
    assert manifest[small_rel]["etag"] == small_etag and manifest[BIG]["etag"] == big_etag

    with fault_proxy(mini_bucket.endpoint_url, etags=etags) as (url, log):  # CRC32 headers
        report = _sync(mini_bucket, tmp_path / "b", "kms", endpoint_url=url, options=options)
    assert report.sync.ok and report.sync.checked_by_ranges == [f"s3://{BUCKET}/{big}"]
    assert not _ranges_of(log, small)  # one whole-object GET, checked by its CRC32

    with fault_proxy(mini_bucket.endpoint_url, etags=etags, checksums=False) as (url, _):
        args = _cli(mini_bucket, tmp_path / "c", "--capture", "kms", "--no-convert")
        assert main([*args[:2], url, *args[3:]]) == 0
    assert "2 files checked by size and re-read ranges only" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["eyeful_tools.s3sync.transfer._fetch_once", "parts"])
def test_a_bug_fails_the_sync_loudly(mini_bucket, tmp_path, monkeypatch, where) -> None:
    """An exception that is no transfer failure is a bug: it stops the sync and propagates
    (a traceback) instead of being reported as one more failed file."""
    name = f"bug{len(where)}"
    mini_bucket.add_capture(name, hostile=False)

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    if where == "parts":
        _big(mini_bucket, name)
        monkeypatch.setattr("eyeful_tools.s3sync.parts.PartedObject._fetch_range", broken)
    else:
        monkeypatch.setattr(where, broken)
    with pytest.raises(KeyError, match="a bug"):
        _sync(mini_bucket, tmp_path, name, options=PARTS)
