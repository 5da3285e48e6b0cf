"""Forecasters isolated from the benchmark: a forecaster built from a spec (a registered
name or ``file.py:Class``, plus parameters) runs in a worker process of its own, so that
nothing it does (raise ``SystemExit``, hang, grow without bound, kill its process) stops
the benchmark; it becomes failure rows and the others are scored.

The worker (:mod:`trajbench.bench._worker`) is a plain ``python -m`` subprocess, never a
``multiprocessing`` child: nothing is pickled. It gets plain data (the spec as JSON lines
on its stdin) and rebuilds the forecaster itself; arrays move through ``.npy`` files in a
private directory (on ``/dev/shm`` where there is one, so they stay in memory), loaded
with ``allow_pickle=False``; replies come back as JSON lines on a pipe of their own (the
worker's ``stdout`` goes to ``stderr``, so a forecaster's prints cannot corrupt them).

:class:`WorkerForecaster` stands in for the forecaster in the harness: it has the local
instance's identity (name, parameters, tags, context length: its results and partial
results are the same forecaster's) and forwards ``fit``, ``predict`` and ``predict_model``
(a model-scope forecaster's whole-model history: its arrays as ``.npy`` files, its layout
as JSON). Its scores are
bit-identical to the forecaster's in process: the same float32 inputs, and the global
random streams (python, numpy, torch on CPU) shipped to the worker before each call and
back after it, so a stochastic forecaster draws the same numbers.

Each call waits at most ``timeout`` seconds (then the worker is killed), and the worker
may get an address-space ceiling (``memory_limit``, ``setrlimit``): a ``MemoryError``
there is the forecaster's failure, not the benchmark's. A forecaster passed as a Python
instance cannot be rebuilt in a worker and runs in process (``manifest.json`` says so);
there, exceptions (``SystemExit`` and a forecaster's own ``KeyboardInterrupt`` included)
still become failure rows, but a hang or a runaway allocation is not stopped.

A real Ctrl-C of the user still stops ``bench``: :func:`user_interrupts` counts the
SIGINTs the process receives, and :func:`reraise_if_user` re-raises a
``KeyboardInterrupt`` that came with one (a worker runs in a session of its own, so the
terminal's Ctrl-C reaches only the benchmark, which then stops its workers).
"""

from __future__ import annotations

import base64
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.forecasting.base import Forecaster
from trajbench.forecasting.meta import SeriesMeta

__all__ = [
    "DEFAULT_TIMEOUT",
    "Isolation",
    "ForecasterSpec",
    "ForecasterFailure",
    "WorkerForecaster",
    "failure_text",
    "user_interrupts",
    "reraise_if_user",
    "parse_size",
]

