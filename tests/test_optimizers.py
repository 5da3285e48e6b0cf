"""Optimizers and learning-rate schedules from plain config dicts."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from trajbench.errors import TrajbenchError
from trajbench.generate import optimizers as opt_mod
from trajbench.generate.optimizers import (
    build_optimizer,
    build_schedule,
    list_optimizers,
    list_schedules,
    normalize_optimizer_config,
    normalize_schedule_config,
    register_optimizer,
    register_schedule,
    set_lr,
)

pytestmark = pytest.mark.micro


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster (and more predictably on a shared machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(3, 2).parameters())


@pytest.mark.parametrize(
    ("config", "cls", "expected"),
    [
        (
            {"name": "sgd", "lr": 0.1},
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "nesterov": False},
        ),
        (
            {"name": "momentum", "lr": 0.1, "weight_decay": 5e-4},
            torch.optim.SGD,
            {"momentum": 0.9, "weight_decay": 5e-4},
        ),
        ({"name": "momentum", "lr": 0.1, "momentum": 0.5}, torch.optim.SGD, {"momentum": 0.5}),
        ({"name": "nesterov", "lr": 0.1}, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        (
            {"name": "adam", "lr": 1e-3, "betas": [0.8, 0.99]},
            torch.optim.Adam,
            {"betas": (0.8, 0.99), "weight_decay": 0.0},
        ),
        ({"name": "adamw", "lr": 1e-3}, torch.optim.AdamW, {"weight_decay": 0.01, "eps": 1e-8}),
    ],
)
def test_build_each_optimizer(config: dict, cls: type, expected: dict) -> None:
    optimizer = build_optimizer(_params(), config)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == value, key


def test_normalized_config_fills_defaults_and_is_json() -> None:
    import json

    full = normalize_optimizer_config({"name": "adamw", "lr": 3e-3, "weight_decay": 0.05})
    assert full == {
        "name": "adamw",
        "lr": 3e-3,
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "amsgrad": False,
    }
    json.dumps(full)
    assert normalize_optimizer_config({"name": "sgd", "lr": 1})["lr"] == 1.0


def test_optimizer_config_errors() -> None:
    with pytest.raises(TrajbenchError, match="unknown optimizer 'adamm'; did you mean 'adam'"):
        normalize_optimizer_config({"name": "adamm", "lr": 0.1})
    with pytest.raises(
        TrajbenchError, match="no hyperparameter 'momentun'; did you mean 'momentum'"
    ):
        normalize_optimizer_config({"name": "sgd", "lr": 0.1, "momentun": 0.9})
    with pytest.raises(TrajbenchError, match="needs an 'lr'"):
        normalize_optimizer_config({"name": "sgd"})
    with pytest.raises(TrajbenchError, match="lr must be > 0"):
        normalize_optimizer_config({"name": "sgd", "lr": -1})
    with pytest.raises(TrajbenchError, match="needs a 'name'"):
        normalize_optimizer_config({"lr": 0.1})
    with pytest.raises(TrajbenchError, match="needs an lr"):
        normalize_optimizer_config("adam")  # type: ignore[arg-type]
    with pytest.raises(TrajbenchError, match="betas must be a list of 2 numbers"):
        normalize_optimizer_config({"name": "adam", "lr": 0.1, "betas": 0.9})
    with pytest.raises(TrajbenchError, match="weight_decay must be >= 0"):
        normalize_optimizer_config({"name": "adamw", "lr": 0.1, "weight_decay": -0.1})


def _factors(config: object, total: int = 100, spe: int = 10) -> list[float]:
    schedule = build_schedule(config, base_lr=2.0, total_steps=total, steps_per_epoch=spe)  # type: ignore[arg-type]
    return [schedule.factor(s) for s in range(total + 1)]


def test_constant_and_step_schedules() -> None:
    assert set(_factors("constant")) == {1.0}
    f = _factors({"name": "step", "milestones": [3, 6.5], "gamma": 0.5})
    assert f[29] == 1.0 and f[30] == 0.5 and f[64] == 0.5 and f[65] == 0.25 and f[100] == 0.25
    g = _factors({"name": "step", "every": 4, "gamma": 0.1})
    assert g[39] == 1.0 and g[40] == pytest.approx(0.1) and g[80] == pytest.approx(0.01)
    schedule = build_schedule(
        {"name": "step", "every": 4}, base_lr=2.0, total_steps=100, steps_per_epoch=10
    )
    assert schedule.lr(40) == pytest.approx(0.2)
    assert schedule.config == {"name": "step", "gamma": 0.1, "every": 4}


def test_cosine_linear_and_warmup_schedules() -> None:
    c = _factors({"name": "cosine", "min_factor": 0.1})
    assert c[0] == 1.0 and c[50] == pytest.approx(0.55) and c[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in pairwise(c))
    lin = _factors("linear")
    assert lin[0] == 1.0 and lin[25] == pytest.approx(0.75) and lin[100] == 0.0
    w = _factors({"name": "warmup", "warmup_epochs": 2})  # 20 warm-up steps
    assert (
        w[0] == pytest.approx(1 / 20)
        and w[9] == pytest.approx(0.5)
        and w[19] == 1.0
        and w[20] == 1.0
        and w[100] == 1.0
    )
    wc = _factors({"name": "warmup_cosine", "warmup_epochs": 2})
    assert wc[:20] == w[:20]
    assert (
        wc[20] == 1.0 and wc[60] == pytest.approx(0.5) and wc[100] == pytest.approx(0.0, abs=1e-12)
    )
    assert all(a >= b for a, b in pairwise(wc[20:]))


def test_schedule_config_errors() -> None:
    with pytest.raises(TrajbenchError, match="unknown schedule 'cosin'; did you mean 'cosine'"):
        normalize_schedule_config("cosin")
    with pytest.raises(TrajbenchError, match="no parameter 'warmup'; did you mean 'warmup_epochs'"):
        normalize_schedule_config({"name": "warmup_cosine", "warmup": 3})
    with pytest.raises(TrajbenchError, match="exactly one of 'milestones'"):
        normalize_schedule_config({"name": "step"})
    with pytest.raises(TrajbenchError, match="min_factor must be in \\[0, 1\\]"):
        normalize_schedule_config({"name": "cosine", "min_factor": 2})
    assert normalize_schedule_config(None) == {"name": "constant"}
    assert normalize_schedule_config("warmup_cosine") == {
        "name": "warmup_cosine",
        "warmup_epochs": 5,
        "min_factor": 0.0,
    }


def test_registries_accept_user_entries() -> None:
    assert {"sgd", "momentum", "nesterov", "adam", "adamw"} <= set(list_optimizers())
    assert {"constant", "step", "cosine", "linear", "warmup", "warmup_cosine"} <= set(
        list_schedules()
    )
    try:
        register_optimizer("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "weight_decay": 0.0})
        optimizer = build_optimizer(_params(), {"name": "rmsprop", "lr": 0.01, "alpha": 0.9})
        assert type(optimizer) is torch.optim.RMSprop and optimizer.param_groups[0]["alpha"] == 0.9
        with pytest.raises(TrajbenchError, match="already registered"):
            register_optimizer("rmsprop", torch.optim.RMSprop)

        register_schedule(
            "halve",
            lambda *, total_steps, steps_per_epoch, at=1: (
                lambda s: 0.5 if s >= at * steps_per_epoch else 1.0
            ),
            {"at": 1},
        )
        assert _factors({"name": "halve", "at": 2})[19:21] == [1.0, 0.5]
    finally:
        opt_mod._OPTIMIZERS.pop("rmsprop", None)
        opt_mod._SCHEDULES.pop("halve", None)


def test_set_lr_and_schedule_drive_a_real_optimizer() -> None:
    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = build_optimizer([weight], {"name": "sgd", "lr": 1.0})
    schedule = build_schedule(
        {"name": "step", "milestones": [1]}, base_lr=1.0, total_steps=4, steps_per_epoch=2
    )
    for step in range(4):
        set_lr(optimizer, schedule.lr(step))
        optimizer.zero_grad()
        (weight * 1.0).sum().backward()  # gradient 1
        optimizer.step()
    assert weight.item() == pytest.approx(1.0 - (1.0 + 1.0 + 0.1 + 0.1))
    assert not math.isnan(schedule.lr(10))
