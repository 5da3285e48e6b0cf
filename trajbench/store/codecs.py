"""Compression settings of ``weights``: the named codec pipelines and the optional lossy rounding.

Every pipeline is made of codecs that stock zarr-python decodes (``transpose``, ``bytes``,
``blosc``; wide runs wrap them in ``sharding_indexed``, see ``plan_chunks``), so a
compressed store is still a plain zarr v3 store (``docs/format.md``, section 4). The
settings were chosen by measurement on the small suite's real trajectories
(``benchmarks/store.py``, figures in ``docs/performance.md``):

* ``"none"``: the ``bytes`` codec alone, row-major; nothing to encode.
* ``"fast"`` (the default): ``transpose`` (1, 0), so that each parameter's values over the
  chunk's snapshots are adjacent, then ``bytes``, then Blosc zstd level 1 with byte shuffle
  in 1 MiB blocks.
* ``"small"``: the same with Blosc zstd level 5: a few percent smaller, several times slower
  to write.

Every chain ends with zarr's stock ``crc32c`` codec (the inner chunks' chains, when
sharded, as well as the shard index's), and so do the 1-D arrays' (:func:`series_array_kwargs`):
any changed, missing or extra byte of a chunk is an error when it is read, with stock
zarr readers too (``docs/format.md``, "Checksums").

The lossy mode rounds values to fewer mantissa bits *before* they are encoded, with the
same round-to-nearest-even as numcodecs' ``BitRound`` (``"bf16"`` keeps 7 bits, the
precision of bfloat16; ``"f16"`` keeps 10, float16's; an int ``k`` keeps ``k``). The stored
arrays stay float32 with the lossless codecs above, so readers need nothing new; the run
attribute ``lossy`` says what was done and the largest relative error measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trajbench.errors import TrajbenchError, did_you_mean

if TYPE_CHECKING:
    from zarr.codecs.blosc import CName, Shuffle

__all__ = [
    "COMPRESSION_SETTINGS",
    "DEFAULT_COMPRESSION",
    "DEFAULT_COMPRESSION_ATTR",
    "LOSSY_MODES",
    "Compression",
    "LossySpec",
    "WeightsEncoding",
    "resolve_encoding",
    "series_array_kwargs",
    "set_store_default",
    "round_mantissa",
]

Compression = Literal["none", "fast", "small"]
COMPRESSION_SETTINGS: tuple[str, ...] = ("none", "fast", "small")
DEFAULT_COMPRESSION: Compression = "fast"
# Optional root attribute: {"setting": ..., "lossy": ...} used for new runs not told otherwise.
DEFAULT_COMPRESSION_ATTR = "default_compression"
# Named lossy modes and the mantissa bits each keeps (float32 has 23).
LOSSY_MODES: dict[str, int] = {"bf16": 7, "f16": 10}
_FLOAT32_MANTISSA_BITS = 23
# Blosc settings of each compressed setting: (cname, clevel, shuffle, blocksize).
_BLOSC: dict[str, tuple[CName, int, Shuffle, int]] = {
    "fast": ("zstd", 1, "shuffle", 1 << 20),
    "small": ("zstd", 5, "shuffle", 1 << 20),
}


@dataclass(frozen=True)
class LossySpec:
    """Lossy rounding of weights: keep ``keepbits`` of float32's 23 mantissa bits."""

    mode: str
    keepbits: int

    @property
    def bound(self) -> float:
        """Largest relative error rounding can cause on normal float32 values: 2^-(keepbits+1)."""
        return float(2.0 ** -(self.keepbits + 1))


