"""``eyeful download`` against ``aws s3 sync --no-sign-request`` on the same local S3 endpoint.

A moto server runs in its own process on 127.0.0.1 (so neither client shares its GIL) with two
captures laid out like the bucket: many small files, and a few large ones. Each tool syncs each
capture into an empty folder, then re-syncs it (no-op). By default both run in this process,
the way nerfstudio runs the AWS CLI (``awscli.clidriver``), so interpreter start-up is not
timed; ``--subprocess`` times the two command lines instead. Ratios are AWS CLI time / eyeful
time (> 1 means eyeful is faster). Targets (:data:`TARGETS`): >= 1x large, >= 1.5x small,
>= 3x the no-op re-sync of the small files; the run exits 1 when one is missed.

Each row also shows the CPU seconds of each tool's own process (the client) and of the moto
server during that tool's run. moto is one Python process (one GIL): when its CPU time is close
to the wall time, the server is the bottleneck and no client can go much faster against it.

    python -m bench.download                # 2,000 x 16 KB and 20 x 20 MB
    python -m bench.download --quick        # 500 x 16 KB and 8 x 8 MB
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: (capture, no-op re-sync?) -> the least ratio (aws time / eyeful time) that meets the target
TARGETS = {("large", False): 1.0, ("small", False): 1.5, ("small", True): 3.0}
BUCKET = "eyeful-bench"
PREFIX = "EyefulTower/"
_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None  # stdout=PIPE
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def populate(
    endpoint: str, small_files: int, small_kb: int, large_files: int, large_mb: int
) -> None:
    """Two captures: ``small`` (calibration + images-jpeg-2k/<cam>/...) and ``large``."""
    from eyeful_tools.locals3 import admin_client, create_public_bucket

    create_public_bucket(endpoint, BUCKET)
    client = admin_client(endpoint, max_pool_connections=20)
    rng = os.urandom
    objects: list[tuple[str, int]] = []
    for capture, count, size in (
        ("small", small_files, small_kb << 10),
        ("large", large_files, large_mb << 20),
    ):
        for name in ("cameras.json", "cameras.xml", "splits.json"):
            objects.append((f"{PREFIX}{capture}/{name}", 4096))
        for i in range(count):
            cam = 10 + i % 22
            objects.append((f"{PREFIX}{capture}/images-jpeg-2k/{cam}/{cam}_DSC{i:04d}.jpg", size))
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(lambda o: client.put_object(Bucket=BUCKET, Key=o[0], Body=rng(o[1])), objects)
        )


def aws_sync(endpoint: str, capture: str, dest: Path, subprocess_mode: bool) -> None:
    args = [
        "s3", "sync", "--no-sign-request", "--only-show-errors", "--endpoint-url", endpoint,
        f"s3://{BUCKET}/{PREFIX}{capture}/", str(dest / capture),
    ]  # fmt: skip
    if subprocess_mode:
        subprocess.run([str(Path(sys.executable).parent / "aws"), *args], check=True)
        return
    from awscli.clidriver import create_clidriver

    if create_clidriver().main(args) != 0:
        raise RuntimeError("aws s3 sync failed")


def eyeful_sync(endpoint: str, capture: str, dest: Path, subprocess_mode: bool) -> None:
    args = [
        "download", "--endpoint-url", endpoint, "--bucket", BUCKET, "--prefix", PREFIX,
        "--capture", capture, "--resolution", "jpeg_2k", "--dest", str(dest), "--no-convert",
    ]  # fmt: skip
    if subprocess_mode:
        exe = str(Path(sys.executable).parent / "eyeful")
        subprocess.run([exe, *args], check=True, stderr=subprocess.DEVNULL)
        return
    from eyeful_tools.download import DownloadRequest, plan_download, run_download

    request = DownloadRequest(
        captures=[capture], dest=dest, endpoint_url=endpoint, bucket=BUCKET, prefix=PREFIX
    )
    report = run_download(plan_download(request), convert=False)
    if not report.sync.ok:
        raise RuntimeError(report.sync.failures[:3])


@dataclass(frozen=True)
class Timing:
    wall_s: float
    client_cpu_s: float  # this process (in-process mode) or the tool's child process
    server_cpu_s: float  # the moto server process


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the ``--subprocess`` tools)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], None], server_pid: int) -> Timing:
    server, client, start = process_cpu_s(server_pid), own_cpu_s(), time.perf_counter()
    fn()
    return Timing(
        time.perf_counter() - start, own_cpu_s() - client, process_cpu_s(server_pid) - server
    )


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--small-kb", type=int, default=16)
    parser.add_argument("--large-files", type=int, default=20)
    parser.add_argument("--large-mb", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="500 small files, 8 x 8 MB")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; best time is kept")
    parser.add_argument("--subprocess", action="store_true", help="time both command lines")
    args = parser.parse_args(argv)
    if args.quick:
        args.small_files, args.large_files, args.large_mb = 500, 8, 8
    os.environ.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
    )
    server, endpoint = start_server()
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        populate(endpoint, args.small_files, args.small_kb, args.large_files, args.large_mb)
        if not args.subprocess:  # import both tools before timing anything
            from awscli.clidriver import create_clidriver

            create_clidriver()
            import eyeful_tools.download  # noqa: F401
        mode = "command lines" if args.subprocess else "in-process"
        print(
            f"endpoint {endpoint} (moto, own process); {mode}; best of {args.repeat}; "
            "ratio = aws time / eyeful time"
        )
        counts: dict[str, set[int]] = {}
        missed: list[str] = []
        print(
            f"{'case':<30}{'aws s3 sync':>12}{'eyeful':>9}{'ratio':>7}"
            f"  {'client CPU aws/eyeful':>22}  {'moto CPU aws/eyeful':>20}"
        )
        cases = (
            ("small", f"{args.small_files} x {args.small_kb} KB"),
            ("large", f"{args.large_files} x {args.large_mb} MB"),
        )
        for capture, label in cases:
            best: dict[str, Timing] = {}
            for round_ in range(args.repeat):
                # alternate who goes first, so page-cache writeback of one run does not
                # always land on the other; keep the best time of each
                tools = [("aws", aws_sync), ("eyeful", eyeful_sync)]
                for tool, sync in tools if round_ % 2 == 0 else tools[::-1]:
                    dest = work / f"{tool}-{round_}"
                    run = functools.partial(sync, endpoint, capture, dest, args.subprocess)
                    for case in (tool, f"{tool} no-op"):
                        timing = timed(run, server.pid)
                        if case not in best or timing.wall_s < best[case].wall_s:
                            best[case] = timing
                    counts.setdefault(capture, set()).add(count_files(dest / capture))
                    shutil.rmtree(dest)
            if len(counts[capture]) != 1:
                raise RuntimeError(f"file counts differ between runs: {counts[capture]}")
            for name, suffix in ((label, ""), (f"{label}, no-op re-sync", " no-op")):
                a, e = best[f"aws{suffix}"], best[f"eyeful{suffix}"]
                ratio = a.wall_s / e.wall_s
                target = TARGETS.get((capture, bool(suffix)))
                if target is not None and ratio < target:
                    missed.append(f"{name}: {ratio:.2f}x < {target}x")
                print(
                    f"{name:<30}{a.wall_s:>11.2f}s{e.wall_s:>8.2f}s{ratio:>6.2f}x"
                    f"  {a.client_cpu_s:>9.2f}s /{e.client_cpu_s:>6.2f}s"
                    f"  {a.server_cpu_s:>9.2f}s /{e.server_cpu_s:>6.2f}s"
                    + (f"  (target {target}x)" if target else ""),
                    flush=True,
                )
        print("targets met" if not missed else "targets missed: " + "; ".join(missed))
        return 1 if missed else 0
    finally:
        if server.stdin is not None:  # stdin=PIPE: closing it stops the server
            server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
