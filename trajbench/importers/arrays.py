"""Import trajectory arrays (``.npy`` / ``.npz``) as runs or synthetic series (``source: "import-array"``).

    from trajbench.importers import import_array
    import_array("traj.npy", "runs.zarr", layout="runs,time,params")        # runs/run-0, run-1, ...
    import_array("traj.npz", "runs.zarr", layout="time,params", key="w")    # one run: runs/run-0
    import_array("traj.npy", "runs.zarr", windows="20,201,180")  # + the store's evaluation windows

Each run's ``param_layout`` is one flat tensor named ``w`` of kind ``other`` (an array has
no layer structure to infer); ``step`` is the time index ``0 .. T-1`` and ``epoch`` is NaN.
Arrays are opened with ``allow_pickle=False``. ``.npy`` files are memory-mapped and copied
a block of rows at a time, so memory stays bounded whatever their size and axis order;
a ``.npz`` member is read whole (zip members cannot be memory-mapped).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trajbench.errors import (
    LossyImportWarning,
    did_you_mean,
)
from trajbench.importers._common import ArrayImportError, ImportResult, refuse_existing, run_attrs
from trajbench.store.format import RUNS_GROUP, SYNTHETIC_GROUP, check_name
from trajbench.store.layout import ParamSpec
from trajbench.store.windows import EvaluationWindows
from trajbench.store.writer import RunWriter, WriteMode

__all__ = ["import_array", "AXES", "PARAM_NAME", "parse_axes", "parse_windows"]

SOURCE = "import-array"
AXES = ("runs", "time", "params")
PARAM_NAME = "w"
# Rows of one run copied from the source array at a time (bounds memory for huge arrays).
_BLOCK_BYTES = 64 << 20
_STORABLE = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


def parse_axes(layout: str, ndim: int | None = None) -> tuple[str, ...]:
    """``"runs,time,params"`` -> ``("runs", "time", "params")``, checked.

    Three axes must be a permutation of ``runs``, ``time``, ``params``; two axes a
    permutation of ``time``, ``params`` (the array is one run). ``ndim``, when given, must
    match the number of axes.
    """
    if not isinstance(layout, str):
        raise ArrayImportError(
            f"layout must be a string such as 'runs,time,params', but got {layout!r}"
        )
    axes = tuple(part.strip() for part in layout.split(","))
    for axis in axes:
        if axis not in AXES:
            raise ArrayImportError(
                f"layout {layout!r} names axis {axis!r}; expected only {', '.join(AXES)}{did_you_mean(axis, AXES)}"
            )
    if len(set(axes)) != len(axes):
        raise ArrayImportError(
            f"layout {layout!r} repeats an axis; expected each of {', '.join(AXES)} at most once"
        )
    if len(axes) == 3 or (len(axes) == 2 and set(axes) == {"time", "params"}):
        pass
    else:
        raise ArrayImportError(
            f"layout {layout!r} must order 'runs,time,params' (3-D) or 'time,params' (2-D, one run)"
        )
    if ndim is not None and ndim != len(axes):
        raise ArrayImportError(
            f"layout {layout!r} has {len(axes)} axes but the array has {ndim} dimensions"
        )
    return axes


def parse_windows(text: str) -> EvaluationWindows:
    """``"20,201,180"`` -> ``EvaluationWindows(first_origin=20, stride=201, max_horizon=180)``.

    The command line's ``--windows FIRST,STRIDE,MAXH``: three integers, each at least 1
    (:class:`~trajbench.store.windows.EvaluationWindows`), with a one-line error otherwise.
    """
    parts = [p.strip() for p in str(text).split(",")]
    expected = "FIRST_ORIGIN,STRIDE,MAX_HORIZON (three ints >= 1, e.g. 20,201,180)"
    if len(parts) != 3:
        raise ArrayImportError(f"windows must be {expected}, but got {text!r}")
    values: list[int] = []
    for name, part in zip(("first_origin", "stride", "max_horizon"), parts, strict=True):
        try:
            value = int(part)
        except ValueError:
            raise ArrayImportError(
                f"windows: {name} must be an int >= 1, but got {part!r} in {text!r}; expected {expected}"
            ) from None
        if value < 1:
            raise ArrayImportError(
                f"windows: {name} must be an int >= 1, but got {value} in {text!r}; expected {expected}"
            )
        values.append(value)
    return EvaluationWindows(*values)


def _check_windows(out: Any, windows: EvaluationWindows, n_time: int, path: Path) -> None:
    """Refuse, before anything is written, windows that score nothing on these runs or
    that contradict the windows the store already declares (its results so far were
    scored on those; :func:`~trajbench.store.windows.declare_windows` refuses the same)."""
    from trajbench.errors import StoreNotFoundError
    from trajbench.store.reader import open_store

    if windows.first_origin + 1 > n_time - 1:
        raise ArrayImportError(
            f"windows: first_origin {windows.first_origin} leaves no snapshot to score in "
            f"'{path}' ({n_time} snapshots per run, indices 0..{n_time - 1}); expected at most {n_time - 2}"
        )
    try:
        present = open_store(out).evaluation_windows
    except StoreNotFoundError:
        return
    if present is not None and present != windows:
        raise ArrayImportError(
            f"store '{out}' already declares windows {present.to_json()}; refusing to change them to "
            f"{windows.to_json()} (import into a new store, or pass the same windows)"
        )


def _load(path: Path, key: str | None) -> tuple[np.ndarray, str | None]:
    """The array (memory-mapped for .npy) and the .npz key it came from."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ArrayImportError(f"array file '{path}' does not exist")
    if suffix == ".npy":
        if key is not None:
            raise ArrayImportError(
                f"key={key!r} applies only to .npz files, but '{path}' is a .npy file"
            )
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        except ValueError as exc:
            raise ArrayImportError(
                f"cannot read '{path}' without pickle (an object array?): {exc}"
            ) from None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if key is None:
                    if len(names) != 1:
                        raise ArrayImportError(
                            f"'{path}' holds {len(names)} arrays ({', '.join(names) or 'none'}); pass key= to pick one"
                        )
                    key = names[0]
                if key not in names:
                    raise ArrayImportError(
                        f"'{path}' has no array {key!r}; it holds {', '.join(names)}{did_you_mean(key, names)}"
                    )
                return archive[key], key
        except ArrayImportError:
            raise
        except (ValueError, OSError) as exc:
            raise ArrayImportError(f"cannot read '{path}' without pickle: {exc}") from None
    raise ArrayImportError(f"'{path}' is not a .npy or .npz file")


