"""Optional on-disk cache of decoded pixels: one ``.npy`` per image, read back as a memmap.

Decoding a 2K JPEG costs ~20 ms of CPU; copying the same pixels from a page-cached ``.npy``
costs well under a millisecond, so datasets decoded again and again (every pool refresh, every
run) skip the codec. The key covers the resolved path, size and modification time of the
source, so an edited image is decoded again. The cache is not size-bounded: it holds at most
one decoded copy of each image (uint8 or float16, like the in-memory pool).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from eyeful_tools.fsio import atomic_path

log = logging.getLogger(__name__)


class DiskCache:
    """Decoded pixels under ``root/<sha1>.npy``, written atomically, read via ``np.load(mmap)``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def file_for(self, source: Path) -> Path:
        stat = source.stat()
        key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|rgb"
        return self.root / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"

    def load_into(self, source: Path, out: np.ndarray) -> bool:
        """Copy cached pixels into ``out`` (same shape and dtype); False when not cached."""
        path = self.file_for(source)
        if not path.is_file():
            return False
        try:
            cached = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", path)
            return False
        if cached.shape != out.shape or cached.dtype != out.dtype:
            del cached
            return False
        out[...] = cached
        del cached  # unmap now, so the pages stop counting towards this process's RSS
        return True

    def store(self, source: Path, pixels: np.ndarray) -> None:
        path = self.file_for(source)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(pixels), allow_pickle=False)
