"""A local S3 endpoint (moto) holding a folder tree, for tests and ``make demo``.

``with local_s3() as endpoint_url:`` starts moto's threaded server on 127.0.0.1 (a free port)
and stops it afterwards; ``create_public_bucket`` makes a bucket that anonymous clients can
list and read (GET and HEAD), like the EyefulTower bucket; ``upload_tree`` mirrors a local
folder under a key prefix. moto comes with the ``demo`` (and ``test``) extra and is imported
only when a server starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eyeful_tools import catalog

_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextlib.contextmanager
def local_s3() -> Iterator[str]:
    """Run a moto S3 server on 127.0.0.1 (never 0.0.0.0); yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request lines on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def admin_client(endpoint_url: str, max_pool_connections: int = 16) -> Any:
    """A signed client with dummy credentials, for creating buckets and uploading."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        config=Config(max_pool_connections=max_pool_connections, s3={"addressing_style": "path"}),
        **_CREDENTIALS,
    )


def create_public_bucket(endpoint_url: str, bucket: str = catalog.PUBLIC_BUCKET) -> None:
    """Create ``bucket`` with a policy that lets anyone list it and GET/HEAD its objects.

    moto checks anonymous requests against the policy; HEAD needs its own grant there, so the
    policy names both (see ``reference/dependencies.md``).
    """
    client = admin_client(endpoint_url)
    client.create_bucket(Bucket=bucket)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:HeadObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def upload_tree(
    endpoint_url: str, bucket: str, local_dir: str | Path, prefix: str = "", jobs: int = 8
) -> int:
    """Upload every file below ``local_dir`` to ``<prefix><relative posix path>``, public-read.

    Returns the number of objects uploaded. Hidden files (``.name``) are skipped.
    """
    local_dir = Path(local_dir)
    files = sorted(
        p
        for p in local_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local_dir).parts)
    )
    client = admin_client(endpoint_url, max_pool_connections=jobs + 2)

    def put(path: Path) -> None:
        key = prefix + path.relative_to(local_dir).as_posix()
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ACL="public-read")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(put, files))
    return len(files)


@contextlib.contextmanager
def serve_capture(
    capture_dir: str | Path,
    capture: str = catalog.DEFAULT_CAPTURE,
    bucket: str = catalog.PUBLIC_BUCKET,
    prefix: str = catalog.PUBLIC_PREFIX,
) -> Iterator[str]:
    """Serve one capture folder as ``s3://<bucket>/<prefix><capture>/``; yield the endpoint.

    Example (what ``make demo`` does)::

        with serve_capture(synth_dir, "riverview") as url:
            eyeful download --endpoint-url url --capture riverview ...
    """
    with local_s3() as endpoint_url:
        create_public_bucket(endpoint_url, bucket)
        upload_tree(endpoint_url, bucket, capture_dir, f"{prefix}{capture}/")
        yield endpoint_url
