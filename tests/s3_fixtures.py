"""S3 test fixtures: a moto server with a mini EyefulTower bucket, and a fault-injecting proxy.

The proxy sits on 127.0.0.1 in front of moto and, per object GET, can answer 503 SlowDown,
drop the connection mid-body, truncate the body (with a matching, short Content-Length),
corrupt a byte, trickle the body slowly, or ignore the Range header. The action for a request is chosen by a schedule
function of (key, how many times this key was requested before), so a test is deterministic
whatever the thread interleaving. It can also play an SSE-KMS bucket: ``etags`` replaces
objects' ETags (MD5s, in moto) with other hex strings everywhere, as S3 does for SSE-KMS objects,
and ``checksums=False`` drops the ``x-amz-checksum-*`` headers (objects uploaded without one).
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from eyeful_tools.locals3 import admin_client, create_public_bucket, local_s3, upload_tree

BUCKET = "eyeful-test-bucket"
PREFIX = "EyefulTower/"
#: keys (relative to the capture prefix) that must be refused, never written; both sit in the
#: jpeg_1k folder so only a jpeg_1k selection reaches them
HOSTILE_KEYS = ("images-jpeg-1k/../../../escape.jpg", "images-jpeg-1k/10\\..\\..\\evil.jpg")
EXTRA_FILES = {
    "colmap/sparse/0/cameras.txt": b"# COLMAP cameras\n",
    "colmap/images/10_DSC0001.jpg": b"\xff\xd8colmap-undistorted\xff\xd9",
    "mesh.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
    "mesh.mtl": b"newmtl m\nmap_Kd mesh.jpg\n",
    "mesh.jpg": b"\xff\xd8mesh-texture\xff\xd9" * 100,
    "CAPTURE-final.pdf": b"%PDF-1.4 report\n",
    "images-jpeg-2k/10.mp4": b"\x00\x00\x00\x18ftypmp42 camera 10",
    "images-jpeg-2k/collage.mp4": b"\x00\x00\x00\x18ftypmp42 collage",
    "big.bin": bytes(range(256)) * 1024,  # 256 KiB at the root: never selected
}


def build_capture_tree(synth_dir: Path, out: Path, name: str) -> Path:
    """A capture folder laid out like the bucket: the synthetic capture plus the extras."""
    shutil.copytree(synth_dir, out, ignore=shutil.ignore_patterns("ground_truth.json"))
    for rel, data in EXTRA_FILES.items():
        path = out / rel.replace("CAPTURE", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return out


@dataclass
class MiniBucket:
    endpoint_url: str
    bucket: str
    source_root: Path  # local copies of every capture uploaded, <source_root>/<capture>/
    synth_dir: Path

    def add_capture(self, name: str, hostile: bool = True) -> Path:
        """Upload a fresh copy of the mini capture as ``<prefix><name>/``; return its source."""
        src = build_capture_tree(self.synth_dir, self.source_root / name, name)
        upload_tree(self.endpoint_url, self.bucket, src, f"{PREFIX}{name}/")
        if hostile:
            client = admin_client(self.endpoint_url)
            for rel in HOSTILE_KEYS:
                client.put_object(Bucket=self.bucket, Key=f"{PREFIX}{name}/{rel}", Body=b"evil")
        return src

    def put(self, name: str, rel: str, data: bytes) -> None:
        """Replace one object (and the local reference copy)."""
        admin_client(self.endpoint_url).put_object(
            Bucket=self.bucket, Key=f"{PREFIX}{name}/{rel}", Body=data, ACL="public-read"
        )
        local = self.source_root / name / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)


@pytest.fixture(scope="module")
def mini_bucket(synth_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniBucket]:
    """A moto server on 127.0.0.1 with a public bucket; captures are added per test."""
    with local_s3() as endpoint_url:
        create_public_bucket(endpoint_url, BUCKET)
        yield MiniBucket(endpoint_url, BUCKET, tmp_path_factory.mktemp("bucket-src"), synth_v2)


# --- fault injection -------------------------------------------------------------------------

Schedule = Callable[[str, int], str]  # (key, previous requests for it) -> action


def no_faults(key: str, count: int) -> str:
    return "ok"


@dataclass
class ProxyLog:
    entries: list[tuple[str, str, str | None, str]] = field(default_factory=list)  # object GETs
    paths: list[str] = field(default_factory=list)  # every request's path and query
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def actions(self) -> list[str]:
        return [e[3] for e in self.entries]

    def ranges(self) -> list[tuple[str, str]]:
        return [(e[1], e[2]) for e in self.entries if e[2]]


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream: tuple[str, int]
    schedule: Schedule
    log: ProxyLog
    etags: dict[str, str]  # moto's ETag -> the one clients see
    checksums: bool


def _object_key(path: str) -> str | None:
    """The key of an object GET (``/bucket/key``), None for listings and bucket calls."""
    parts = urlsplit(path)
    if "list-type" in parts.query or "delimiter" in parts.query:
        return None
    pieces = parts.path.lstrip("/").split("/", 1)
    return unquote(pieces[1]) if len(pieces) == 2 and pieces[1] else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, length: int) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length) if length else None
        self.server.log.paths.append(unquote(self.path))
        key = _object_key(self.path) if self.command == "GET" else None
        action = "ok"
        if key is not None:
            with self.server.log.lock:
                count = self.server.log.counts.get(key, 0)
                self.server.log.counts[key] = count + 1
                action = self.server.schedule(key, count)
                self.server.log.entries.append((self.command, key, self.headers["Range"], action))
        if action == "slowdown":
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self._send(503, [("Content-Type", "application/xml")], body, len(body))
            return
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")
        }
        if action == "norange":  # a server (or proxy) that ignores Range: the whole object, 200
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        for real, shown in self.server.etags.items():  # If-Match names the ETag clients saw
            headers = {k: v.replace(shown, real) for k, v in headers.items()}
        upstream.request(self.command, self.path, body=request_body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        out = [
            (k, v)
            for k, v in response.getheaders()
            if k.lower() not in ("transfer-encoding", "connection", "content-length")
            and (self.server.checksums or not k.lower().startswith("x-amz-checksum-"))
        ]
        for real, shown in self.server.etags.items():
            out = [(k, v.replace(real, shown)) for k, v in out]
            if key is None:  # listings: the ETags in the XML
                data = data.replace(real.encode(), shown.encode())
        full = int(response.getheader("Content-Length") or len(data))
        if self.command == "HEAD" or response.status >= 300 or len(data) < 2:
            self._send(response.status, out, data, full if self.command == "HEAD" else len(data))
            return
        if action == "drop":  # promise everything, send half, hang up
            self.send_response(response.status)
            for name, value in out:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if action == "truncate":  # a short body that looks complete
            data = data[: len(data) // 2]
        elif action == "corrupt":
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        elif action == "slow":  # trickle, so an interrupt lands mid-body
            self.send_response(response.status)
            for name, value in out:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for start in range(0, len(data), 4096):
                    self.wfile.write(data[start : start + 4096])
                    self.wfile.flush()
                    time.sleep(0.02)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        self._send(response.status, out, data, len(data))


@contextlib.contextmanager
def fault_proxy(
    upstream_url: str,
    schedule: Schedule = no_faults,
    etags: dict[str, str] | None = None,
    checksums: bool = True,
) -> Iterator[tuple[str, ProxyLog]]:
    """A proxy on 127.0.0.1 in front of ``upstream_url``; yields (endpoint URL, request log)."""
    upstream = urlsplit(upstream_url)
    server = _ProxyServer(("127.0.0.1", 0), _Handler)
    server.upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
    server.schedule = schedule
    server.log = ProxyLog()
    server.etags = dict(etags or {})
    server.checksums = checksums
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
