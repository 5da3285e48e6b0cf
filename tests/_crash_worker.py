"""Recording worker for tests/test_crash.py: records until it is killed.

    python tests/_crash_worker.py STORE RUN_ID N_SNAPSHOTS SNAPSHOTS_PER_CHUNK [COMPRESSION]

Snapshot ``k`` holds known values (see :func:`expected_row`), so the test can check every
committed row without talking to this process. After each snapshot it prints
``<snapshots taken> <snapshots committed>`` and flushes stdout. It never calls flush().
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

ROWS, COLS = 1000, 1000  # ~1M float32 parameters: 4 MB per snapshot
N_PARAMS = ROWS * COLS + 3


def make_model() -> nn.Module:
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(ROWS, COLS))
    model.b = nn.Parameter(torch.zeros(3))
    return model


def _base() -> np.ndarray:
    return (np.arange(N_PARAMS, dtype=np.int64) % 97).astype(np.float32)


def set_weights(model: nn.Module, k: int) -> None:
    """Snapshot k: column j holds (j % 97) + 1000 k (exact in float32 for k < 16000)."""
    row = torch.from_numpy(_base() + np.float32(1000 * k))
    with torch.no_grad():
        model.w.copy_(row[: ROWS * COLS].view(ROWS, COLS))
        model.b.copy_(row[ROWS * COLS :])


def expected_row(k: int) -> np.ndarray:
    return _base() + np.float32(1000 * k)


def step_of(k: int) -> int:
    return 10 * k + 3


def loss_of(k: int) -> float:
    return 1.0 / (k + 1)


def main() -> None:
    torch.set_num_threads(1)
    from trajbench import Recorder

    store, run_id, n, spc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    compression = sys.argv[5] if len(sys.argv) > 5 else None
    model = make_model()
    rec = Recorder(
        store,
        run_id,
        model,
        meta={"task": "crash"},
        snapshots_per_chunk=spc,
        compression=compression,
    )
    for k in range(n):
        set_weights(model, k)
        rec.snapshot(step=step_of(k), epoch=k / 10, metrics={"loss": loss_of(k)})
        print(rec.n_snapshots, rec.n_committed, flush=True)
    rec.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
