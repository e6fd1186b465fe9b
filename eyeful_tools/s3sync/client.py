"""The S3 client for a sync: anonymous by default, a named profile on request."""

from __future__ import annotations

import datetime as dt
import functools
import threading
from typing import Any

import botocore
import botocore.exceptions
import botocore.session
import botocore.utils
from botocore.config import Config

from eyeful_tools.errors import UsageError

_SESSIONS: dict[str | None, botocore.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()


def fast_timestamp(value: str) -> dt.datetime:
    """ISO 8601 timestamps as S3 listings write them, without dateutil (which costs ~0.2 ms a
    key: a third of a 1,000-key listing page); anything else goes to botocore's parser."""
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return botocore.utils.parse_timestamp(value)


def _session(profile: str | None) -> botocore.session.Session:
    """One session per profile and process: its loader caches the S3 service model, which
    otherwise costs ~0.3 s per client (a no-op re-sync is mostly that and the listing)."""
    with _SESSIONS_LOCK:
        if profile not in _SESSIONS:
            session = botocore.session.Session(profile=profile)
            factory = session.get_component("response_parser_factory")
            factory.set_parser_defaults(timestamp_parser=fast_timestamp)
            _SESSIONS[profile] = session
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
        parameter_validation=False,  # we build every request ourselves
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    if profile is None:
        config = config.merge(Config(signature_version=botocore.UNSIGNED))
    session = _session(profile)
    try:
        return session.create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or session.get_config_variable("region") or "us-east-1",
            config=config,
        )
    except botocore.exceptions.ProfileNotFound as error:
        raise UsageError(None, f"AWS profile {profile!r} not found") from error
