"""The boto3 S3 client for a sync: anonymous by default, a named profile on request."""

from __future__ import annotations

from typing import Any

import boto3
import botocore
import botocore.exceptions
from botocore.config import Config

from eyeful_tools.errors import UsageError


def make_client(
    endpoint_url: str | None = None,
    profile: str | None = None,
    jobs: int = 16,
    region: str | None = None,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 60.0,
) -> Any:
    """An S3 client sized for ``jobs`` concurrent transfers.

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
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    if profile is None:
        config = config.merge(Config(signature_version=botocore.UNSIGNED))
        session = boto3.session.Session()
    else:
        try:
            session = boto3.session.Session(profile_name=profile)
        except botocore.exceptions.ProfileNotFound as error:
            raise UsageError(None, f"AWS profile {profile!r} not found") from error
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or session.region_name or "us-east-1",
        config=config,
    )
