"""``trajbench train-forecaster``: train a learned forecaster on a store's training split.

The split is the harness's (:func:`trajbench.bench.splits.assign_splits` with the same
seed, the same protocol and the same per-run parameter sample), so a forecaster trained
here never saw a validation, test, unseen or synthetic run of that store, and
``trajbench bench STORE --seed S`` scores it on runs it did not train on.

Writes into ``--out`` (``wnn``; ``nino`` and ``wnn_plus`` below):

* ``wnn.safetensors`` (``wnn.pt``, a ``torch.save`` of a plain dict of tensors, when
  safetensors is not installed): the state dict, loadable with
  ``WNN(weights=".../wnn.safetensors")`` or ``[wnn] weights = "..."`` in a
  ``--forecaster-config``;
* ``card.json``: what it was trained on (store location and store hash, split seed,
  the training and validation runs), the seed, the budget, the loss curve, the library
  versions and the weights file's SHA-256;
* ``val_curve.csv``: the loss curve (network, step, train_loss, val_loss,
  val_persistence, n_train, n_val).

``nino`` / ``wnn_plus`` (:func:`baselines.nino.train_nino`; ``--from-checkpoint PATH``
fine-tunes the released file instead of training from scratch) write ``nino.pt`` /
``wnn_plus.pt`` (``torch.save`` of ``{'state_dict', 'model_args', 'trajbench'}``, plain
tensors and values, read with ``torch.load(weights_only=True)`` by
``NiNo(checkpoint=...)``), ``card.json``, ``val_curve.csv`` and ``forecaster.toml`` (the
``--forecaster-config`` that benches the file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from trajbench.errors import TrajbenchError, did_you_mean

__all__ = [
    "TRAINABLE",
    "add_train_forecaster_parser",
    "cmd_train_forecaster",
    "split_training_data",
    "train_forecaster",
]

#: Forecasters ``train-forecaster`` knows how to train and save.
TRAINABLE: tuple[str, ...] = ("wnn", "nino", "wnn_plus")
#: The training parameters of ``nino`` / ``wnn_plus`` (the budget rules of ``wnn``).
_NINO_PARAMS: tuple[str, ...] = ("steps", "batch_size", "lr", "max_samples", "eval_every")


def split_training_data(
    store: Any, *, seed: int = 0, protocol: Any = None, context_length: int = 5, horizon: int = 5
) -> Any:
    """The training split of ``store`` as the harness builds it for ``fit`` (with the
    validation split attached as ``.validation``)."""
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.bench.splits import assign_splits
    from trajbench.bench.windows import split_sources
    from trajbench.forecasting.data import TrainingData
    from trajbench.store.reader import Store, open_store

    protocol = PROTOCOL if protocol is None else protocol
    store_obj = store if isinstance(store, Store) else open_store(store)
    splits = assign_splits(store_obj, protocol, seed)

    def part(split: str) -> TrainingData:
        rows = splits[splits["split"] == split].reset_index(drop=True)
        return TrainingData(
            lambda: split_sources(store_obj, rows, protocol, seed),
            runs=rows,
            store=store_obj,
            split=split,
            context_length=context_length,
            horizon=horizon,
            stride=1,
        )

    train = part("train")
    train.validation = part("validation")
    return train


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("trajbench", "torch", "numpy", "safetensors", "zarr"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def train_forecaster(
    name: str,
    store: Any,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    split_seed: int = 0,
    params: dict[str, Any] | None = None,
    hash_store: bool = True,
    log: Any = None,
    progress: bool = False,
    from_checkpoint: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train forecaster ``name`` on the training split of ``store`` (split and parameter
    sample of ``trajbench bench --seed split_seed``), write the weights, ``card.json``
    and ``val_curve.csv`` into ``out``; returns the card. With ``progress``, the
    training and the store hashing show their elapsed time on stderr (a ticking line on
    a terminal, else a line every 30 s). ``from_checkpoint`` (``nino``, ``wnn_plus``
    only): fine-tune the weights of that file instead of training from scratch."""
    import numpy as np
    import pandas as pd
    import torch

    from trajbench.store.reader import open_store

    say = log or (lambda msg: None)
    if name not in TRAINABLE:
        raise TrajbenchError(
            f"train-forecaster cannot train {name!r}{did_you_mean(str(name), TRAINABLE)}; trainable forecasters: {', '.join(TRAINABLE)}"
        )
    for value, what in ((seed, "--seed"), (split_seed, "--split-seed")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TrajbenchError(f"{what} must be a non-negative int, but got {value!r}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrajbenchError(f"--out '{out}' exists and is not a directory")
    if name in ("nino", "wnn_plus"):
        return _train_nino_family(
            name, store, out_dir, seed, split_seed, params or {}, from_checkpoint,
            hash_store, say, progress,
        )  # fmt: skip
    if from_checkpoint is not None:
        raise TrajbenchError(
            "--from-checkpoint is for nino and wnn_plus; wnn loads the authors' files with checkpoints= in a --forecaster-config"
        )
    from baselines.wnn import WNN

    valid = WNN._param_names()
    for key in params or {}:
        if key not in valid or key in ("seed", "checkpoints", "weights"):
            raise TrajbenchError(
                f"wnn has no training parameter {key!r}{did_you_mean(str(key), valid)}"
            )
    model = WNN(seed=seed, **(params or {}))
    model._check_params()
    store_obj = open_store(store)
    location = store_obj.location
    t0 = time.perf_counter()
    train = split_training_data(store_obj, seed=split_seed)
    if train.n_runs == 0:
        raise TrajbenchError(
            f"store '{location}' has no run in the training split (it needs several configurations per task)"
        )
    say(
        f"training wnn on {train.n_runs} training run(s) of '{location}' (validation: {train.validation.n_runs}), seed {seed}"
    )
    np.random.seed(seed)
    torch.manual_seed(seed)
    # fit gives no per-step callback: the elapsed time shows the command is alive
    with _ticker(f"training wnn on {train.n_runs} run(s)", progress):
        model.fit(train)
    fit_s = time.perf_counter() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        import safetensors  # noqa: F401

        weights_path = out_dir / "wnn.safetensors"
    except ModuleNotFoundError:  # pragma: no cover - safetensors is in the dev extra
        weights_path = out_dir / "wnn.pt"
    model.save(weights_path, metadata={"store": location, "seed": seed, "split_seed": split_seed})
    curve = pd.DataFrame(
        model.curve_,
        columns=[
            "network",
            "step",
            "train_loss",
            "val_loss",
            "val_persistence",
            "n_train",
            "n_val",
        ],
    )
    curve.to_csv(out_dir / "val_curve.csv", index=False, float_format="%.6g")
    final = {}
    for net, rows in curve.groupby("network", sort=False):
        last = rows.iloc[-1]
        final[str(net)] = {
            "train_loss": _finite(float(last.train_loss)),
            "val_loss": _finite(float(last.val_loss)),
            "val_persistence": _finite(float(last.val_persistence)),
        }
    card = {
        **_card_head("wnn", weights_path, location, train, split_seed, seed, hash_store, progress),
        "budget": {
            "optimizer": "adam",
            "loss": "l1 on the clipped normalised residual",
            "steps_per_network": model.steps,
            "batch_size": model.batch_size,
            "lr": model.lr,
            "max_samples_per_network": model.max_samples,
            "l1_kernel": model.l1_kernel,
            "l1_bias": model.l1_bias,
            "torch_threads": 1,
        },
        "params": {
            k: v for k, v in model.get_params().items() if k not in ("checkpoints", "weights")
        },
        "training_windows": model.n_samples_,
        "shared_networks": model.shared_,
        "final": final,
        "fit_seconds": round(fit_s, 2),
        "curve": [{k: _finite(v) for k, v in row.items()} for row in model.curve_],
        "versions": _versions(),
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _card_head(
    name: str,
    weights_path: Path,
    location: str,
    train: Any,
    split_seed: int,
    seed: int,
    hash_store: bool,
    progress: bool,
) -> dict[str, Any]:
    """The fields every ``card.json`` starts with: what was trained, the weights file and
    its SHA-256, when, on which store (hashed) and split, with which seed."""
    return {
        "forecaster": name,
        "weights": weights_path.name,
        "weights_sha256": _sha256_file(weights_path),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "store": _store_section(location, hash_store, progress),
        "split": _split_section(train, split_seed),
        "seed": seed,
    }


def _store_section(location: str, hash_store: bool, progress: bool) -> dict[str, Any]:
    from trajbench.store.hashing import store_sha256

    t1 = time.perf_counter()
    with _ticker("hashing the store", progress and hash_store):
        digest = store_sha256(location) if hash_store else None
    return {
        "location": location,
        "sha256": digest,
        "hash_seconds": round(time.perf_counter() - t1, 3) if digest else None,
    }


def _split_section(train: Any, split_seed: int) -> dict[str, Any]:
    return {
        "split_seed": split_seed,
        "rule": "trajbench.bench.splits.assign_splits (protocol 1.0), the harness's parameter sample",
        "train_runs": [str(p) for p in train.runs["path"]],
        "validation_runs": [str(p) for p in train.validation.runs["path"]],
    }


def _train_nino_family(
    name: str,
    store: Any,
    out_dir: Path,
    seed: int,
    split_seed: int,
    params: dict[str, Any],
    from_checkpoint: Any,
    hash_store: bool,
    say: Any,
    progress: bool,
) -> dict[str, Any]:
    """``train-forecaster nino`` / ``wnn_plus``: :func:`baselines.nino.train_nino` on the
    training split; writes ``<name>.pt``, ``card.json``, ``val_curve.csv`` and
    ``forecaster.toml``."""
    import pandas as pd

    from baselines.nino import train_nino
    from trajbench.store.reader import open_store

    for key in params:
        if key not in _NINO_PARAMS:
            raise TrajbenchError(
                f"{name} has no training parameter {key!r}{did_you_mean(str(key), _NINO_PARAMS)}; it takes {', '.join(_NINO_PARAMS)}"
            )
    if from_checkpoint is not None and not Path(from_checkpoint).is_file():
        raise TrajbenchError(f"--from-checkpoint '{from_checkpoint}' does not exist")
    store_obj = open_store(store)
    location = store_obj.location
    train = split_training_data(store_obj, seed=split_seed)
    if train.n_runs == 0:
        raise TrajbenchError(
            f"store '{location}' has no run in the training split (it needs several configurations per task)"
        )
    start = "from scratch" if from_checkpoint is None else f"from '{from_checkpoint}'"
    say(
        f"training {name} {start} on {train.n_runs} training run(s) of '{location}' (validation: {train.validation.n_runs}), seed {seed}"
    )
    with _ticker(f"training {name} on {train.n_runs} run(s)", progress):
        result = train_nino(train, variant=name, seed=seed, init=from_checkpoint, log=say, **params)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = result.save(
        out_dir / f"{name}.pt",
        metadata={"store": location, "seed": seed, "split_seed": split_seed, "init": result.init},
    )
    curve = pd.DataFrame(result.curve)
    curve.to_csv(out_dir / "val_curve.csv", index=False, float_format="%.6g")
    last = result.curve[-1]
    (out_dir / "forecaster.toml").write_text(
        f"[{name}]\ncheckpoint = {json.dumps(str(weights_path.resolve()))}\n"
    )
    card = {
        **_card_head(name, weights_path, location, train, split_seed, seed, hash_store, progress),
        "init": result.init,
        "budget": result.budget,
        "pretrained_on": result.pretrained_on,
        "training_examples": {name: result.n_examples},
        "validation_examples": result.n_val_examples,
        "runs_used": result.runs,
        "runs_skipped": result.skipped,
        "shared_networks": {},
        "final": {
            name: {
                "train_loss": _finite(float(last["train_loss"])),
                "val_loss": _finite(float(last["val_loss"])),
                "val_persistence": _finite(float(last["val_persistence"])),
            }
        },
        "fit_seconds": result.fit_seconds,
        "curve": [{k: _finite(v) for k, v in row.items()} for row in result.curve],
        "versions": _versions(),
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _ticker(desc: str, enabled: bool) -> Any:
    """Elapsed time of one long call on stderr (:class:`trajbench.report.terminal.Progress`)."""
    from trajbench.report.terminal import Progress

    return Progress(f"trajbench train-forecaster: {desc}", enabled=enabled, tick=True, every=30.0)


def cmd_train_forecaster(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    for key in ("steps", "batch_size", "lr", "max_samples", "negative_slope", "eval_every"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    card = train_forecaster(
        args.forecaster,
        args.store,
        args.out,
        seed=args.seed,
        split_seed=args.split_seed,
        params=params,
        hash_store=not args.no_store_hash,
        log=log,
        progress=not args.quiet,
        from_checkpoint=args.from_checkpoint,
    )
    if args.json:
        print(json.dumps({k: v for k, v in card.items() if k != "curve"}, indent=2))
        return 0
    print(
        f"trained {card['forecaster']} in {card['fit_seconds']:.1f} s on {len(card['split']['train_runs'])} training runs; wrote {Path(args.out) / card['weights']}"
    )
    unit = "windows" if "training_windows" in card else "examples"
    counts = card.get("training_windows") or card["training_examples"]
    for net, row in card["final"].items():
        shared = [k for k, v in card["shared_networks"].items() if v == net]
        extra = f" (also used for {', '.join(shared)})" if shared else ""
        val = "n/a" if row["val_loss"] is None else f"{row['val_loss']:.4f}"
        pers = "n/a" if row["val_persistence"] is None else f"{row['val_persistence']:.4f}"
        print(f"  {net:5s} {unit} {counts[net]:>8,}  val L1 {val} (persistence {pers}){extra}")
    if card["forecaster"] != "wnn":
        config = Path(args.out) / "forecaster.toml"
        print(
            f"bench it: trajbench bench {args.store} --out RESULTS --forecasters persistence,{card['forecaster']} --forecaster-config {config}"
        )
    return 0


def add_train_forecaster_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train-forecaster`` to the ``trajbench`` sub-commands."""
    p = subparsers.add_parser(
        "train-forecaster",
        help="train a learned forecaster (wnn, nino, wnn_plus) on a store's training split; write weights, card.json, val_curve.csv",
        description="Train on the training split the harness uses (same split seed, same parameter sample); the validation split gives the loss curve.",
    )
    p.add_argument("forecaster", help=f"which forecaster ({', '.join(TRAINABLE)})")
    p.add_argument("store", help="store directory or fsspec URL")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed: window sample, initialisation, batches (default 0)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="the seed of `trajbench bench` whose split to train on (default 0)",
    )
    p.add_argument(
        "--from-checkpoint",
        metavar="PATH",
        help="nino, wnn_plus: fine-tune this weights file (the released nino_no_posw.pt / nino_mlp.pt) instead of training from scratch",
    )
    p.add_argument(
        "--steps", type=int, help="optimizer steps (per network for wnn; default: the forecaster's)"
    )
    p.add_argument(
        "--batch-size", type=int, help="windows (wnn) or whole-model examples (nino) per step"
    )
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument(
        "--max-samples",
        type=int,
        help="training windows sampled per network (nino: whole-model examples sampled)",
    )
    p.add_argument(
        "--negative-slope",
        type=float,
        help="LeakyReLU slope (0.3 Keras, 0.01 the authors' PyTorch port)",
    )
    p.add_argument("--eval-every", type=int, help="steps between points of the loss curve")
    p.add_argument(
        "--no-store-hash",
        action="store_true",
        help="skip hashing the store's bytes (card sha256 is then null)",
    )
    p.add_argument("--json", action="store_true", help="print the card (without the curve) as JSON")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress output on stderr (by default: the steps, and the training's and hashing's elapsed time)",
    )
    p.set_defaults(func=cmd_train_forecaster)
    return p
