"""The boto3 S3 client for a sync: anonymous by default, a named profile on request."""

from __future__ import annotations

import functools
import threading
from typing import Any

import boto3
import botocore
import botocore.exceptions
from botocore.config import Config

from eyeful_tools.errors import UsageError

_SESSIONS: dict[str | None, boto3.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(profile: str | None) -> boto3.session.Session:
    """One session per profile and process: its loader caches the S3 service model, which
    otherwise costs ~0.3 s per client (a no-op re-sync is mostly that and the listing)."""
    with _SESSIONS_LOCK:
        if profile not in _SESSIONS:
            try:
                _SESSIONS[profile] = boto3.session.Session(profile_name=profile)
            except botocore.exceptions.ProfileNotFound as error:
                raise UsageError(None, f"AWS profile {profile!r} not found") from error
        return _SESSIONS[profile]


@functools.lru_cache(maxsize=8)
def make_client(
    endpoint_url: str | None = None,
    profile: str | None = None,
    jobs: int = 16,
    region: str | None = None,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 60.0,
) -> Any:
    """An S3 client sized for ``jobs`` concurrent transfers (cached: clients are thread-safe
    and building one costs ~0.2 s of endpoint-ruleset parsing).

    Unsigned (``--no-sign-request``) unless ``profile`` names an AWS profile. A custom endpoint
    (moto, MinIO, a mirror) gets path-style addressing. botocore's own retries (standard mode)
    cover listing and request starts; transfers add their own loop for mid-body failures.
    """
    config = Config(
        max_pool_connections=max(10, jobs + 4),
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        tcp_keepalive=True,
        # integrity is checked against the ETag (MD5) by the transfer; skipping botocore's
        # CRC of every body saves CPU on many small files
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    if profile is None:
        config = config.merge(Config(signature_version=botocore.UNSIGNED))
    session = _session(profile)
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or session.region_name or "us-east-1",
        config=config,
    )
