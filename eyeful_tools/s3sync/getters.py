"""How one GET of one object is made: botocore, or plain HTTP for anonymous access.

An anonymous GET is an ordinary HTTP GET of a URL; going through botocore costs ~0.7 ms of CPU
per request (event hooks, endpoint rules, response parsing), which is a third of the client's
work per small file. So for unsigned clients without a proxy we ask botocore once per bucket
for the URL layout (endpoint, addressing style) and then GET with urllib3 directly; signed
access (``--profile``) and proxied setups keep botocore. Both return the same small interface.
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from typing import Any, Protocol

import botocore
import botocore.exceptions
import botocore.httpsession
import urllib3
import urllib3.exceptions

_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")
_SENTINEL = "eyeful-key-sentinel"


class S3HTTPError(Exception):
    """An error answer to a plain-HTTP GET (status, S3 error code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code or status}: {message}")
        self.status = status
        self.code = code
        self.message = message


#: full-object checksums S3 may send (``x-amz-checksum-*``, base64) that we can check with the
#: standard library; CRC32C and CRC64NVME would need awscrt, so those objects fall back
CHECKSUMS = ("crc32", "sha256", "sha1")
#: server-side encryption whose ETag is not the MD5 of the object's bytes
_OPAQUE_ETAG_SSE = ("aws:kms", "aws:kms:dsse")


class ObjectBody(Protocol):
    status: int
    #: (algorithm, base64 value) of S3's stored full-object checksum, when it sent one we check
    checksum: tuple[str, str] | None
    #: False when the object's ETag is not an MD5 of its bytes (SSE-KMS, DSSE-KMS, SSE-C)
    etag_is_md5: bool

    def read(self, amt: int) -> bytes: ...

    def finish(self, complete: bool) -> None:
        """Give the connection back (``complete``) or drop it (an abandoned body)."""


class Getter(Protocol):
    def get(
        self, bucket: str, key: str, etag: str, offset: int, end: int | None = None
    ) -> ObjectBody:
        """Bytes ``offset`` to the end, or to ``end`` (inclusive, as in HTTP ranges)."""
        ...

    def part_bytes(self, bucket: str, key: str, etag: str, number: int) -> int | None:
        """Size of upload part ``number`` of a multipart object (``HEAD ?partNumber=N``), which
        makes its ETag checkable; None when S3 does not say (best effort: never raises)."""
        ...


def _range(offset: int, end: int | None) -> str | None:
    """The Range header value; None for the whole object."""
    if end is not None:
        return f"bytes={offset}-{end}"
    return f"bytes={offset}-" if offset else None


def _headers(etag: str, offset: int, end: int | None = None) -> dict[str, str]:
    # If-Match: never mix bytes of two versions. Checksum mode: S3 sends the stored full-object
    # checksum (whole-object GETs only), which is ~6x cheaper to verify than the ETag's MD5.
    headers = {"If-Match": f'"{etag}"', "x-amz-checksum-mode": "ENABLED"}
    if byte_range := _range(offset, end):
        headers["Range"] = byte_range
    return headers


def etag_is_md5(encryption: str | None, customer_algorithm: str | None) -> bool:
    """What S3 documents: with SSE-KMS, DSSE-KMS or SSE-C the ETag is not the MD5 of the data."""
    return (encryption or "").lower() not in _OPAQUE_ETAG_SSE and not customer_algorithm


def full_object_checksum(
    values: dict[str, str | None], checksum_type: str | None, status: int
) -> tuple[str, str] | None:
    """The first checksum of :data:`CHECKSUMS` in ``values`` that covers the whole object (a
    ``-N`` suffix or a COMPOSITE type is a checksum of part checksums; a 206 is a range)."""
    if status != 200 or (checksum_type or "FULL_OBJECT").upper() != "FULL_OBJECT":
        return None
    for name in CHECKSUMS:
        value = values.get(name)
        if value and "-" not in value:
            return name, value
    return None


class _BotocoreBody:
    def __init__(self, response: dict[str, Any]) -> None:
        self.status = int(response["ResponseMetadata"]["HTTPStatusCode"])
        self._body = response["Body"]
        self.etag_is_md5 = etag_is_md5(
            response.get("ServerSideEncryption"), response.get("SSECustomerAlgorithm")
        )
        self.checksum = full_object_checksum(
            {name: response.get(f"Checksum{name.upper()}") for name in CHECKSUMS},
            response.get("ChecksumType"),
            self.status,
        )

    def read(self, amt: int) -> bytes:
        return self._body.read(amt)

    def finish(self, complete: bool) -> None:
        self._body.close()  # after a full read the connection is already back in the pool


