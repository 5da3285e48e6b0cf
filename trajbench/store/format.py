"""Store format v1 as constants and pure rules (the spec lives in ``docs/format.md``).

Nothing here touches disk. The writer, the reader and the validator all take their names
and limits from this module, so the spec and the code cannot drift apart silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from trajbench.errors import TrajbenchError

FORMAT_NAME = "trajbench"
FORMAT_VERSION = 2

RUNS_GROUP = "runs"
SYNTHETIC_GROUP = "synthetic"

WEIGHTS = "weights"
STEP = "step"
EPOCH = "epoch"
WEIGHTS_DIMS = ("snapshot", "param")
SERIES_DIMS = ("snapshot",)
WEIGHTS_DTYPE = "float32"
METRIC_DTYPE = "float64"

KINDS = ("conv", "linear", "bias", "norm", "embedding", "buffer", "other")
STATUSES = ("running", "complete", "diverged", "failed")
SOURCES = (
    "recorder",
    "import-checkpoints",
    "import-array",
    "synthetic",
    "callback:lightning",
    "callback:transformers",
)

# Names a run id, a synthetic family or a metric may take: one path segment, no dots at the
# start (zarr reserves names beginning with "__" and ".", and "/" would nest groups).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
RESERVED_ARRAY_NAMES = frozenset({WEIGHTS, STEP, EPOCH})

# Chunk sizing rule (docs/format.md, "Chunking"). Sizes in bytes of uncompressed float32.
MIN_CHUNK_BYTES = 1 << 20  # 1 MiB
TARGET_CHUNK_BYTES = 4 << 20  # 4 MiB
MAX_CHUNK_BYTES = 8 << 20  # 8 MiB
MIN_SNAPSHOTS_PER_CHUNK = 16
MAX_SNAPSHOTS_PER_CHUNK = 256
# A slab (one chunk row: snapshots_per_chunk x all parameters) is what the Recorder buffers
# in memory before writing. Big models get fewer snapshots per chunk so that the buffer,
# and what a crash can lose, stay bounded.
MAX_SLAB_BYTES = 256 << 20  # 256 MiB
# Widest inner chunk of a sharded ``weights`` (docs/format.md, "Sharding"): the harness
# samples at most 4096 parameters per run and reads whole chunk columns, so chunks no wider
# than its sample keep what it reads within 2x what it uses (docs/protocol.md).
MAX_INNER_PARAMS = 4096


@dataclass(frozen=True)
class ChunkPlan:
    """Chunk shape of a run's ``weights`` array: ``(snapshots, params)`` per chunk."""

    snapshots: int
    params: int
    shard_params: int | None = (
        None  # shard width when ``weights`` is sharded, a multiple of ``params``
    )

    @property
    def nbytes(self) -> int:
        """Uncompressed bytes of one full chunk (an inner chunk when sharded)."""
        return self.snapshots * self.params * 4

    @property
    def write_params(self) -> int:
        """Width of the unit the Recorder writes as one file: a shard, else a chunk."""
        return self.shard_params if self.shard_params is not None else self.params

    @property
    def shards(self) -> tuple[int, int] | None:
        """Shard shape for ``zarr.create_array(shards=...)``, or None for plain chunks."""
        return None if self.shard_params is None else (self.snapshots, self.shard_params)


def _pow2_at_least(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(x, 1.0))))


def _pow2_at_most(x: float) -> int:
    return 1 << max(0, math.floor(math.log2(max(x, 1.0))))


def plan_chunks(n_params: int, snapshots_per_chunk: int | None = None) -> ChunkPlan:
    """Return the chunk shape the format's rule gives for a run of ``n_params`` scalars.

    Rule (v1):

    1. Snapshots per chunk ``ct``: unless given, the smallest power of two that makes one
       chunk of all parameters at least 1 MiB, clamped to [16, 256]; then lowered (by powers
       of two, to at least 1) until one slab of ``ct`` full snapshots fits in 256 MiB.
    2. Parameters per chunk ``cp``: all of them if ``ct x n_params x 4`` is at most 8 MiB;
       else the parameters are split into ``n = ceil(n_params / floor(4 MiB / (ct x 4)))``
       chunk columns of equal width ``cp = ceil(n_params / n)``, so that chunks hold at
       most 4 MiB and the last column wastes fewer than ``n`` parameters of padding
       (zarr stores edge chunks at full size).

    Chunks are therefore 1 to 8 MiB, except for runs so small that 256 snapshots of all
    their parameters are under 1 MiB (fewer than 1024 parameters), whose chunks are one
    256-snapshot block of everything.

    3. Sharding: if ``cp`` is wider than 4096 (``MAX_INNER_PARAMS``), the unit of rule 2
       becomes a *shard* of zarr's sharding codec and its chunks are narrower: the run's
       parameters are cut into ``m = ceil(n_params / 4096)`` inner columns of equal width
       ``ci = ceil(n_params / m)`` (fewer than ``m`` parameters of padding in all), and each
       shard holds ``k = ceil(m / n)`` of them (``n``: the number of columns of rule 2), so
       shards are ``(ct, k x ci)``, as many as rule 2's chunks or fewer, and inner chunks
       are ``(ct, ci)``. Inner chunks wholly past the last parameter are not stored.
       ``ChunkPlan.params`` is then ``ci`` and ``ChunkPlan.shard_params`` is ``k x ci``.
    """
    if not isinstance(n_params, int) or n_params < 1:
        raise TrajbenchError(f"n_params must be a positive int, but got {n_params!r}")
    row_bytes = n_params * 4
    if snapshots_per_chunk is None:
        ct = _pow2_at_least(MIN_CHUNK_BYTES / row_bytes)
        ct = min(max(ct, MIN_SNAPSHOTS_PER_CHUNK), MAX_SNAPSHOTS_PER_CHUNK)
        if ct * row_bytes > MAX_SLAB_BYTES:
            ct = _pow2_at_most(MAX_SLAB_BYTES / row_bytes)
    else:
        if not isinstance(snapshots_per_chunk, int) or snapshots_per_chunk < 1:
            raise TrajbenchError(
                f"snapshots_per_chunk must be a positive int, but got {snapshots_per_chunk!r}"
            )
        ct = snapshots_per_chunk
    if ct * row_bytes <= MAX_CHUNK_BYTES:
        cp = n_params
    else:
        widest = max(1, TARGET_CHUNK_BYTES // (ct * 4))
        n_columns = -(-n_params // widest)
        cp = -(-n_params // n_columns)
    if cp <= MAX_INNER_PARAMS:
        return ChunkPlan(snapshots=ct, params=cp)
    n_columns = -(-n_params // cp)
    n_inner = -(-n_params // MAX_INNER_PARAMS)
    ci = -(-n_params // n_inner)
    per_shard = -(-n_inner // n_columns)
    return ChunkPlan(snapshots=ct, params=ci, shard_params=per_shard * ci)


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is a valid single-segment name, else raise a clear error."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise TrajbenchError(
            f"{what} must be 1-128 characters of letters, digits, '_', '.', '-' starting with"
            f" a letter or digit, but got {value!r}"
        )
    return value
