"""Mirror S3 prefixes to local folders: list, plan, transfer, verify. Knows nothing of cameras.

``list_targets`` + ``plan_target`` build a :class:`Plan` per prefix (what to fetch, what is
present, what is skipped or refused), ``check_free_space`` refuses plans that do not fit, and
``execute`` runs them with a thread pool, resuming partials and verifying sizes and ETags;
objects from ``TransferOptions.part_threshold_bytes`` up go as parallel ranged parts.
"""

from eyeful_tools.s3sync.client import make_client
from eyeful_tools.s3sync.keys import MANIFEST_NAME, PARTIAL_SUFFIX, SIDECAR_SUFFIX, UnsafeKeyError
from eyeful_tools.s3sync.manifest import Manifest, ManifestEntry
from eyeful_tools.s3sync.plan import (
    Plan,
    PlannedFile,
    RemoteObject,
    SyncTarget,
    check_free_space,
    human_bytes,
    list_level,
    list_targets,
    plan_target,
    s3_url,
)
from eyeful_tools.s3sync.sync import NullProgress, SyncProgress, SyncReport, execute
from eyeful_tools.s3sync.transfer import TransferOptions, partial_path

__all__ = [
    "MANIFEST_NAME",
    "PARTIAL_SUFFIX",
    "SIDECAR_SUFFIX",
    "Manifest",
    "ManifestEntry",
    "NullProgress",
    "Plan",
    "PlannedFile",
    "RemoteObject",
    "SyncProgress",
    "SyncReport",
    "SyncTarget",
    "TransferOptions",
    "UnsafeKeyError",
    "check_free_space",
    "execute",
    "human_bytes",
    "list_level",
    "list_targets",
    "make_client",
    "partial_path",
    "plan_target",
    "s3_url",
]
