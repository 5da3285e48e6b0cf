"""The task zoo's datasets: fixed, deterministic, offline train / held-out splits.

Every loader returns plain numpy arrays and is cached per process. Nothing here touches
the network:

* **digits**: scikit-learn's ``load_digits`` (1,797 8x8 images shipped inside
  scikit-learn). Held-out = every sample whose index ``i`` has ``i % 5 == 0`` (360),
  train = the other 1,437. Pixels are scaled to ``[0, 1]`` (divided by 16).
* **mnist1d**: ``mnist1d.data.make_dataset(get_dataset_args())`` with the package's
  default arguments (5,000 samples, seed 42; generated offline), split as the package
  splits it: 4,000 train, 1,000 held-out, 40 features. Generating takes about two
  seconds, so the arrays are cached on disk under :func:`cache_dir` (the key holds the
  mnist1d version and the arguments; delete the directory to regenerate).
* **text**: ``trajbench/tasks/data/corpus.txt`` (public-domain passages, see
  ``SOURCES.md``) cut into consecutive, non-overlapping windows of ``context + 1``
  characters; every window whose index ``i`` has ``i % 10 == 9`` is held out.

Each loader also returns a short SHA-256 *fingerprint* of its arrays, recorded in every
run's attributes so that a store says exactly which data it was trained on.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from trajbench.errors import TrajbenchError

__all__ = ["Split", "digits", "mnist1d", "text_windows", "corpus_text", "cache_dir", "fingerprint"]

CORPUS_FILE = "corpus.txt"


@dataclass(frozen=True)
class Split:
    """A fixed train / held-out split as numpy arrays (read-only)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    fingerprint: str
    description: str


def fingerprint(*arrays: np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of the arrays' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _freeze(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$TRAJBENCH_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/trajbench``, else ``~/.cache/trajbench``."""
    explicit = os.environ.get("TRAJBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trajbench"


def _load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits exactly as ``sklearn.datasets.load_digits(return_X_y=True)`` gives them.

    Reads scikit-learn's bundled ``datasets/data/digits.csv.gz`` directly when it is there
    (importing scikit-learn costs seconds per worker process), else calls ``load_digits``.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x, y


@cache
def digits() -> Split:
    """scikit-learn digits: 1,437 train / 360 held-out, ``x`` of shape (n, 64) in [0, 1]."""
    x, y = _load_digits_arrays()
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int64)
    held_out = np.arange(len(x)) % 5 == 0
    parts = (x[~held_out], y[~held_out], x[held_out], y[held_out])
    _freeze(*parts)
    return Split(
        *parts,
        fingerprint=fingerprint(*parts),
        description="sklearn load_digits; held-out = index % 5 == 0; x / 16",
    )


def _make_mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset  # make_dataset never downloads

    # make_dataset reseeds the global `random` and `numpy.random` generators: restore them.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _mnist1d_cache_key() -> str:
    """The installed mnist1d version: ``make_dataset(get_dataset_args())`` is a pure
    function of it (importing mnist1d just to hash its default arguments costs a second)."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed from source
        version = "unknown"
    return hashlib.sha256(f"mnist1d {version} default-args".encode()).hexdigest()[:16]


@cache
def mnist1d() -> Split:
    """MNIST-1D (default arguments): 4,000 train / 1,000 held-out, ``x`` of shape (n, 40)."""
    path = cache_dir() / f"mnist1d-{_mnist1d_cache_key()}.npz"
    arrays: dict[str, np.ndarray] | None = None
    if path.exists():
        try:
            with np.load(path) as stored:
                arrays = {k: stored[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, KeyError, ValueError):
            arrays = None  # a damaged cache file: regenerate it
    if arrays is None:
        arrays = _make_mnist1d()
        try:  # write-then-rename, so concurrent workers never read a torn file
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    x=arrays["x"],
                    y=arrays["y"],
                    x_test=arrays["x_test"],
                    y_test=arrays["y_test"],
                )
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs regeneration time
    parts = (arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"])
    _freeze(*parts)
    return Split(
        *parts,
        fingerprint=fingerprint(*parts),
        description="mnist1d make_dataset(get_dataset_args()); package split 4000/1000",
    )


@cache
def corpus_text() -> str:
    """The char-LM corpus shipped in the package (ASCII)."""
    return (
        resources.files("trajbench.tasks").joinpath("data", CORPUS_FILE).read_text(encoding="ascii")
    )


@cache
def text_windows(context: int) -> tuple[Split, str]:
    """The corpus as ``(x, y)`` next-character windows and the vocabulary string.

    ``x`` and ``y`` are int64 arrays of shape (n, context); ``y`` is ``x`` shifted by one.
    """
    if not isinstance(context, int) or context < 2:
        raise TrajbenchError(f"context must be an int >= 2, but got {context!r}")
    text = corpus_text()
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    codes = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    n_windows = len(codes) // (context + 1)
    if n_windows < 20:
        raise TrajbenchError(
            f"context {context} leaves only {n_windows} windows of the corpus; expected at least 20"
        )
    windows = codes[: n_windows * (context + 1)].reshape(n_windows, context + 1)
    held_out = np.arange(n_windows) % 10 == 9
    x, y = windows[:, :-1].copy(), windows[:, 1:].copy()
    parts = (x[~held_out], y[~held_out], x[held_out], y[held_out])
    _freeze(*parts)
    description = f"corpus.txt ({len(text)} chars) in windows of {context + 1}; held-out = window index % 10 == 9"
    return Split(*parts, fingerprint=fingerprint(*parts), description=description), vocab
