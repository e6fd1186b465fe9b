"""The local manifest: what was downloaded, with the S3 size and ETag it had.

One JSON file per synced prefix (``<dest>/.eyeful-manifest.json``), written atomically. An entry
lets a re-run skip a file with a ``stat`` instead of a request: the remote size and ETag must
match the entry and the local file must still have that size (and mtime; else its MD5 is
re-checked), so a file truncated or edited by hand is fetched again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from eyeful_tools.fsio import atomic_write_json
from eyeful_tools.s3sync.keys import MANIFEST_NAME

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1


@dataclass
class ManifestEntry:
    key: str
    size: int  # bytes
    etag: str  # as S3 returns it, quotes stripped
    last_modified: str  # ISO 8601, from the listing
    mtime_ns: int  # local file mtime right after the download


class Manifest:
    """Entries by prefix-relative key for one synced folder."""

    def __init__(self, dest: Path, bucket: str, prefix: str) -> None:
        self.path = dest / MANIFEST_NAME
        self.bucket = bucket
        self.prefix = prefix
        self.entries: dict[str, ManifestEntry] = {}
        self.dirty = False

    @classmethod
    def load(cls, dest: Path, bucket: str, prefix: str) -> Manifest:
        """Read the manifest; a missing, unreadable or foreign one starts empty (files then get
        re-verified by checksum, never trusted blindly)."""
        manifest = cls(dest, bucket, prefix)
        try:
            data = json.loads(manifest.path.read_text(encoding="utf-8"))
            if data.get("version") != MANIFEST_VERSION or data.get("bucket") != bucket:
                return manifest
            if data.get("prefix") != prefix:
                return manifest
            for rel, entry in data["objects"].items():
                manifest.entries[rel] = ManifestEntry(**entry)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s: ignoring unreadable manifest (%s)", manifest.path, error)
            manifest.entries.clear()
        return manifest

    def record(self, rel: str, entry: ManifestEntry) -> None:
        self.entries[rel] = entry
        self.dirty = True

    def forget(self, rel: str) -> None:
        if self.entries.pop(rel, None) is not None:
            self.dirty = True

    def save(self) -> None:
        """Write atomically if anything changed since the last save."""
        if not self.dirty:
            return
        data = {
            "version": MANIFEST_VERSION,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "objects": {rel: asdict(e) for rel, e in sorted(self.entries.items())},
        }
        atomic_write_json(self.path, data, indent=1)
        self.dirty = False
