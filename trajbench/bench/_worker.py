"""The worker process of an isolated forecaster (:mod:`trajbench.bench.isolation`):
``python -m trajbench.bench._worker DIR``.

It reads one JSON request per line on stdin and writes one JSON reply per line on the
pipe that was its stdout (its own ``stdout`` then goes to ``stderr``, so the forecaster's
prints never mix with replies). Requests: ``create`` (build the forecaster from its spec,
set the memory ceiling), ``fit`` (rebuild the training data from the store, fit) and
``predict`` (arrays in ``DIR/STEM.*.npy``, the predictions written to ``DIR/STEM.out.npy``)
and ``predict_model`` (a whole-model history: arrays in ``DIR/STEM.history.*.npy``, the
layout and the rest as JSON in the request).
Anything the forecaster raises, ``BaseException`` included, is a reply with the error's
line; the worker then waits for the next request (the harness asks no more).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO


def _set_memory_limit(limit: int | None) -> None:
    if not limit:
        return
    import resource

    # the data segment (heap and private mappings) where the OS counts it, else the
    # address space: a reservation that is never written does not count against DATA
    which = getattr(resource, "RLIMIT_DATA", None) or resource.RLIMIT_AS
    resource.setrlimit(which, (int(limit), int(limit)))


class _Worker:
    def __init__(self, directory: Path, reply: TextIO) -> None:
        self.directory, self.reply = directory, reply
        self.forecaster: Any = None
        self.measure_memory = True
        self.memory_limit: int | None = None
        self.shapes: set[tuple[int, ...]] = set()

    def send(self, message: dict[str, Any]) -> None:
        self.reply.write(json.dumps(message) + "\n")
        self.reply.flush()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        from trajbench.bench.isolation import rng_from_json, rng_to_json

        op = request["op"]
        if request.get("rng") is not None:
            rng_from_json(request["rng"])
        out: dict[str, Any] = {"ok": True}
        if op == "create":
            self.create(request)
        elif op == "fit":
            out["peak_bytes"] = self.fit(request)
        elif op == "predict":
            out.update(self.predict(request))
        elif op == "predict_model":
            out.update(self.predict_model(request))
        else:
            raise ValueError(f"unknown request {op!r}")
        if request.get("rng") is not None:
            out["rng"] = rng_to_json()
            out["torch"] = "torch" in sys.modules
        return out

    def create(self, request: dict[str, Any]) -> None:
        from trajbench.forecasting.registry import get_forecaster

        self.memory_limit = request.get("memory_limit")
        _set_memory_limit(self.memory_limit)
        self.measure_memory = bool(request.get("measure_memory", True))
        self.forecaster = get_forecaster(request["target"], **request.get("params", {}))
        self.forecaster.name = request["name"]

    def fit(self, request: dict[str, Any]) -> int:
        from trajbench.bench.environment import Meter

        data = _training_data(request["data"], self.directory)
        meter = Meter(memory=self.measure_memory)
        with meter.measure():
            self.forecaster.fit(data)
        return int(meter.peak_bytes)

    def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from trajbench.bench.environment import Meter
        from trajbench.bench.isolation import load_meta

        stem = request["stem"]
        context = np.load(self.directory / f"{stem}.context.npy", allow_pickle=False)
        meta = load_meta(request.get("meta", []), self.directory, stem)
        horizon = int(request["horizon"])
        # memory on the first call of each input shape, as the harness meters in process
        shape = (*context.shape, horizon)
        metered = self.measure_memory and shape not in self.shapes
        self.shapes.add(shape)
        meter = Meter(memory=metered)
        with meter.measure(memory=metered):
            out = self.forecaster.predict(context, horizon, meta)
        np.save(self.directory / f"{stem}.out.npy", np.asarray(out), allow_pickle=False)
        return {"fallbacks": self.forecaster.pop_fallbacks(), "peak_bytes": int(meter.peak_bytes)}

    def predict_model(self, request: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from trajbench.bench.environment import Meter
        from trajbench.bench.isolation import load_history

        stem = request["stem"]
        history = load_history(request["history"], self.directory, stem)
        horizons = request["horizons"]
        shape = (-1, *history.states.shape, len(np.atleast_1d(horizons)))
        metered = self.measure_memory and shape not in self.shapes
        self.shapes.add(shape)
        meter = Meter(memory=metered)
        with meter.measure(memory=metered):
            out = self.forecaster.predict_model(history, horizons)
        np.save(self.directory / f"{stem}.out.npy", np.asarray(out), allow_pickle=False)
        return {"fallbacks": self.forecaster.pop_fallbacks(), "peak_bytes": int(meter.peak_bytes)}


def _training_data(described: dict[str, Any] | None, directory: Path) -> Any:
    """The :class:`~trajbench.forecasting.data.TrainingData` the harness described
    (:func:`trajbench.bench.isolation._describe_training`), its sources read from the
    store on first use, as the harness's are."""
    if described is None:
        return None
    import numpy as np
    import pandas as pd

    from trajbench.forecasting.data import TrainingData
    from trajbench.forecasting.series import SeriesSource
    from trajbench.store.reader import open_store

    store = open_store(described["location"])
    stem = described["stem"]
    listed = described["sources"]

    def sources() -> list[SeriesSource]:
        return [
            SeriesSource.from_run(
                store.run(path),
                np.load(directory / f"{stem}.columns{i}.npy", allow_pickle=False),
                task,
                n_snapshots=n,
            )
            for i, (path, task, n) in enumerate(listed)
        ]

    return TrainingData(
        sources,
        runs=pd.read_parquet(directory / f"{stem}.runs.parquet"),
        store=store,
        split=described["split"],
        context_length=described["context_length"],
        horizon=described["horizon"],
        stride=described["stride"],
        batch_series=described["batch_series"],
        validation=_training_data(described["validation"], directory),
    )


def main(argv: list[str]) -> int:
    """Serve requests until stdin closes."""
    from trajbench._runtime import one_line

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark decides when to stop
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the forecaster's prints go to stderr, never into the replies
    worker = _Worker(Path(argv[0]), reply)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            message = worker.handle(request)
        except BaseException as exc:  # the forecaster's failure, SystemExit included
            text = one_line(exc)
            if isinstance(exc, MemoryError) and worker.memory_limit:
                text += f" (memory limit {worker.memory_limit} bytes)"
            message = {"ok": False, "error": text}
        worker.send(message)
        if request.get("op") == "create" and message.get("ok"):
            _warm_up()
    # stdin closed: the benchmark is done with this forecaster. Exit without the
    # interpreter's teardown (joining zarr's event loop and numba's threads, freeing
    # torch), tenths of a second per worker that the benchmark would wait for; every
    # reply has been flushed (line-buffered) and nothing else is pending.
    reply.flush()
    sys.stderr.flush()
    os._exit(0)


def _warm_up() -> None:
    """Import what ``fit`` and ``predict`` will need (the store reader, pandas, the
    training data) while the benchmark is busy with other forecasters: ``import trajbench``
    is lazy, so a worker would otherwise pay for these imports inside its first timed
    call, one worker after the other."""
    import trajbench.forecasting.data  # noqa: F401
    import trajbench.forecasting.series  # noqa: F401
    import trajbench.store.reader  # noqa: F401


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
