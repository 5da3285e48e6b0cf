"""``validate_store``: check a store against format v1 and list every problem found."""

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
from trajbench.store.root import array_at, group_at, member_keys, open_root

__all__ = ["validate_store"]

# Rows read at once when scanning committed weights for non-finite values.
_SCAN_BYTES = 64 << 20


def validate_store(location: str | os.PathLike[str], *, check_data: bool = True) -> list[str]:
    """Return every way the store at ``location`` breaks format v1; empty means valid.

    Checks the root attributes and format version, then for every run: array names,
    dtypes, dimension names and shapes, ``param_layout`` against ``weights``,
    ``n_snapshots`` within the arrays' bounds, ``status``, non-decreasing ``step``, and
    (with ``check_data``) that committed weight rows are finite. A missing path, a
    directory that is not a store, or a newer format version raise instead (see
    :func:`trajbench.open_store`), because nothing else can be checked.
    """
    root = open_root(location, mode="r")
    problems: list[str] = []
    for path, group in _run_groups(root, problems):
        problems.extend(f"{path}: {p}" for p in _run_problems(group, check_data))
    return problems


def _run_groups(root: zarr.Group, problems: list[str]) -> Iterator[tuple[str, zarr.Group]]:
    for name in member_keys(root, "array") + member_keys(root, "group"):
        if name not in (RUNS_GROUP, SYNTHETIC_GROUP):
            problems.append(
                f"unexpected top-level node '{name}' (expected only '{RUNS_GROUP}' and '{SYNTHETIC_GROUP}')"
            )
    if RUNS_GROUP in member_keys(root, "group"):
        runs = group_at(root, RUNS_GROUP)
        for name in sorted(member_keys(runs, "array")):
            problems.append(f"{RUNS_GROUP}/{name}: is an array; expected a run group")
        for name in sorted(member_keys(runs, "group")):
            yield f"{RUNS_GROUP}/{name}", group_at(runs, name)
    if SYNTHETIC_GROUP in member_keys(root, "group"):
        synthetic = group_at(root, SYNTHETIC_GROUP)
        for family in sorted(member_keys(synthetic, "group")):
            family_group = group_at(synthetic, family)
            for name in sorted(member_keys(family_group, "group")):
                yield f"{SYNTHETIC_GROUP}/{family}/{name}", group_at(family_group, name)


def _run_problems(group: zarr.Group, check_data: bool) -> list[str]:
    attrs: dict[str, Any] = dict(group.attrs)
    arrays = {name: array_at(group, name) for name in member_keys(group, "array")}
    problems: list[str] = []
    for required in (WEIGHTS, STEP, EPOCH):
        if required not in arrays:
            problems.append(f"missing array '{required}'")
    status = attrs.get("status")
    if status not in STATUSES:
        problems.append(f"status is {status!r}; expected one of {', '.join(STATUSES)}")
    n = attrs.get("n_snapshots")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        problems.append(f"n_snapshots is {n!r}; expected a non-negative int")
        n = None
    if problems and WEIGHTS not in arrays:
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
    if n and STEP in arrays and arrays[STEP].shape[0] >= n:
        steps = np.asarray(arrays[STEP][:n])
        bad = np.flatnonzero(np.diff(steps) < 0)
        if bad.size:
            problems.append(
                f"step decreases at snapshot {int(bad[0]) + 1} ({int(steps[bad[0]])} -> {int(steps[bad[0] + 1])})"
            )
    problems.extend(_encoding_problems(attrs, weights))
    if check_data and n:
        problems.extend(_non_finite_rows(weights, n))
    return problems


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


def _non_finite_rows(weights: zarr.Array, n: int) -> list[str]:
    """Scan committed rows a chunk-row at a time (bounded memory) for NaN or infinity."""
    n_params = int(weights.shape[1])
    chunk_rows = int(weights.chunks[0])
    step = max(chunk_rows, chunk_rows * max(1, _SCAN_BYTES // max(1, chunk_rows * n_params * 4)))
    for start in range(0, n, step):
        block = np.asarray(weights[start : min(n, start + step)])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            first = start + int(np.flatnonzero(~finite)[0])
            count = int((~finite).sum())
            return [
                f"committed snapshot {first} has non-finite weights ({count} such rows in snapshots {start}..{min(n, start + step) - 1}); committed rows must be finite"
            ]
    return []