#: Seconds one call of an isolated forecaster (its creation, ``fit`` or one ``predict``)
#: may take. The slowest single call of a baseline in ``reports/small`` is wnn's ``fit``
#: (69 s; arima's slowest ``predict`` batch is under 1 s): this is 26 times that.
DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Isolation:
    """How forecasters built from a spec are run: each in a worker process of its own,
    every call limited to ``timeout`` seconds (None: no limit), the worker's memory to
    ``memory_limit`` bytes (None: no ceiling)."""

    timeout: float | None = DEFAULT_TIMEOUT
    memory_limit: int | None = None

    def __post_init__(self) -> None:
        for what, value in (("timeout", self.timeout), ("memory_limit", self.memory_limit)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise TrajbenchError(f"{what} must be positive or None, but got {value!r}")

    def to_json(self) -> dict[str, Any]:
        return {"timeout_seconds": self.timeout, "memory_limit_bytes": self.memory_limit}


@dataclass(frozen=True)
class ForecasterSpec:
    """What a worker builds a forecaster from: ``target`` (``package.module:Class`` or
    ``path/file.py:Class``), the constructor's ``params`` (JSON values) and the ``name``
    the harness gives it."""

    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""


class ForecasterFailure(TrajbenchError):
    """A forecaster failed in its worker (it raised there, timed out, or its process
    ended); ``text`` is the failure as recorded (what it raised, one line)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def failure_text(exc: BaseException) -> str:
    """The one line a failure row holds for ``exc``: ``Type: message`` (for a failure in
    a worker, the worker's line as is, so that both ways read the same)."""
    from trajbench._runtime import one_line

    return exc.text if isinstance(exc, ForecasterFailure) else one_line(exc)


# ------------------------------------------------------------- user interrupts
_SIGINTS = 0
_GUARDED = False


def _count_sigint(signum: int, frame: Any) -> None:
    global _SIGINTS
    _SIGINTS += 1
    raise KeyboardInterrupt


@contextmanager
def user_interrupts() -> Iterator[None]:
    """Count the SIGINTs this process receives while the block runs (on the main thread
    only; elsewhere every ``KeyboardInterrupt`` counts as the user's)."""
    global _GUARDED
    if threading.current_thread() is not threading.main_thread() or _GUARDED:
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:  # someone else's handler: leave it
        yield
        return
    signal.signal(signal.SIGINT, _count_sigint)
    _GUARDED = True
    try:
        yield
    finally:
        _GUARDED = False
        signal.signal(signal.SIGINT, previous)


def interrupt_count() -> int:
    """SIGINTs counted so far (compare before and after a forecaster's call)."""
    return _SIGINTS


def reraise_if_user(exc: BaseException, before: int) -> None:
    """Re-raise ``exc`` when it is the user's: a ``KeyboardInterrupt`` that came with a
    SIGINT since ``before`` (:func:`interrupt_count`), or any when SIGINTs are not being
    counted. A forecaster's own ``KeyboardInterrupt`` or ``SystemExit`` is its failure."""
    if isinstance(exc, KeyboardInterrupt) and (not _GUARDED or _SIGINTS != before):
        raise exc


def parse_size(text: str | int | None) -> int | None:
    """``"4G"``, ``"512M"``, ``"100k"`` or bytes as bytes (binary units); None passes."""
    if text is None or isinstance(text, int):
        return text
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = units.get(raw[-1:], 1)
    try:
        value = float(raw[:-1] if raw[-1:] in units else raw)
    except ValueError:
        raise TrajbenchError(
            f"a memory size must be bytes or a number with K, M, G or T, but got {text!r}"
        ) from None
    if not value > 0:
        raise TrajbenchError(f"a memory size must be positive, but got {text!r}")
    return int(value * scale)


# ------------------------------------------------- plain-data codecs (no pickle)
def rng_to_json() -> dict[str, Any]:
    """This process's global random streams as JSON values (python, numpy, torch on the
    CPU when torch is imported; CUDA streams are not carried)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    out: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": None,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        state = torch.get_rng_state().numpy().tobytes()
        out["torch"] = base64.b64encode(state).decode("ascii")
    return out


def rng_from_json(state: Mapping[str, Any]) -> None:
    """Set this process's global random streams from :func:`rng_to_json`'s value (a
    stream absent there is left as is)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch = sys.modules.get("torch")
    if torch is not None and state.get("torch") is not None:
        raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
        torch.set_rng_state(torch.from_numpy(raw))


def save_meta(meta: SeriesMeta | None, directory: Path, stem: str) -> list[str]:
    """Write ``meta``'s arrays as ``STEM.FIELD.npy``; a field of strings (one per series,
    few distinct: task, kind, layer, run) as its distinct values ``STEM.FIELD.values.npy``
    (fixed-width unicode, so no object array is pickled) and an int32 code per series
    (``pandas.factorize``: hashing, where converting every string took most of a call's
    exchange). The fields written."""
    if meta is None:
        return []
    written = []
    for f in fields(meta):
        value = getattr(meta, f.name)
        if value is None:
            continue
        array = np.asarray(value)
        if array.dtype == object or array.dtype.kind == "U":
            flat = array.reshape(-1)
            if flat.size and bool((flat == flat[0]).all()):  # one run's task, run id
                codes, values = np.zeros(flat.size, dtype=np.int32), flat[:1]
            else:
                import pandas as pd

                codes, values = pd.factorize(flat, use_na_sentinel=False)
            np.save(
                directory / f"{stem}.{f.name}.values.npy",
                np.asarray(values, dtype=object).astype(str),
                allow_pickle=False,
            )
            array = codes.astype(np.int32).reshape(array.shape)
            written.append(f"{f.name}:str")
        else:
            written.append(f.name)
        np.save(directory / f"{stem}.{f.name}.npy", array, allow_pickle=False)
    return written


def load_meta(names: list[str], directory: Path, stem: str) -> SeriesMeta | None:
    """The :class:`SeriesMeta` :func:`save_meta` wrote (strings as python ``str``)."""
    if not names:
        return None
    values = {}
    for entry in names:
        name, _, kind = entry.partition(":")
        array = np.load(directory / f"{stem}.{name}.npy", allow_pickle=False)
        if kind == "str":
            distinct = np.load(directory / f"{stem}.{name}.values.npy", allow_pickle=False)
            array = distinct.astype(object)[array]
        values[name] = array
    return SeriesMeta(**values)


def save_history(history: Any, directory: Path, stem: str) -> dict[str, Any]:
    """A :class:`~trajbench.forecasting.model.ModelHistory` as plain data: its arrays
    written as ``STEM.history.{states,steps,first}.npy``, the rest (layout, origin,
    stride, task, run) returned as JSON values (:func:`load_history` rebuilds it)."""
    from trajbench.forecasting.model import ModelHistory

    if not isinstance(history, ModelHistory):
        raise TrajbenchError(
            f"history must be a trajbench ModelHistory, but got {type(history).__name__}"
        )
    for name in ("states", "steps", "first"):
        np.save(
            directory / f"{stem}.history.{name}.npy", getattr(history, name), allow_pickle=False
        )
    return {
        "layout": [spec.to_json() for spec in history.layout],
        "origin": history.origin,
        "stride": history.stride,
        "task": history.task,
        "task_params": dict(history.task_params),
        "run": history.run,
    }


def load_history(described: Mapping[str, Any], directory: Path, stem: str) -> Any:
    """The :class:`~trajbench.forecasting.model.ModelHistory` :func:`save_history` wrote."""
    from trajbench.forecasting.model import ModelHistory
    from trajbench.store.layout import parse_layout

    arrays = {
        name: np.load(directory / f"{stem}.history.{name}.npy", allow_pickle=False)
        for name in ("states", "steps", "first")
    }
    return ModelHistory(
        layout=tuple(parse_layout(described["layout"])),
        origin=int(described["origin"]),
        stride=int(described["stride"]),
        task=str(described["task"]),
        task_params=dict(described["task_params"]),
        run=str(described["run"]),
        **arrays,
    )


def _scratch_dir() -> Path:
    """A private directory for the arrays exchanged with one worker (in memory on
    ``/dev/shm`` when it is there and writable)."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="trajbench-worker-", dir=base))


# -------------------------------------------------------------- the stand-in
class WorkerForecaster(Forecaster):
    """Stands in for a forecaster that runs in a worker process (see the module's
    docstring). ``local`` is the same forecaster built here: its identity (name,
    parameters, tags, context length, class and source), never fitted or called."""

    def __init__(
        self,
        local: Forecaster,
        spec: ForecasterSpec,
        isolation: Isolation,
        measure_memory: bool = True,
    ) -> None:
        self.local = local
        self.spec = spec
        self.isolation = isolation
        self.measure_memory = measure_memory
        self.name = local.name
        self.context_length = int(local.context_length)
        #: Peak bytes the worker measured over its last call (0 when not measured).
        self.last_peak_bytes = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._buffer = b""
        self._dead: str | None = None
        self._fallbacks: dict[str, int] = {}
        self._calls = 0
        self._creating = False

    # identity: the local instance's
    def get_tags(self) -> dict[str, Any]:
        return self.local.get_tags()

    def get_params(self) -> dict[str, Any]:
        return self.local.get_params()

    def __repr__(self) -> str:
        return f"WorkerForecaster({self.local!r})"

    # ---------------------------------------------------------------- process
    def launch(self) -> None:
        """Start the worker and ask it to build the forecaster, without waiting (the
        harness starts every worker at once, then waits for them with :meth:`ready`)."""
        if self._proc is not None or self._dead is not None:
            return
        self._dir = _scratch_dir()
        env = dict(os.environ)
        # the worker imports what this process can: the same module search path
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "trajbench.bench._worker", str(self._dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            # its own session: the terminal's Ctrl-C goes to the benchmark, which stops it
            start_new_session=True,
        )
        self._send(
            "create",
            {
                "target": self.spec.target,
                "params": dict(self.spec.params),
                "name": self.spec.name or self.name,
                "memory_limit": self.isolation.memory_limit,
                "measure_memory": self.measure_memory,
            },
        )
        self._creating = True

    def ready(self) -> str | None:
        """Wait until the worker has built the forecaster: None, or why it could not (the
        forecaster's later calls then fail with that line)."""
        self.launch()
        try:
            self._wait_created()
        except ForecasterFailure as exc:
            return exc.text
        return None

    def _wait_created(self) -> None:
        if self._creating:
            self._creating = False
            try:
                self._receive("create")
            except ForecasterFailure as exc:
                if self._dead is None:
                    self._dead = f"could not be created in its worker: {exc.text}"
                    self.close()
                raise ForecasterFailure(self._dead) from None

    def _send(self, op: str, request: dict[str, Any]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write((json.dumps({"op": op, **request}) + "\n").encode())
            proc.stdin.flush()
        except OSError:
            pass  # the worker is gone: reading its reply says how

    def _call(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply (at most the timeout); a failure in
        the worker raises :class:`ForecasterFailure` with the recorded line."""
        if self._dead is not None:
            raise ForecasterFailure(self._dead)
        self.launch()
        self._wait_created()
        self._send(op, request)
        return self._receive(op)

    def _receive(self, op: str) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        timeout = self.isolation.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                self._stop(
                    f"TimeoutError: {op} did not return within {timeout:g} s "
                    "(bench --timeout); its worker process was stopped"
                )
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = proc.wait()
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0 and -code in signal.Signals._value2member_map_
                    else f"exited with code {code}"
                )
                limit = self.isolation.memory_limit
                note = f"; its memory limit was {limit} bytes" if limit else ""
                self._stop(f"WorkerExit: the worker process {how} during {op}{note}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if reply.get("rng") is not None:
            if reply.get("torch") and "torch" not in sys.modules:
                import torch  # noqa: F401 - the forecaster uses it: carry its stream too
            rng_from_json(reply["rng"])
        self.last_peak_bytes = int(reply.get("peak_bytes", 0))
        if not reply.get("ok"):
            raise ForecasterFailure(str(reply.get("error", "the worker failed")))
        return reply

    def _stop(self, text: str) -> None:
        """Kill the worker and record why: every later call fails with ``text``."""
        self._dead = text
        self.close()
        raise ForecasterFailure(text)

    def release(self) -> None:
        """Ask the worker to exit (its stdin closes) without waiting for it: the harness
        releases every worker, then closes each, so their interpreter shutdowns
        (tenths of a second each) overlap instead of adding up."""
        proc = self._proc
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the worker (if running) and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    if proc.stdin is not None and not proc.stdin.closed:
                        proc.stdin.close()
                    proc.wait(timeout=2)
                except (OSError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:  # a benchmark always closes; this is a belt
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------- forecaster
    def fit(self, train: Any) -> Forecaster:
        """Fit the forecaster in its worker on the same training data, rebuilt there
        from the store (location, runs, sampled columns)."""
        if self._dead is not None:
            raise ForecasterFailure(self._dead)
        self.launch()
        assert self._dir is not None
        described = _describe_training(train, self._dir, "train")
        self._call("fit", {"data": described, "rng": rng_to_json()})
        self._is_fitted = True
        return self

    def predict(self, context: Any, horizon: int, meta: SeriesMeta | None = None) -> np.ndarray:
        """The worker's forecaster's ``predict`` (checks included) on the same arrays."""
        if self._dead is not None:
            raise ForecasterFailure(self._dead)
        self.launch()
        assert self._dir is not None
        self._calls += 1
        stem = f"call{self._calls % 2}"  # two names in turn: never one still being read
        np.save(self._dir / f"{stem}.context.npy", np.asarray(context), allow_pickle=False)
        names = save_meta(meta, self._dir, stem)
        reply = self._call(
            "predict",
            {"stem": stem, "horizon": int(horizon), "meta": names, "rng": rng_to_json()},
        )
        self._fallbacks = {str(k): int(v) for k, v in reply.get("fallbacks", {}).items()}
        out = np.load(self._dir / f"{stem}.out.npy", allow_pickle=False)
        return out

    def predict_model(self, history: Any, horizons: Any) -> np.ndarray:
        """The worker's forecaster's ``predict_model`` (checks included) on the same
        whole-model history: its arrays as ``.npy`` files, the layout and the other
        fields as JSON (:func:`save_history`)."""
        if self._dead is not None:
            raise ForecasterFailure(self._dead)
        self.launch()
        assert self._dir is not None
        self._calls += 1
        stem = f"call{self._calls % 2}"
        described = save_history(history, self._dir, stem)
        steps = np.asarray(horizons).tolist() if not np.isscalar(horizons) else horizons
        reply = self._call(
            "predict_model",
            {"stem": stem, "history": described, "horizons": steps, "rng": rng_to_json()},
        )
        self._fallbacks = {str(k): int(v) for k, v in reply.get("fallbacks", {}).items()}
        return np.load(self._dir / f"{stem}.out.npy", allow_pickle=False)

    def pop_fallbacks(self) -> dict[str, int]:
        out, self._fallbacks = self._fallbacks, {}
        return out

    def _predict(
        self, context: np.ndarray, horizon: int, meta: SeriesMeta | None
    ) -> np.ndarray:  # pragma: no cover - predict is forwarded whole
        return self.predict(context, horizon, meta)


def _describe_training(data: Any, directory: Path, stem: str) -> dict[str, Any] | None:
    """``data`` (a store-backed :class:`~trajbench.forecasting.data.TrainingData`) as
    plain data a worker rebuilds it from: the store's location, the runs table (a
    parquet file), each source's run, task, length and sampled columns (``.npy``)."""
    if data is None:
        return None
    location = getattr(data.store, "location", None)
    if location is None:
        raise TrajbenchError("an isolated forecaster's training data must come from a store")
    sources = list(data.sources)
    data.runs.to_parquet(directory / f"{stem}.runs.parquet", index=False)
    for i, source in enumerate(sources):
        np.save(directory / f"{stem}.columns{i}.npy", source.columns, allow_pickle=False)
    return {
        "location": str(location),
        "stem": stem,
        "split": data.split,
        "context_length": data.context_length,
        "horizon": data.horizon,
        "stride": data.stride,
        "batch_series": data.batch_series,
        "sources": [[s.path, s.task, int(s.n_snapshots)] for s in sources],
        "validation": _describe_training(data.validation, directory, f"{stem}.validation"),
    }
