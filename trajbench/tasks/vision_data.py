"""Readers for the user's own image data: FashionMNIST (IDX files) and CIFAR-10/100 (binary).

trajbench never downloads anything: the files must already be in a *data directory*, the
task parameter ``data_dir`` or else the environment variable ``TRAJBENCH_DATA_DIR``.
Where each dataset is looked for, relative to that directory (the first folder that holds
every file wins; the names are those of the original distributions and of torchvision's
download folders, so an existing torchvision ``root`` works as is):

============  ======================================  =================================================
dataset       folders tried                           files
============  ======================================  =================================================
FashionMNIST  ``FashionMNIST/raw``, ``FashionMNIST``,  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
              ``fashion-mnist``, ``fashion_mnist``,    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``
              the data directory itself               (each optionally ``.gz``)
CIFAR-10      ``cifar-10-batches-bin``                ``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``
CIFAR-100     ``cifar-100-binary``                    ``train.bin``, ``test.bin``
============  ======================================  =================================================

Only the *binary* CIFAR versions are read (the python versions are pickles, which
trajbench never loads). Images stay ``uint8`` (n, channels, height, width); the models
normalise them on the fly, so memory is one byte per pixel.

The split follows NiNo's ``train_vision.py`` (github.com/SamsungSAILMontreal/nino): of the
official training set (in file order) the first ``n - n // 12`` images train, the last
``n // 12`` are left out (NiNo reserved them for its own validation); the held-out split
is the official test set, on which NiNo measures its accuracy targets.
"""

from __future__ import annotations

import gzip
import os
import struct
from functools import cache
from pathlib import Path

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.tasks.datasets import Split, fingerprint

__all__ = [
    "DATA_DIR_ENV",
    "VISION_DATASETS",
    "resolve_data_dir",
    "read_idx",
    "read_cifar_binary",
    "vision_split",
    "check_vision_files",
]

DATA_DIR_ENV = "TRAJBENCH_DATA_DIR"

_FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_FASHION_DIRS = ("FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "fashion_mnist", ".")
_CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))

#: name -> (folders tried, how to obtain the files)
VISION_DATASETS: dict[str, tuple[tuple[str, ...], str]] = {
    "fashion_mnist": (
        _FASHION_DIRS,
        "get the four IDX files from https://github.com/zalandoresearch/fashion-mnist (MIT)",
    ),
    "cifar10": (
        ("cifar-10-batches-bin",),
        "unpack cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html (the binary version)",
    ),
    "cifar100": (
        ("cifar-100-binary",),
        "unpack cifar-100-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html (the binary version)",
    ),
}
_CIFAR_RECORD = 3 * 32 * 32


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, what: str) -> Path:
    """``data_dir`` if given (non-empty), else ``$TRAJBENCH_DATA_DIR``; an error naming
    ``what`` (the files wanted) when neither is set or the directory does not exist."""
    text = os.fspath(data_dir) if data_dir else os.environ.get(DATA_DIR_ENV, "")
    if not text:
        raise TrajbenchError(
            f"no data directory for {what}: set {DATA_DIR_ENV} or the task parameter data_dir"
            " (trajbench never downloads data)"
        )
    path = Path(text).expanduser()
    if not path.is_dir():
        raise TrajbenchError(
            f"data directory '{path}' does not exist; expected a folder holding {what}"
        )
    return path