def _paths(n_runs: int, as_: str, family: str | None, run_id_prefix: str) -> list[str]:
    width = len(str(n_runs - 1))
    if as_ == "run":
        return [
            f"{RUNS_GROUP}/{check_name(f'{run_id_prefix}-{i:0{width}d}', 'run id')}"
            for i in range(n_runs)
        ]
    if family is None:
        raise ArrayImportError(
            "as_='synthetic' needs family= (the synthetic/<family>/ group to write into)"
        )
    check_name(family, "family")
    return [f"{SYNTHETIC_GROUP}/{family}/{i:0{width}d}" for i in range(n_runs)]


def import_array(
    file: str | os.PathLike[str],
    out: Any,
    *,
    layout: str = "runs,time,params",
    as_: Literal["run", "synthetic"] = "run",
    family: str | None = None,
    run_id_prefix: str = "run",
    key: str | None = None,
    meta: Mapping[str, Any] | None = None,
    mode: WriteMode = "w-",
    allow_rounding: bool = False,
    windows: EvaluationWindows | str | None = None,
) -> ImportResult:
    """Import the trajectories of one array file into store ``out``.

    Parameters
    ----------
    file:
        A ``.npy`` file, or a ``.npz`` file (``key`` picks the member; optional when there
        is only one). Any real or boolean dtype; values are stored as float32.
    out:
        Store path or fsspec URL; created if missing.
    layout:
        The array's axis order: a permutation of ``runs,time,params`` for a 3-D array, or
        of ``time,params`` for a 2-D array holding one run.
    as_:
        ``"run"``: run ``i`` becomes ``runs/<run_id_prefix>-<i>``; ``"synthetic"``: it
        becomes ``synthetic/<family>/<i>``. Indices are zero-padded to the same width
        (``run-00`` .. ``run-11``) so that stores list them in order.
    family:
        The synthetic family (required with ``as_="synthetic"``).
    run_id_prefix:
        Prefix of the run ids with ``as_="run"``.
    key:
        The ``.npz`` member to import.
    meta:
        Attributes given to every imported run (``task``, ``architecture``, ...; JSON). For
        synthetic series, ``generating_params`` defaults to ``{}``.
    mode:
        ``"w-"`` (default) refuses if any target run exists (checked before writing
        anything); ``"w"`` replaces them. Appending (``"a"``) is not supported.
    allow_rounding:
        Integer arrays holding values beyond float32's exact range (magnitude over
        2^24 = 16,777,216) are refused (checked before writing anything), because the
        stored values would not be the imported ones; True stores them rounded to the
        nearest float32, with a :class:`~trajbench.errors.LossyImportWarning`.
    windows:
        The store's evaluation windows, where ``trajbench bench`` scores its runs
        (``docs/protocol.md``, section 4): an
        :class:`~trajbench.store.windows.EvaluationWindows` or ``"FIRST,STRIDE,MAXH"``.
        Written into the store's root attributes exactly as a suite's ``[suite.windows]``
        (:func:`~trajbench.store.windows.declare_windows`). Refused before anything is
        written if ``first_origin`` leaves no snapshot to score or the store already
        declares other windows. None (default): the store's declaration is left as it is.

    Returns
    -------
    ImportResult
        One path per run, in index order.
    """
    if mode not in ("w-", "w"):
        raise ArrayImportError(f"mode must be 'w-' or 'w' for an array import, but got {mode!r}")
    if as_ not in ("run", "synthetic"):
        raise ArrayImportError(f"as_ must be 'run' or 'synthetic', but got {as_!r}")
    path = Path(os.fspath(file))
    array, used_key = _load(path, key)
    axes = parse_axes(layout, array.ndim)
    dtype = np.dtype(array.dtype)
    if dtype.name not in _STORABLE:
        raise ArrayImportError(
            f"'{path}' has dtype {dtype}; expected one of {', '.join(_STORABLE)}"
        )
    if len(axes) == 2:
        array, axes = array[np.newaxis], ("runs", *axes)
    view = np.transpose(array, [axes.index(a) for a in AXES])  # (runs, time, params), no copy
    n_runs, n_time, n_params = (int(s) for s in view.shape)
    if min(n_runs, n_time, n_params) < 1:
        raise ArrayImportError(
            f"'{path}' has an empty axis: {n_runs} runs x {n_time} time steps x {n_params} params"
        )
    paths = _paths(n_runs, as_, family, run_id_prefix)
    _check_exact(array, path, allow_rounding)
    if mode == "w-":
        refuse_existing(out, paths)
    if isinstance(windows, str):
        windows = parse_windows(windows)
    elif windows is not None and not isinstance(windows, EvaluationWindows):
        raise ArrayImportError(
            f"windows must be an EvaluationWindows or 'FIRST,STRIDE,MAXH', but got {windows!r}"
        )
    if windows is not None:
        _check_windows(out, windows, n_time, path)
    spec = ParamSpec(
        name=PARAM_NAME, shape=(n_params,), offset=0, numel=n_params, kind="other", dtype=dtype.name
    )
    fixed: dict[str, Any] = {
        "source": SOURCE,
        "source_path": str(path.resolve()),
        "source_layout": layout.replace(" ", ""),
    }
    if used_key is not None:
        fixed["source_key"] = used_key
    base = run_attrs(meta, fixed)
    if as_ == "synthetic":
        base.setdefault("generating_params", {})
    rows_per_block = max(1, _BLOCK_BYTES // (n_params * 4))
    counts: list[int] = []
    statuses: list[str] = []
    for i, group_path in enumerate(paths):
        writer = RunWriter(out, group_path, [spec], {**base, "source_index": i}, mode=mode)
        try:
            _copy_run(writer, view[i], n_time, rows_per_block)
        except BaseException:
            try:
                writer.close("failed")
            except Exception:  # keep the original error
                pass
            raise
        writer.close("complete")
        counts.append(writer.n_committed)
        statuses.append(writer.status)
    if windows is not None:  # after the runs: a failed import leaves no declaration behind
        from trajbench.store.windows import declare_windows

        declare_windows(out, windows)
    return ImportResult(str(out), tuple(paths), tuple(counts), n_params, tuple(statuses), str(path))


_EXACT_INT = 1 << 24  # float32 holds every integer of magnitude up to 2^24 exactly


def _check_exact(array: np.ndarray, path: Path, allow_rounding: bool) -> None:
    """Refuse (or, asked to, warn about) integers that float32 would round."""
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "iu" or dtype.itemsize < 4:
        return  # 8- and 16-bit integers and bools are exact in float32
    flat = array.reshape(-1)
    step = max(1, _BLOCK_BYTES // dtype.itemsize)
    for start in range(0, flat.size, step):
        block = np.asarray(flat[start : start + step])
        big = np.flatnonzero((block > _EXACT_INT) | (block < -_EXACT_INT))
        if not big.size:
            continue
        value = int(block[big[0]])
        if not allow_rounding:
            raise ArrayImportError(
                f"'{path}' holds integers beyond 2^24 (e.g. {value}) that float32 cannot store exactly; pass allow_rounding=True (--allow-rounding) to store them rounded"
            )
        warnings.warn(
            f"'{path}' holds integers beyond 2^24 (e.g. {value}); they are stored rounded to float32",
            LossyImportWarning,
            stacklevel=3,
        )
        return


def _copy_run(writer: RunWriter, series: np.ndarray, n_time: int, rows_per_block: int) -> None:
    """Append ``series`` (time, params) a block of rows at a time; stop if the run diverges."""
    for t0 in range(0, n_time, rows_per_block):
        block = np.asarray(series[t0 : t0 + rows_per_block], dtype=np.float32)
        for j in range(block.shape[0]):
            if not writer.append(block[j], step=t0 + j, epoch=math.nan):
                return
