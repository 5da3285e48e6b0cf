"""Our evaluation of WNN on the validation split of the small suite (reports/wnn-training/README.md).

Usage: python reports/wnn-training/evaluate_validation.py SAMPLE_SIZE ORIGIN_STRIDE (we ran 256 5), with
/tmp/wnn/seed{0,1,2}/wnn.safetensors from `trajbench train-forecaster wnn /tmp/small.zarr --seed S`.
Writes per (run, forecaster, horizon) the summed absolute error and the count."""

import sys
import time

import numpy as np
import pandas as pd

from baselines.linear import LinearExtrapolation
from baselines.persistence import Persistence
from baselines.wnn import WNN
from trajbench.bench.protocol import PROTOCOL
from trajbench.train_cli import split_training_data

H = [1, 2, 3, 4, 5, 10, 20, 30, 40, 50]
val = split_training_data(
    "/tmp/small.zarr", seed=0, protocol=PROTOCOL.replace(sample_size=int(sys.argv[1]))
).validation
models = {f"wnn-s{s}": WNN(weights=f"/tmp/wnn/seed{s}/wnn.safetensors") for s in (0, 1, 2)}
models["linear"] = LinearExtrapolation()
models["persistence"] = Persistence()
rows = []
t0 = time.time()
for src, run in zip(val.sources, val.runs.itertuples(), strict=True):
    values = src.read(0, src.n_snapshots)
    meta0 = src.meta()
    origins = np.arange(19, src.n_snapshots - 1, int(sys.argv[2]))
    for name, m in models.items():
        errs = {h: 0.0 for h in H}
        cnt = {h: 0 for h in H}
        for o in origins:
            ctx = np.ascontiguousarray(values[o - 4 : o + 1].T)
            hmax = min(50, src.n_snapshots - 1 - o)
            pred = m.predict(ctx, hmax, meta0.with_origin(o))
            for h in H:
                if h <= hmax:
                    errs[h] += float(np.abs(pred[:, h - 1] - values[o + h]).sum())
                    cnt[h] += len(ctx)
        for h in H:
            if cnt[h]:
                rows.append(
                    {
                        "run": run.path,
                        "task": run.task,
                        "forecaster": name,
                        "horizon": h,
                        "sum_abs": errs[h],
                        "n": cnt[h],
                    }
                )
    print(run.path, round(time.time() - t0, 1), flush=True)
df = pd.DataFrame(rows)
df.to_csv("reports/wnn-training/validation_errors.csv", index=False)