def _open_maybe_gz(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file (``.gz`` or not) of unsigned bytes as a uint8 array of its dimensions.

    The format (LeCun's MNIST page, used unchanged by Fashion-MNIST): two zero bytes, a
    type byte (0x08 = unsigned byte), the number of dimensions, then one big-endian
    uint32 per dimension, then the values in row-major order.
    """
    path = Path(path)
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise TrajbenchError(f"'{path}' is not an IDX file: expected two zero magic bytes")
    if data[2] != 0x08:
        raise TrajbenchError(
            f"'{path}' holds IDX type 0x{data[2]:02x}; expected 0x08 (unsigned bytes)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape)) if ndim else 0
    if len(data) - header != count:
        raise TrajbenchError(
            f"'{path}' declares shape {tuple(shape)} ({count} values) but holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_cifar_binary(
    path: str | os.PathLike[str], label_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR binary file as ``(images uint8 (n, 3, 32, 32), labels int64 (n,))``.

    Each record is ``label_bytes`` label bytes (CIFAR-10: 1; CIFAR-100: 2, coarse then
    fine; the *last* one is returned, the fine label for CIFAR-100) then 3,072 pixel bytes:
    the red, green and blue 32x32 planes, each row-major.
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + _CIFAR_RECORD
    if raw.size == 0 or raw.size % record:
        raise TrajbenchError(
            f"'{path}' holds {raw.size} bytes, not a whole number of {record}-byte CIFAR records"
        )
    rows = raw.reshape(-1, record)
    return (
        rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy(),
        rows[:, label_bytes - 1].astype(np.int64),
    )


def _locate(root: Path, dataset: str, files: tuple[str, ...], gz_ok: bool) -> list[Path]:
    folders, how = VISION_DATASETS[dataset]
    for folder in folders:
        base = root / folder
        found = [
            (_find(base, f) if gz_ok else (base / f if (base / f).is_file() else None))
            for f in files
        ]
        if all(p is not None for p in found):
            return [p for p in found if p is not None]
    names = ", ".join(f + ("(.gz)" if gz_ok else "") for f in files)
    raise TrajbenchError(
        f"{dataset} not found: expected {names} in '{root / folders[0]}'; {how} (trajbench never downloads data)"
    )


def _held_back(n: int) -> int:
    # NiNo's train_vision.py trains on the first n - n // 12 images of the training set.
    return n - n // 12


def _files_of(dataset: str) -> tuple[tuple[str, ...], bool]:
    """The files of ``dataset`` (in reading order) and whether ``.gz`` copies count."""
    if dataset == "fashion_mnist":
        return _FASHION_FILES, True
    if dataset == "cifar10":
        return (*_CIFAR10_TRAIN, "test_batch.bin"), False
    return ("train.bin", "test.bin"), False


def check_vision_files(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The paths of ``dataset``'s files in the data directory, found without reading them;
    the one-line error of :func:`vision_split` when the directory or a file is missing."""
    if dataset not in VISION_DATASETS:
        raise TrajbenchError(
            f"unknown vision dataset {dataset!r}; expected one of {', '.join(VISION_DATASETS)}"
        )
    root = resolve_data_dir(data_dir, f"the {dataset} files")
    files, gz_ok = _files_of(dataset)
    return _locate(root, dataset, files, gz_ok)


@cache
def _load(dataset: str, root: str) -> Split:
    base = Path(root)
    if dataset == "fashion_mnist":
        paths = _locate(base, dataset, *_files_of(dataset))
        x_tr, y_tr, x_te, y_te = (read_idx(p) for p in paths)
        x_tr, x_te = x_tr[:, None], x_te[:, None]
        where = str(paths[0].parent)
    elif dataset in ("cifar10", "cifar100"):
        label_bytes = 1 if dataset == "cifar10" else 2
        paths = _locate(base, dataset, *_files_of(dataset))
        parts = [read_cifar_binary(p, label_bytes) for p in paths]
        x_tr = np.concatenate([x for x, _ in parts[:-1]])
        y_tr = np.concatenate([y for _, y in parts[:-1]])
        x_te, y_te = parts[-1]
        where = str(paths[0].parent)
    else:  # pragma: no cover - internal callers only
        raise TrajbenchError(
            f"unknown vision dataset {dataset!r}; expected one of {', '.join(VISION_DATASETS)}"
        )
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise TrajbenchError(
            f"{dataset} in '{where}': {len(x_tr)} training images but {len(y_tr)} labels,"
            f" {len(x_te)} test images but {len(y_te)} labels; expected equal counts"
        )
    n_train = _held_back(len(x_tr))
    parts_out = (
        np.ascontiguousarray(x_tr[:n_train]),
        y_tr[:n_train].astype(np.int64),
        np.ascontiguousarray(x_te),
        y_te.astype(np.int64),
    )
    for array in parts_out:
        array.setflags(write=False)
    description = (
        f"{dataset} from {where}: first {n_train} of {len(x_tr)} training images"
        f" (NiNo's split: n - n // 12), held-out = the {len(x_te)} test images; uint8"
    )
    return Split(*parts_out, fingerprint=fingerprint(*parts_out), description=description)


def vision_split(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Split:
    """The fixed split of ``dataset`` (``fashion_mnist``, ``cifar10`` or ``cifar100``),
    read from the data directory (cached per process and directory)."""
    if dataset not in VISION_DATASETS:
        raise TrajbenchError(
            f"unknown vision dataset {dataset!r}; expected one of {', '.join(VISION_DATASETS)}"
        )
    root = resolve_data_dir(data_dir, f"the {dataset} files")
    return _load(dataset, str(root.resolve()))
