"""``validate_store``: check a store against the format and list every problem found.

Every problem is one line that names the run (or node) and what was expected, so a
damaged store is a list, never a traceback: unreadable or missing ``zarr.json`` documents,
run groups without their arrays, and, reading every chunk (``check_data``), each chunk that
cannot be decoded (its checksum does not match, it is truncated, its ``data_type`` is
wrong) or is missing, with its snapshot range.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr
from zarr.core.metadata import ArrayV3Metadata

from trajbench.store.format import (
    EPOCH,
    NAME_PATTERN,
    RESERVED_ARRAY_NAMES,
    RUNS_GROUP,
    SERIES_DIMS,
    STATUSES,
    STEP,
    SYNTHETIC_GROUP,
    WEIGHTS,
    WEIGHTS_DIMS,
    WEIGHTS_DTYPE,
)
from trajbench.store.layout import layout_problems
from trajbench.store.root import _one_line, chunks_exist, open_root, scan_members

__all__ = ["validate_store"]

# Rows read at once when scanning committed weights for non-finite values.
_SCAN_BYTES = 64 << 20


def validate_store(location: str | os.PathLike[str], *, check_data: bool = True) -> list[str]:
    """Return every way the store at ``location`` breaks the format; empty means valid.

    Checks the root attributes and format version, then every node where runs are kept:
    each ``zarr.json`` readable, names valid (``docs/format.md``, section 1), and for every
    run: its arrays present, names, dtypes, dimension names and shapes, ``param_layout``
    against ``weights``, ``n_snapshots`` within the arrays' bounds, ``status``, non-decreasing ``step``. With ``check_data`` (the
    default) every committed chunk of every array is read and decoded, which verifies its
    checksum where the store has them: each chunk that cannot be decoded or, for
    ``weights``, is missing, is one problem naming its run and snapshot range; committed
    weights must be finite. A missing path, a directory that is not a store, or a newer
    format version raise instead (see :func:`trajbench.open_store`), because nothing else
    can be checked.
    """
    root = open_root(location, mode="r")
    problems: list[str] = []
    for path, group in _run_groups(root, problems):
        problems.extend(f"{path}: {p}" for p in _run_problems(group, check_data))
    return problems


def _name_problem(path: str, name: str) -> list[str]:
    if NAME_PATTERN.match(name):
        return []
    return [
        f"{path}: name {name!r} is not 1-128 characters of letters, digits, '_', '.', '-' starting with a letter or digit"
    ]


def _run_groups(root: zarr.Group, problems: list[str]) -> Iterator[tuple[str, zarr.Group]]:
    top = scan_members(root)
    for name in [*top.arrays, *top.groups, *top.damaged]:
        if name not in (RUNS_GROUP, SYNTHETIC_GROUP):
            problems.append(
                f"unexpected top-level node '{name}' (expected only '{RUNS_GROUP}' and '{SYNTHETIC_GROUP}')"
            )
    for name in (RUNS_GROUP, SYNTHETIC_GROUP):
        if name in top.damaged:
            problems.append(f"{name}: {top.damaged[name]}; none of its runs can be listed")
        if name in top.arrays:
            problems.append(f"{name}: is an array; expected a group")
    runs = top.groups.get(RUNS_GROUP)
    if runs is not None:
        yield from _child_groups(runs, RUNS_GROUP, "run", problems)
    synthetic = top.groups.get(SYNTHETIC_GROUP)
    if synthetic is not None:
        for prefix, family in _child_groups(synthetic, SYNTHETIC_GROUP, "family", problems):
            yield from _child_groups(family, prefix, "series", problems)


def _child_groups(
    parent: zarr.Group, prefix: str, what: str, problems: list[str]
) -> Iterator[tuple[str, zarr.Group]]:
    """``(path, group)`` of each of ``parent``'s child groups, its name checked first; a
    damaged child, or an array where a ``what`` group belongs, is added to ``problems``."""
    found = scan_members(parent)
    for name, why in found.damaged.items():
        problems.append(f"{prefix}/{name}: {what} group is damaged: {why}")
    for name in found.arrays:
        problems.append(f"{prefix}/{name}: is an array; expected a {what} group")
    for name, group in found.groups.items():
        problems.extend(_name_problem(f"{prefix}/{name}", name))
        yield f"{prefix}/{name}", group


def _run_problems(group: zarr.Group, check_data: bool) -> list[str]:
    attrs: dict[str, Any] = dict(group.attrs)
    members = scan_members(group)
    arrays = dict(members.arrays)
    problems: list[str] = [
        f"array '{name}' is damaged: {why}" for name, why in members.damaged.items()
    ]
    for name in members.groups:
        problems.append(f"unexpected group '{name}' in a run (expected only arrays)")
    for required in (WEIGHTS, STEP, EPOCH):
        if required not in arrays and required not in members.damaged:
            problems.append(f"missing array '{required}'")
    status = attrs.get("status")
    if status not in STATUSES:
        problems.append(f"status is {status!r}; expected one of {', '.join(STATUSES)}")
    n = attrs.get("n_snapshots")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        problems.append(f"n_snapshots is {n!r}; expected a non-negative int")
        n = None
    if WEIGHTS not in arrays:
        return problems
    weights = arrays[WEIGHTS]
    if str(weights.dtype) != WEIGHTS_DTYPE:
        problems.append(f"weights has dtype {weights.dtype}; expected {WEIGHTS_DTYPE}")
    if weights.ndim != 2:
        problems.append(f"weights has {weights.ndim} dimensions; expected 2 (snapshot, param)")
        return problems
    dims = tuple(_v3_metadata(weights).dimension_names or ())
    if dims != WEIGHTS_DIMS:
        problems.append(f"weights has dimension_names {list(dims)}; expected {list(WEIGHTS_DIMS)}")
    n_rows, n_params = (int(s) for s in weights.shape)
    problems.extend(layout_problems(attrs.get("param_layout"), n_params))
    if attrs.get("n_params", n_params) != n_params:
        problems.append(
            f"n_params attribute is {attrs.get('n_params')} but weights has {n_params} columns"
        )
    if n is not None and n > n_rows:
        problems.append(f"n_snapshots is {n} but weights holds only {n_rows} rows")
        n = n_rows
    for name, array in arrays.items():
        if name == WEIGHTS:
            continue
        if array.ndim != 1:
            problems.append(f"array '{name}' has {array.ndim} dimensions; expected 1 (snapshot)")
            continue
        if name not in RESERVED_ARRAY_NAMES and not NAME_PATTERN.match(name):
            problems.append(
                f"metric name {name!r} is not 1-128 characters of letters, digits, '_', '.', '-' starting with a letter or digit"
            )
        dimension_names = _v3_metadata(array).dimension_names
        if tuple(dimension_names or ()) != SERIES_DIMS:
            problems.append(
                f"array '{name}' has dimension_names {dimension_names}; expected {list(SERIES_DIMS)}"
            )
        if n is not None and array.shape[0] < n:
            problems.append(f"array '{name}' has {array.shape[0]} rows, fewer than n_snapshots={n}")
        expected = {STEP: "int64", EPOCH: "float64"}.get(name)
        if expected and str(array.dtype) != expected:
            problems.append(f"array '{name}' has dtype {array.dtype}; expected {expected}")
        elif name not in RESERVED_ARRAY_NAMES and not np.issubdtype(
            np.dtype(str(array.dtype)), np.number
        ):
            problems.append(f"metric array '{name}' has non-numeric dtype {array.dtype}")
    damaged: list[str] = []
    if check_data and n:
        for name, array in arrays.items():
            if array.ndim in (1, 2) and array.shape[0] >= n:
                damaged += _chunk_problems(name, array, n)
    problems.extend(damaged)
    damaged = [p for p in damaged if "non-finite" not in p]
    if n and STEP in arrays and arrays[STEP].shape[0] >= n and not damaged:
        try:
            steps = np.asarray(arrays[STEP][:n])
        except Exception as exc:
            problems.append(f"step cannot be read: {_one_line(exc)}")
            steps = np.zeros(0, dtype=np.int64)
        bad = np.flatnonzero(np.diff(steps) < 0)
        if bad.size:
            problems.append(
                f"step decreases at snapshot {int(bad[0]) + 1} ({int(steps[bad[0]])} -> {int(steps[bad[0] + 1])})"
            )
    problems.extend(_encoding_problems(attrs, weights))
    return problems


def _chunk_problems(name: str, array: zarr.Array, n: int) -> list[str]:
    """Read the first ``n`` rows of ``array`` (all its columns) a block of chunk rows at
    a time; one problem per stored unit (chunk, or shard when sharded) that cannot be
    decoded, and, for ``weights``, per unit that is missing (its committed rows are
    finite, so zarr never leaves one out)."""
    unit = tuple(int(c) for c in (array.shards or array.chunks))
    ct = unit[0]
    width = int(array.shape[1]) if array.ndim == 2 else 1
    n_cols = -(-width // unit[1]) if array.ndim == 2 else 1
    encode = array.metadata.encode_chunk_key

    def key(i: int, j: int) -> tuple[int, ...]:
        return (i, j) if array.ndim == 2 else (i,)

    def where(i: int, j: int) -> str:
        rows = f"snapshots {i * ct}..{min(n, (i + 1) * ct) - 1}"
        if array.ndim == 2 and n_cols > 1:
            rows += f", params {j * unit[1]}..{min(width, (j + 1) * unit[1]) - 1}"
        return f"{name} chunk {encode(key(i, j))} ({rows})"

    problems: list[str] = []
    non_finite: list[str] = []
    n_blocks = -(-n // ct)
    missing: set[tuple[int, ...]] = set()
    if name == WEIGHTS:
        keys = [key(i, j) for i in range(n_blocks) for j in range(n_cols)]
        present = chunks_exist(array, [encode(k) for k in keys])
        for k, ok in zip(keys, present, strict=True):
            if not ok:
                missing.add(k)
                problems.append(
                    f"{where(k[0], k[1])} is missing; committed weights are always stored"
                )
    per_read = max(1, _SCAN_BYTES // max(1, ct * width * np.dtype(str(array.dtype)).itemsize))
    for first in range(0, n_blocks, per_read):
        last = min(n_blocks, first + per_read)
        start, stop = first * ct, min(n, last * ct)
        try:
            block = np.asarray(array[start:stop])
        except Exception:
            block = None
        if block is not None:
            if name == WEIGHTS and not missing and not non_finite:
                non_finite = _non_finite_block(block, start, stop)
            continue
        for i in range(first, last):  # find each unit that fails alone
            for j in range(n_cols):
                if key(i, j) in missing:
                    continue
                rows = slice(i * ct, min(n, (i + 1) * ct))
                try:
                    if array.ndim == 2:
                        array[rows, j * unit[1] : min(width, (j + 1) * unit[1])]
                    else:
                        array[rows]
                except Exception as exc:
                    problems.append(f"{where(i, j)} cannot be decoded: {_one_line(exc)}")
    return problems or non_finite


def _v3_metadata(array: zarr.Array) -> ArrayV3Metadata:
    """The metadata of ``array``: zarr v3's, as ``open_root`` opens the root as zarr v3 and
    zarr reads every node under it as v3."""
    metadata = array.metadata
    assert isinstance(metadata, ArrayV3Metadata)
    return metadata


def _encoding_problems(attrs: dict[str, Any], weights: zarr.Array) -> list[str]:
    """The optional ``compression`` and ``lossy`` attributes against the spec and ``weights``' codecs."""
    problems: list[str] = []
    compression = attrs.get("compression")
    if compression is not None:
        if not isinstance(compression, dict) or not isinstance(compression.get("codecs"), list):
            problems.append(
                f"compression is {compression!r}; expected {{'setting': ..., 'codecs': [...]}}"
            )
        else:
            stored = json.loads(json.dumps([c.to_dict() for c in _v3_metadata(weights).codecs]))
            if compression["codecs"] != stored:
                problems.append(
                    f"compression.codecs {compression['codecs']} differ from the codecs of weights/zarr.json {stored}"
                )
    lossy = attrs.get("lossy")
    if lossy is not None:
        keepbits = lossy.get("keepbits") if isinstance(lossy, dict) else None
        error = lossy.get("max_rel_error") if isinstance(lossy, dict) else None
        if (
            not isinstance(lossy, dict)
            or not isinstance(lossy.get("mode"), str)
            or not isinstance(keepbits, int)
            or isinstance(keepbits, bool)
            or not 1 <= keepbits <= 22
            or not isinstance(error, (int, float))
            or isinstance(error, bool)
            or not math.isfinite(error)
            or error < 0
        ):
            problems.append(
                f"lossy is {lossy!r}; expected null or {{'mode': str, 'keepbits': 1-22, 'bound': ..., 'max_rel_error': a finite number >= 0}}"
            )
    return problems


def _non_finite_block(block: np.ndarray, start: int, stop: int) -> list[str]:
    """The problem of committed weight rows ``start..stop-1`` (``block``) holding NaN or
    infinity, or none."""
    finite = np.isfinite(block).all(axis=1)
    if finite.all():
        return []
    first = start + int(np.flatnonzero(~finite)[0])
    count = int((~finite).sum())
    return [
        f"committed snapshot {first} has non-finite weights ({count} such rows in snapshots {start}..{stop - 1}); committed rows must be finite"
    ]
