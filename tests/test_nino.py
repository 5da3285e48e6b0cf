"""NiNo and WNN+ (baselines/nino.py) against the official in-process pipeline.

The reference numbers (tests/data/nino_reference.npz/.json, made as tests/data/nino_README.md
says) are the outputs of github.com/SamsungSAILMontreal/nino's NiNo optimizer fed 5
distinct states, with weights we draw from a fixed seed (``_nino_net.random_weights``) and
its Laplacian positions injected. The test regenerates the same weights and states.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines import _nino_net as net
from baselines.nino import NiNo, WNNPlus, horizon_to_k
from trajbench.errors import TrajbenchError
from trajbench.forecasting.model import ModelHistory
from trajbench.store.layout import ParamSpec

DATA = Path(__file__).parent / "data"
META = json.loads((DATA / "nino_reference.json").read_text())
REF = dict(np.load(DATA / "nino_reference.npz", allow_pickle=False))
CLASSES = {"nino": NiNo, "wnn_plus": WNNPlus}


def _trajectory(n_params: int, seed: int) -> np.ndarray:
    """The fixture's 5 states (same function as the script that made it)."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(n_params) * 0.5
    v = rng.standard_normal(n_params) * 0.05
    noise = rng.standard_normal((5, n_params)) * 0.01
    return (w0[None] + np.arange(5)[:, None] * v[None] + noise).astype(np.float32)


def _history(model: str, buffers: bool = False) -> tuple[ModelHistory, np.ndarray]:
    """The fixture model's history; with ``buffers``, a BatchNorm-like buffer is
    interleaved after each 1-D ``.weight`` (as a state_dict lists running stats)."""
    specs, off, cols = [], 0, []
    for name, shape in META["models"][model]:
        numel = int(np.prod(shape))
        specs.append(
            ParamSpec(name=name, shape=tuple(shape), offset=off, numel=numel, kind="other")
        )
        cols.extend(range(off, off + numel))
        off += numel
        if buffers and name.endswith(".bias") and len(shape) == 1 and model == "cnn_bn":
            specs.append(
                ParamSpec(
                    name=name[:-4] + "running_mean",
                    shape=tuple(shape),
                    offset=off,
                    numel=numel,
                    kind="buffer",
                )
            )
            off += numel
    params = _trajectory(len(cols), META["traj_seeds"][model])
    states = np.full((5, off), 0.25, dtype=np.float32)
    states[:, cols] = params
    states[:, [c for c in range(off) if c not in set(cols)]] += np.arange(5, dtype=np.float32)[
        :, None
    ]
    hist = ModelHistory(
        states=states,
        steps=np.arange(5) * 200,
        layout=tuple(specs),
        first=states[0],
        origin=4,
        stride=200,
    )
    return hist, np.asarray(cols)


@pytest.mark.parametrize("name", ["nino", "wnn_plus"])
@pytest.mark.parametrize("model", ["mlp", "cnn", "cnn_bn"])
def test_matches_official_pipeline(name: str, model: str) -> None:
    hist, cols = _history(model, buffers=True)
    kwargs = {"pos": REF[f"pos/{model}"]} if name == "nino" else {}
    f = CLASSES[name](random_weights=True, seed=META["weight_seeds"][name], **kwargs)
    ks = META["ks"]
    out = f.predict_model(hist, ks)
    last = hist.states[-1]
    for i, k in enumerate(ks):
        ref = REF[f"{name}/{model}/k{k}"]
        change = np.abs(ref - last[cols]).max()
        assert change > 0.05  # a real forecast, not the last state
        np.testing.assert_allclose(out[i, cols], ref, rtol=0, atol=1e-5 * change)
    # buffers keep the last state
    other = np.setdiff1d(np.arange(hist.n_params), cols)
    np.testing.assert_array_equal(
        out[:, other], np.broadcast_to(last[other], (len(ks), len(other)))
    )


def test_horizons_map_to_k_and_clip_is_reported() -> None:
    ks, clipped = horizon_to_k(np.array([1, 5, 40, 41, 100]))
    assert ks.tolist() == [1, 5, 40, 40, 40] and clipped == 2
    hist, cols = _history("mlp")
    f = WNNPlus(random_weights=True, seed=META["weight_seeds"]["wnn_plus"])
    out = f.predict_model(hist, [40, 41, 60])
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_allclose(out[0, cols], REF["wnn_plus/mlp/k40"], atol=1e-6)
    assert f.pop_fallbacks() == {"horizon > 40 snapshots: k clipped to 40": 2}