class BotocoreGetter:
    """``get_object`` through the client: signing, proxies, everything botocore supports."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(
        self, bucket: str, key: str, etag: str, offset: int, end: int | None = None
    ) -> ObjectBody:
        request = {"Bucket": bucket, "Key": key, "IfMatch": f'"{etag}"', "ChecksumMode": "ENABLED"}
        if byte_range := _range(offset, end):
            request["Range"] = byte_range
        return _BotocoreBody(self.client.get_object(**request))

    def part_bytes(self, bucket: str, key: str, etag: str, number: int) -> int | None:
        try:
            response = self.client.head_object(Bucket=bucket, Key=key, PartNumber=number)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return None
        return _part_size_answer(
            etag,
            str(response.get("ETag", "")),
            response.get("PartsCount"),
            response.get("ContentLength"),
        )


class _HttpBody:
    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self.status = response.status
        headers = response.headers
        self.etag_is_md5 = etag_is_md5(
            headers.get("x-amz-server-side-encryption"),
            headers.get("x-amz-server-side-encryption-customer-algorithm"),
        )
        self.checksum = full_object_checksum(
            {name: headers.get(f"x-amz-checksum-{name}") for name in CHECKSUMS},
            headers.get("x-amz-checksum-type"),
            self.status,
        )
        self._response = response

    def read(self, amt: int) -> bytes:
        return self._response.read(amt)

    def finish(self, complete: bool) -> None:
        if complete:
            self._response.release_conn()
        else:
            self._response.close()


class HttpGetter:
    """Anonymous GETs with urllib3, URLs laid out by botocore (one presign per bucket)."""

    def __init__(self, client: Any, connections: int) -> None:
        self.client = client
        config = client.meta.config
        self.timeout = urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout)
        self.pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=connections,
            cert_reqs="CERT_REQUIRED",
            ca_certs=botocore.httpsession.get_cert_path(True),
        )
        self._templates: dict[str, tuple[str, str]] = {}

    def url(self, bucket: str, key: str) -> str:
        if bucket not in self._templates:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": _SENTINEL}
            )
            base, _, tail = url.partition(_SENTINEL)
            self._templates[bucket] = (base, tail)
        base, tail = self._templates[bucket]
        return base + urllib.parse.quote(key, safe="/~") + tail

    def get(
        self, bucket: str, key: str, etag: str, offset: int, end: int | None = None
    ) -> ObjectBody:
        response = self.pool.request(
            "GET",
            self.url(bucket, key),
            headers=_headers(etag, offset, end),
            preload_content=False,
            retries=False,
            redirect=False,
            timeout=self.timeout,
        )
        if response.status >= 300:
            data = response.read(1 << 16)
            response.release_conn()
            code = _CODE.search(data)
            message = _MESSAGE.search(data)
            raise S3HTTPError(
                response.status,
                code.group(1).decode(errors="replace") if code else str(response.status),
                message.group(1).decode(errors="replace") if message else response.reason or "",
            )
        return _HttpBody(response)

    def part_bytes(self, bucket: str, key: str, etag: str, number: int) -> int | None:
        url = self.url(bucket, key)
        url += ("&" if "?" in url else "?") + f"partNumber={int(number)}"
        try:
            response = self.pool.request(
                "HEAD", url, retries=False, redirect=False, timeout=self.timeout
            )
        except urllib3.exceptions.HTTPError:
            return None
        response.release_conn()
        if response.status not in (200, 206):
            return None
        headers = response.headers
        return _part_size_answer(
            etag,
            headers.get("etag", ""),
            headers.get("x-amz-mp-parts-count"),
            headers.get("content-length"),
        )


def _part_size_answer(
    etag: str, answer_etag: str, parts_count: object, length: object
) -> int | None:
    """A part's size from a ``HEAD ?partNumber=N`` answer, if it is about our object: S3 sends
    the object's ETag, some servers (moto) the part's, so the part count must match instead.
    No If-Match on the request for the same reason (such servers compare it to the part)."""
    count = etag.rpartition("-")[2]
    ours = answer_etag.strip('"') == etag or str(parts_count or "") == count
    try:
        size = int(str(length))
    except ValueError:
        return None
    return size if ours and size > 0 else None


def make_getter(client: Any, connections: int) -> Getter:
    """Plain HTTP for unsigned clients without proxies; botocore otherwise."""
    config = client.meta.config
    unsigned = config.signature_version is botocore.UNSIGNED
    if unsigned and not config.proxies and not urllib.request.getproxies():
        return HttpGetter(client, connections)
    return BotocoreGetter(client)