@dataclass(frozen=True)
class WeightsEncoding:
    """How a run's ``weights`` are stored: a compression setting and optional lossy rounding."""

    compression: str
    lossy: LossySpec | None = None

    @property
    def transposed(self) -> bool:
        """Whether chunks are stored parameter-major (the ``transpose`` codec, order (1, 0))."""
        return self.compression != "none"

    def array_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``zarr.create_array`` that give ``weights`` these codecs,
        the ``crc32c`` checksum last."""
        from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, TransposeCodec

        if self.compression == "none":
            return {"serializer": BytesCodec(endian="little"), "compressors": [Crc32cCodec()]}
        cname, clevel, shuffle, blocksize = _BLOSC[self.compression]
        return {
            "filters": [TransposeCodec(order=(1, 0))],
            "serializer": BytesCodec(endian="little"),
            "compressors": [
                BloscCodec(
                    cname=cname, clevel=clevel, shuffle=shuffle, typesize=4, blocksize=blocksize
                ),
                Crc32cCodec(),
            ],
        }

    def codecs_json(self, inner_chunks: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
        """The codec chain of ``weights`` as it appears in its ``zarr.json``.

        With ``inner_chunks`` (a sharded array), the chain is zarr's sharding codec with
        those inner chunks, the setting's codecs inside and zarr's default index codecs
        (``bytes`` little endian + ``crc32c``, index at the end of each shard).
        """
        from zarr.codecs import BytesCodec, ShardingCodec

        kwargs = self.array_kwargs()
        chain = [
            *kwargs.get("filters", []),
            kwargs.get("serializer", BytesCodec(endian="little")),
            *(kwargs.get("compressors") or []),
        ]
        if inner_chunks is not None:
            chain = [ShardingCodec(chunk_shape=tuple(inner_chunks), codecs=chain)]
        return [json.loads(json.dumps(codec.to_dict())) for codec in chain]

    def attrs(self, inner_chunks: tuple[int, ...] | None = None) -> dict[str, Any]:
        """The run attributes ``compression`` and ``lossy`` (before any row is written);
        ``inner_chunks`` as for :meth:`codecs_json`."""
        lossy = None
        if self.lossy is not None:
            lossy = {
                "mode": self.lossy.mode,
                "keepbits": self.lossy.keepbits,
                "bound": self.lossy.bound,
                "max_rel_error": 0.0,
            }
        return {
            "compression": {"setting": self.compression, "codecs": self.codecs_json(inner_chunks)},
            "lossy": lossy,
        }


def series_array_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``zarr.create_array`` of a run's 1-D arrays (``step``,
    ``epoch``, metrics): zarr's default ``zstd`` (level 0), then the ``crc32c`` checksum."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

    return {
        "serializer": BytesCodec(endian="little"),
        "compressors": [ZstdCodec(level=0, checksum=False), Crc32cCodec()],
    }


def resolve_encoding(compression: object = None, lossy: object = None) -> WeightsEncoding:
    """Check ``compression`` and ``lossy`` and return the encoding they name.

    ``compression`` is one of ``"none"``, ``"fast"``, ``"small"`` (None: the default,
    ``"fast"``); ``lossy`` is None (lossless), ``"bf16"``, ``"f16"`` or an int of mantissa
    bits to keep, 1 to 22.
    """
    if compression is None:
        compression = DEFAULT_COMPRESSION
    if not isinstance(compression, str) or compression not in COMPRESSION_SETTINGS:
        hint = (
            did_you_mean(compression, COMPRESSION_SETTINGS) if isinstance(compression, str) else ""
        )
        raise TrajbenchError(
            f"compression must be one of {', '.join(repr(c) for c in COMPRESSION_SETTINGS)}, but got {compression!r}{hint}"
        )
    return WeightsEncoding(compression, _resolve_lossy(lossy))


def set_store_default(
    root: Any, compression: object = None, lossy: object = None
) -> WeightsEncoding:
    """Check a setting and record it as the default of new runs in the store's root attributes."""
    encoding = resolve_encoding(compression, lossy)
    lossy_value = (
        None
        if lossy is None
        else (int(lossy) if isinstance(lossy, (int, np.integer)) else str(lossy))
    )
    root.update_attributes(
        {DEFAULT_COMPRESSION_ATTR: {"setting": encoding.compression, "lossy": lossy_value}}
    )
    return encoding


def _resolve_lossy(lossy: object) -> LossySpec | None:
    if lossy is None:
        return None
    if isinstance(lossy, str):
        if lossy in LOSSY_MODES:
            return LossySpec(lossy, LOSSY_MODES[lossy])
        if lossy.isdigit():
            return _resolve_lossy(int(lossy))
        hint = did_you_mean(lossy, LOSSY_MODES)
        raise TrajbenchError(
            f"lossy must be None, 'bf16', 'f16' or an int of mantissa bits 1-22, but got {lossy!r}{hint}"
        )
    if (
        isinstance(lossy, (int, np.integer))
        and not isinstance(lossy, bool)
        and 1 <= int(lossy) < _FLOAT32_MANTISSA_BITS
    ):
        return LossySpec(f"keepbits-{int(lossy)}", int(lossy))
    raise TrajbenchError(
        f"lossy must be None, 'bf16', 'f16' or an int of mantissa bits 1-22, but got {lossy!r}"
    )


def round_mantissa(values: np.ndarray, keepbits: int) -> float:
    """Round float32 ``values`` in place to ``keepbits`` mantissa bits; return the max relative error.

    Round to nearest, ties to even, exactly as numcodecs' ``BitRound`` (except that values
    so large that rounding up would overflow are truncated). The error is measured over the
    finite non-zero values; zeros, infinities and NaN are unchanged.
    """
    if values.dtype != np.float32:
        raise TrajbenchError(f"round_mantissa needs float32 values, but got {values.dtype}")
    if not 1 <= keepbits < _FLOAT32_MANTISSA_BITS:
        raise TrajbenchError(f"keepbits must be 1-22, but got {keepbits!r}")
    original = values.copy()
    bits = values.view(np.uint32)
    shift = _FLOAT32_MANTISSA_BITS - keepbits
    finite = np.isfinite(original)
    rounded = bits + (((bits >> shift) & 1) + np.uint32((1 << (shift - 1)) - 1))
    rounded &= np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF)
    np.copyto(bits, rounded, where=finite)
    # Rounding up the largest finite values can carry into the exponent and give infinity;
    # those (beyond 3.4e38 x (1 - 2^-(keepbits+1))) are truncated instead, staying finite.
    overflow = finite & ~np.isfinite(values)
    if overflow.any():
        bits[overflow] = original.view(np.uint32)[overflow] & np.uint32(
            (0xFFFFFFFF << shift) & 0xFFFFFFFF
        )
    nonzero = finite & (original != 0)
    if not nonzero.any():
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        error = np.abs(values[nonzero].astype(np.float64) - original[nonzero]) / np.abs(
            original[nonzero].astype(np.float64)
        )
    return float(error.max())