def test_needs_weights_and_checks_files(tmp_path: Path) -> None:
    hist, _ = _history("mlp")
    with pytest.raises(TrajbenchError, match="needs checkpoint=PATH"):
        NiNo().predict_model(hist, [1])
    with pytest.raises(TrajbenchError, match="does not exist"):
        NiNo(checkpoint=str(tmp_path / "none.pt")).predict_model(hist, [1])
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(TrajbenchError, match="no 'state_dict'"):
        NiNo(checkpoint=str(bad)).predict_model(hist, [1])
    w = net.random_weights(False, 3)
    mlp = tmp_path / "mlp.pt"
    torch.save({"state_dict": w, "model_args": {"gnn": False}}, mlp)
    with pytest.raises(TrajbenchError, match="use wnn_plus for it"):
        NiNo(checkpoint=str(mlp)).predict_model(hist, [1])
    del w["edge_mlp.fc.6.bias"]
    torch.save({"state_dict": w, "model_args": {"gnn": False}}, mlp)
    with pytest.raises(TrajbenchError, match="missing key 'edge_mlp.fc.6.bias'"):
        WNNPlus(checkpoint=str(mlp)).predict_model(hist, [1])


def test_checkpoint_file_loads_same_as_random(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    hist, _ = _history("cnn")
    seed = META["weight_seeds"]["nino"]
    path = tmp_path / "nino.safetensors"
    save_file(net.random_weights(True, seed), str(path))
    pos = REF["pos/cnn"]
    a = NiNo(checkpoint=str(path), pos=pos).predict_model(hist, [1, 5])
    b = NiNo(random_weights=True, seed=seed, pos=pos).predict_model(hist, [1, 5])
    np.testing.assert_array_equal(a, b)
    assert NiNo(checkpoint=str(path)).get_tag("pretrained_on") == {}
    assert NiNo(checkpoint="x.pt").get_tag("pretrained_on")["data"]
    assert NiNo().get_tag("scope") == "model"


def test_computed_positions_give_a_close_forecast() -> None:
    """Without injected positions (ours are another basis of the degenerate
    eigenspaces), the forecast differs from the reference only slightly."""
    hist, cols = _history("mlp")
    out = NiNo(random_weights=True, seed=META["weight_seeds"]["nino"]).predict_model(hist, [5])
    ref = REF["nino/mlp/k5"]
    change = np.abs(ref - hist.states[-1][cols]).max()
    err = np.abs(out[0, cols] - ref).max()
    assert 0 < err < 0.5 * change


CKPT = os.environ.get("TRAJBENCH_NINO_CHECKPOINTS")


@pytest.mark.skipif(
    not CKPT, reason="set TRAJBENCH_NINO_CHECKPOINTS to the released checkpoints' folder"
)
@pytest.mark.parametrize("name", ["nino", "wnn_plus"])
@pytest.mark.parametrize("model", ["mlp", "cnn", "cnn_bn"])
def test_released_checkpoints(name: str, model: str) -> None:
    assert CKPT is not None
    file = "nino_no_posw.pt" if name == "nino" else "nino_mlp.pt"
    hist, cols = _history(model)
    kwargs = {"pos": REF[f"pos/{model}"]} if name == "nino" else {}
    f = CLASSES[name](checkpoint=str(Path(CKPT) / file), **kwargs)
    out = f.predict_model(hist, META["ks"])
    for i, k in enumerate(META["ks"]):
        ref = REF[f"real_{name}/{model}/k{k}"]
        change = np.abs(ref - hist.states[-1][cols]).max()
        np.testing.assert_allclose(out[i, cols], ref, rtol=0, atol=1e-5 * change)


@pytest.mark.parametrize("cls", [NiNo, WNNPlus])
def test_conformance(cls: type) -> None:
    from trajbench.testing import check_forecaster

    assert "model_deterministic" in check_forecaster(cls(random_weights=True))
