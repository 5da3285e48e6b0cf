"""Summarise validation_errors.csv: per run the ratio of summed absolute errors to persistence's,
geometric mean over runs (the protocol's scaled_persistence)."""

import numpy as np
import pandas as pd

df = pd.read_csv("reports/wnn-training/validation_errors.csv")
p = df[df.forecaster == "persistence"].set_index(["run", "horizon"])["sum_abs"]
df["ratio"] = df["sum_abs"].values / p.loc[list(zip(df.run, df.horizon, strict=True))].values


def g(s):
    return float(np.exp(np.log(np.maximum(s, 1e-12)).mean()))


tab = df.groupby(["forecaster", "horizon"])["ratio"].apply(g).unstack("horizon").round(3)


def pooled(hs):
    d = (
        df[df.horizon.isin(hs)]
        .groupby(["forecaster", "run"])["sum_abs"]
        .sum()
        .unstack("forecaster")
    )
    return (d.div(d["persistence"], axis=0)).apply(lambda c: g(c.values)).round(3)


tab["short(1-5)"] = pooled([1, 2, 3, 4, 5])
tab["long(all)"] = pooled(sorted(df.horizon.unique()))
print(tab.to_string())
d5 = df[df.horizon == 5]
wins = d5.pivot_table(index="run", columns="forecaster", values="ratio")
print(
    "runs where wnn beats persistence at h=5:",
    {c: int((wins[c] < 1).sum()) for c in wins if c.startswith("wnn")},
    "of",
    len(wins),
)
task = (
    df[df.horizon == 5]
    .groupby(["task", "forecaster"])["ratio"]
    .apply(g)
    .unstack("forecaster")
    .round(3)
)
print(task.to_string())
