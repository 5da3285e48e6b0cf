"""WNN (baselines/wnn.py): the authors' pipeline against an independent numpy
re-computation, conformance, training on a smooth family, horizons, saving and loading,
bad input, and ``trajbench train-forecaster``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from baselines.wnn import OFFICIAL_KEYS, WNN, load_official, network_of, random_wnn
from trajbench.errors import TrajbenchError
from trajbench.forecasting.data import TrainingData
from trajbench.forecasting.meta import SeriesMeta
from trajbench.testing import check_forecaster, make_quadratic_store

DATA = Path(__file__).parent / "data"

#: Every entry of the released ``WNN_Pytorch/NWNN_Conv_13.pt`` (github.com/jjh6297/WNN,
#: commit ab0f62c), in the file's order, with its shape, as read with
#: ``torch.load(weights_only=True)`` during development. The L1-regularised layers of the
#: authors' PyTorch port are wrapped (``.linear.``, with two ``*_loss`` buffers), the others
#: plain. ``NWNN_FC_13.pt`` and ``NWNN_Bias_13.pt`` have the same entries.
RELEASED_LAYOUT: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("dense.weight_loss", (1,)),
    ("dense.bias_loss", (1,)),
    ("dense.linear.weight", (64, 5)),
    ("dense.linear.bias", (64,)),
    ("dense_6.weight_loss", (1,)),
    ("dense_6.bias_loss", (1,)),
    ("dense_6.linear.weight", (64, 4)),
    ("dense_6.linear.bias", (64,)),
    ("dense_1.weight", (8, 64)),
    ("dense_1.bias", (8,)),
    ("dense_2.weight", (64, 8)),
    ("dense_2.bias", (64,)),
    ("dense_3.weight", (64, 8)),
    ("dense_3.bias", (64,)),
    ("dense_4.weight", (64, 8)),
    ("dense_4.bias", (64,)),
    ("dense_5.weight_loss", (1,)),
    ("dense_5.bias_loss", (1,)),
    ("dense_5.linear.weight", (32, 64)),
    ("dense_5.linear.bias", (32,)),
    ("dense_7.weight", (8, 64)),
    ("dense_7.bias", (8,)),
    ("dense_8.weight", (64, 8)),
    ("dense_8.bias", (64,)),
    ("dense_9.weight", (64, 8)),
    ("dense_9.bias", (64,)),
    ("dense_10.weight", (64, 8)),
    ("dense_10.bias", (64,)),
    ("dense_11.weight_loss", (1,)),
    ("dense_11.bias_loss", (1,)),
    ("dense_11.linear.weight", (32, 64)),
    ("dense_11.linear.bias", (32,)),
    ("dense_12.weight", (1, 64)),
    ("dense_12.bias", (1,)),
)


# ------------------------------------------------------------------ helpers
def _random_state(seed: int, scale: float = 0.4) -> dict[str, torch.Tensor]:
    """A state dict with exactly the released keys, order and shapes (the ``*_loss``
    buffers included), filled with our own random numbers (drawn layer by layer,
    ``dense`` .. ``dense_12``)."""
    gen = torch.Generator().manual_seed(seed)
    layer_order = sorted(
        (k for k, _ in RELEASED_LAYOUT if not k.endswith("_loss")),
        key=lambda k: (int(k.split(".")[0].partition("_")[2] or 0), k.endswith("bias")),
    )
    shapes = dict(RELEASED_LAYOUT)
    drawn = {k: torch.randn(shapes[k], generator=gen) * scale for k in layer_order}
    return {
        k: (torch.full(shape, 0.123) if k.endswith("_loss") else drawn[k])
        for k, shape in RELEASED_LAYOUT
    }


def _layer(state: dict[str, np.ndarray], name: str, part: str) -> np.ndarray:
    """A layer's weight or bias from either key form (wrapped or plain)."""
    wrapped = f"{name}.linear.{part}"
    return state[wrapped] if wrapped in state else state[f"{name}.{part}"]


@pytest.fixture
def official(tmp_path):
    """Three files in the released layout (conv, fc, bias) and their numpy arrays."""
    paths, arrays = {}, {}
    for i, kind in enumerate(("conv", "fc", "bias")):
        state = _random_state(100 + i)
        path = tmp_path / f"NWNN_{kind}_13.pt"
        torch.save(state, path)
        paths[kind] = path
        arrays[kind] = {k: v.numpy().astype(np.float64) for k, v in state.items()}
    return paths, arrays


def _numpy_authors(
    state: dict[str, np.ndarray], W: np.ndarray, kind: str, slope: float, bias_mode: str
) -> np.ndarray:
    """The authors' pipeline written out in float64 numpy (methods-facts section 2.3)."""
    W = W.astype(np.float64)
    lo = W[:, 0:1]
    centred = W - lo
    scale = centred.max(axis=1) - centred.min(axis=1) + 1e-8
    Wn = centred / (scale[:, None] + 1e-5) / 2
    dWn = Wn[:, 1:] - Wn[:, :-1]

    def dense(name: str, x: np.ndarray) -> np.ndarray:
        return x @ _layer(state, name, "weight").T + _layer(state, name, "bias")

    def stream(
        x: np.ndarray, first: str, gate: str, add: str, mul: str, inner: str, last: str
    ) -> np.ndarray:
        z = dense(first, x)
        h = np.maximum(dense(gate, z), 0.0)
        g = dense(add, h) + dense(mul, h) * np.exp(z * dense(inner, h))
        o = dense(last, g)
        return np.where(o >= 0, o, slope * o)

    a = stream(Wn, "dense", "dense_1", "dense_2", "dense_3", "dense_4", "dense_5")
    b = stream(dWn, "dense_6", "dense_7", "dense_8", "dense_9", "dense_10", "dense_11")
    r = np.tanh(dense("dense_12", np.concatenate([a, b], axis=1)))[:, 0]
    last = W[:, 4] if (kind == "bias" and bias_mode == "authors") else Wn[:, 4]
    return (last + r) * 2 * (scale + 1e-5) + W[:, 0]


def _windows(n: int = 300, seed: int = 0) -> np.ndarray:
    """(n, 5) random-walk windows at scales from 1e-4 to 1, around offsets up to 2."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-4, 0, n)
    steps = rng.normal(size=(n, 5)) * scales[:, None]
    return (rng.uniform(-2, 2, n)[:, None] + np.cumsum(steps, axis=1)).astype(np.float32)


# ------------------------------------------------------- authors' pipeline
@pytest.mark.parametrize("bias_mode", ["intended", "authors"])
@pytest.mark.parametrize("slope", [0.3, 0.01])
@pytest.mark.parametrize("kind", ["conv", "fc", "bias"])
def test_official_matches_numpy(official, kind, slope, bias_mode):
    paths, arrays = official
    model = load_official(
        paths["conv"], paths["fc"], paths["bias"], negative_slope=slope, bias_mode=bias_mode
    )
    W = _windows()
    got = model.predict_next(W, kind)
    want = _numpy_authors(arrays[kind], W.astype(np.float64), kind, slope, bias_mode)
    assert got.dtype == np.float32 and got.shape == (len(W),)
    # 1e-5 relative to the magnitude of what the last step adds up in float32: the first
    # value plus 2 x range x (normalised last value + tanh output). Where those terms
    # cancel, float32 rounding of the network (about 1e-6 of its terms; which kernels torch
    # picks depends on the CPU) is not small relative to the sum itself.
    W64 = W.astype(np.float64)
    span = (W64 - W64[:, :1]).max(axis=1) - (W64 - W64[:, :1]).min(axis=1) + 1e-8 + 1e-5
    magnitude = np.abs(W64[:, 0]) + 2 * span * (np.abs((W64[:, 4] - W64[:, 0]) / (2 * span)) + 1)
    assert np.all(np.abs(got - want) <= 1e-5 * magnitude), np.max(np.abs(got - want) / magnitude)


def test_options_change_the_result(official):
    """The slope and the bias bug are real differences, and the bias bug touches only bias."""
    paths, _ = official
    W = _windows()
    base = load_official(*paths.values())
    port = load_official(*paths.values(), negative_slope=0.01)
    bug = load_official(*paths.values(), bias_mode="authors")
    assert not np.allclose(base.predict_next(W, "fc"), port.predict_next(W, "fc"))
    assert not np.allclose(base.predict_next(W, "bias"), bug.predict_next(W, "bias"))
    np.testing.assert_array_equal(base.predict_next(W, "conv"), bug.predict_next(W, "conv"))
    # each kind uses its own file
    assert not np.allclose(base.predict_next(W, "conv"), base.predict_next(W, "fc"))


def test_official_is_a_forecaster(official):
    paths, arrays = official
    model = load_official(*paths.values())
    assert model.is_fitted and not model.get_tag("needs_fit")
    assert "mnist" in model.get_tag("pretrained_on")["data"]
    W = _windows(50)
    meta = SeriesMeta.constant(50, kind="conv", layer="features.0.weight")
    out = model.predict(W, 5, meta)
    np.testing.assert_allclose(
        out[:, 4],
        _numpy_authors(arrays["conv"], W, "conv", 0.3, "intended"),
        rtol=1e-5,
        atol=1e-6 * np.abs(W).max(),
    )
    # a clone (parameters only) reloads the same files
    np.testing.assert_array_equal(model.clone().predict(W, 5, meta), out)
    # our network holds every layer, in our own key form (``<layer>.linear.*``)
    assert len(model.network("fc").state_dict()) == len(OFFICIAL_KEYS) == 26


def test_official_conformance(official):
    paths, _ = official
    check_forecaster(WNN(checkpoints={k: str(v) for k, v in paths.items()}))


# ------------------------------------------------ the released key layout
def test_released_layout_is_the_module_constant():
    """OFFICIAL_KEYS lists the released weight keys (the fixture above, without the
    ``*_loss`` buffers), in the same order."""
    weights = [(k, shape) for k, shape in RELEASED_LAYOUT if not k.endswith("_loss")]
    assert sorted(OFFICIAL_KEYS.items()) == sorted(weights)


def test_all_wrapped_and_all_plain_layouts_load_the_same(tmp_path, official):
    """Our own files (every layer ``<layer>.linear.*``) and a fully plain layout give the
    same network as the released mixed layout."""
    paths, arrays = official
    released = torch.load(paths["fc"], weights_only=True)
    wrapped, plain = {}, {}
    for key, value in released.items():
        if key.endswith("_loss"):
            continue
        name, part = key.replace(".linear", "").split(".")
        wrapped[f"{name}.linear.{part}"] = value
        plain[f"{name}.{part}"] = value
    torch.save(wrapped, tmp_path / "wrapped.pt")
    torch.save(plain, tmp_path / "plain.pt")
    W = _windows(40)
    want = load_official(*paths.values()).predict_next(W, "fc")
    for variant in ("wrapped.pt", "plain.pt"):
        got = load_official(paths["conv"], tmp_path / variant, paths["bias"]).predict_next(W, "fc")
        np.testing.assert_array_equal(got, want)


def _stored_outputs() -> dict:
    return json.loads((DATA / "wnn_official_outputs.json").read_text())


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal up to float32 rounding: 1e-6 of ``1 + |want|`` (the stored values are float32
    outputs of computations in weight units)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    err = np.abs(got - want) / (1 + np.abs(want))
    assert got.shape == want.shape and err.max() <= 1e-6, f"max relative error {err.max():.3g}"


def test_stored_outputs_are_consistent():
    """The committed reference (tests/data/wnn_official_outputs.json): the authors' own
    PyTorch code agrees with our pipeline at their settings (slope 0.01, their bias path),
    and the options change what they should."""
    ref = _stored_outputs()
    out = ref["outputs"]
    assert np.asarray(ref["inputs"]).shape == (24, 5)
    for kind in ("conv", "fc", "bias"):
        authors = np.asarray(out["authors_port"][kind], dtype=np.float64)
        ours = np.asarray(out["trajbench_slope0.01_authors"][kind], dtype=np.float64)
        _assert_close(ours, authors)
        assert not np.allclose(out["trajbench_slope0.3_intended"][kind], authors)
    assert out["trajbench_slope0.3_authors"]["conv"] == out["trajbench_slope0.3_intended"]["conv"]


def test_released_files_give_the_stored_outputs():
    """The authors' real files, when a directory holding them is given in
    TRAJBENCH_WNN_OFFICIAL_DIR (never committed: they have no license), give the stored
    outputs for both slopes and both bias modes."""
    folder = os.environ.get("TRAJBENCH_WNN_OFFICIAL_DIR")
    if not folder:
        pytest.skip("set TRAJBENCH_WNN_OFFICIAL_DIR to a folder with NWNN_{Conv,FC,Bias}_13.pt")
    ref = _stored_outputs()
    files = {
        k: Path(folder) / f"NWNN_{f}_13.pt"
        for k, f in (("conv", "Conv"), ("fc", "FC"), ("bias", "Bias"))
    }
    for path in files.values():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == ref["sha256"][path.name], f"{path} is not the released file"
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert [(k, tuple(v.shape)) for k, v in state.items()] == list(RELEASED_LAYOUT)
    W = np.asarray(ref["inputs"], dtype=np.float32)
    for slope in (0.3, 0.01):
        for mode in ("intended", "authors"):
            model = load_official(
                files["conv"], files["fc"], files["bias"], negative_slope=slope, bias_mode=mode
            )
            for kind in ("conv", "fc", "bias"):
                want = np.asarray(ref["outputs"][f"trajbench_slope{slope}_{mode}"][kind])
                got = model.predict_next(W, kind)
                _assert_close(got, want)
                if slope == 0.01 and mode == "authors":
                    authors = np.asarray(ref["outputs"]["authors_port"][kind])
                    _assert_close(got, authors)


# --------------------------------------------------------------- bad input
def test_missing_file(tmp_path, official):
    paths, _ = official
    with pytest.raises(TrajbenchError, match="does not exist"):
        load_official(tmp_path / "nope.pt", paths["fc"], paths["bias"])


def test_wrong_keys_and_shapes(tmp_path, official):
    paths, _ = official
    state = _random_state(0)
    del state["dense_7.bias"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(
        TrajbenchError, match=r"missing key dense_7.bias \(or dense_7.linear.bias\)"
    ):
        load_official(paths["conv"], tmp_path / "missing.pt", paths["bias"])
    state = _random_state(0)
    del state["dense_5.linear.weight"]
    torch.save(state, tmp_path / "missing_wrapped.pt")
    with pytest.raises(
        TrajbenchError, match=r"missing key dense_5.linear.weight \(or dense_5.weight\)"
    ):
        load_official(paths["conv"], tmp_path / "missing_wrapped.pt", paths["bias"])
    state = _random_state(0)
    state["dense_13.weight"] = torch.zeros(1, 1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(TrajbenchError, match="unexpected key 'dense_13.weight'"):
        load_official(paths["conv"], tmp_path / "extra.pt", paths["bias"])
    state = _random_state(0)
    state["dense_2.linear.weight"] = state["dense_2.weight"].clone()
    torch.save(state, tmp_path / "twice.pt")
    with pytest.raises(
        TrajbenchError,
        match="layer 'dense_2' twice: both 'dense_2.linear.weight' and 'dense_2.weight'",
    ):
        load_official(paths["conv"], tmp_path / "twice.pt", paths["bias"])
    state = _random_state(0)
    state["dense_5.linear.weight"] = torch.zeros(64, 32)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(
        TrajbenchError, match=r"'dense_5.linear.weight' has shape \(64, 32\), expected \(32, 64\)"
    ):
        load_official(paths["conv"], tmp_path / "shape.pt", paths["bias"])
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(TrajbenchError, match="must hold a dict of tensors"):
        load_official(tmp_path / "list.pt", paths["fc"], paths["bias"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrajbenchError, match="not a readable PyTorch state dict"):
        load_official(paths["conv"], paths["fc"], tmp_path / "junk.pt")


def test_bad_kind_and_values(official):
    paths, _ = official
    model = load_official(*paths.values())
    with pytest.raises(TrajbenchError, match="did you mean 'bias'"):
        model.predict_next(_windows(3), "bais")
    with pytest.raises(TrajbenchError, match=r"\(N, 5\)"):
        model.predict_next(np.zeros((3, 4)), "fc")
    with pytest.raises(TrajbenchError, match="finite"):
        model.predict_next(np.full((2, 5), np.nan), "fc")
    with pytest.raises(TrajbenchError, match="bias_mode"):
        load_official(*paths.values(), bias_mode="author")
    with pytest.raises(TrajbenchError, match="'fc' is missing"):
        WNN(checkpoints={"conv": "a", "bias": "b"}).predict(_windows(2), 1)
    with pytest.raises(TrajbenchError, match="steps must be a positive int"):
        WNN(steps=0).fit(TrainingData.from_arrays([np.zeros((20, 2))]))


def test_predict_before_fit():
    from trajbench.forecasting.base import NotFittedError

    with pytest.raises(NotFittedError):
        WNN().predict(_windows(2), 3)
    with pytest.raises(NotFittedError):
        WNN().predict_next(_windows(2), "fc")


# ----------------------------------------------------------------- horizons
def test_horizons_interpolate_then_recurse():
    model = random_wnn(seed=3)
    W = _windows(40, seed=1)
    out = model.predict(W, 12)
    f5 = model.predict_next(W, "fc")
    frac = np.arange(1, 6, dtype=np.float64) / 5
    path1 = W[:, -1:].astype(np.float64) + frac * (f5.astype(np.float64) - W[:, -1])[:, None]
    np.testing.assert_allclose(out[:, :5], path1, rtol=1e-6, atol=1e-6)
    f10 = model.predict_next(path1.astype(np.float32), "fc")
    path2 = f5[:, None].astype(np.float64) + frac * (f10.astype(np.float64) - f5)[:, None]
    np.testing.assert_allclose(out[:, 5:10], path2, rtol=1e-5, atol=1e-6)
    f15 = model.predict_next(path2.astype(np.float32), "fc")
    np.testing.assert_allclose(
        out[:, 10:12], f10[:, None] + frac[:2] * (f15 - f10)[:, None], rtol=1e-5, atol=1e-6
    )
    # horizon 5 is the network's own forecast, and shorter requests are prefixes
    np.testing.assert_array_equal(out[:, 4], f5)
    np.testing.assert_array_equal(model.predict(W, 3), out[:, :3])


def test_kinds_route_to_networks():
    assert [
        network_of(k, layer)
        for k, layer in [
            ("conv", "c.weight"),
            ("linear", "fc.weight"),
            ("bias", "fc.bias"),
            ("norm", "bn.weight"),
            ("norm", "bn.bias"),
            ("embedding", "emb.weight"),
            ("other", "x"),
        ]
    ] == [
        "conv",
        "fc",
        "bias",
        "fc",
        "bias",
        "fc",
        "fc",
    ]
    model = random_wnn(seed=4)
    W = _windows(6, seed=2)
    meta = SeriesMeta(
        kind=np.array(["conv", "linear", "bias", "norm", "norm", "embedding"], dtype=object),
        layer=np.array(
            ["c.weight", "fc.weight", "fc.bias", "ln.weight", "ln.bias", "emb.weight"], dtype=object
        ),
        task=np.full(6, "t", dtype=object),
        stride=np.ones(6, dtype=np.int64),
        first=W[:, 0],
    )
    out = model.predict(W, 5, meta)[:, 4]
    expected = [
        model.predict_next(W[i : i + 1], net)[0]
        for i, net in enumerate(["conv", "fc", "bias", "fc", "bias", "fc"])
    ]
    np.testing.assert_array_equal(out, np.asarray(expected, dtype=np.float32))
    # without meta, default_network decides
    np.testing.assert_array_equal(model.predict(W, 5)[:, 4], model.predict_next(W, "fc"))


def test_chunking_does_not_change_results():
    model = random_wnn(seed=5)
    W = _windows(1000, seed=3)
    full = model.forward_raw(W, "bias")
    model.chunk_rows = 7
    np.testing.assert_array_equal(model.forward_raw(W, "bias"), full)


# ---------------------------------------------------------------- training
def _decay(n_runs: int, n_series: int, seed: int, length: int = 40) -> list[np.ndarray]:
    """Exponential decay toward a target, w_t = w* + (w_0 - w*) exp(-t / tau)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    out = []
    for _ in range(n_runs):
        target = rng.normal(0, 1, n_series)
        start = rng.normal(0, 1, n_series)
        tau = rng.uniform(5, 40, n_series)
        out.append((target + (start - target) * np.exp(-t / tau)).astype(np.float32))
    return out


def test_fit_beats_persistence_on_exponential_decay():
    train = TrainingData.from_arrays(
        _decay(4, 64, seed=0), kinds="linear", validation=_decay(1, 64, seed=1)
    )
    model = WNN(steps=300, batch_size=256, lr=3e-3, eval_every=100, seed=0).fit(train)
    assert model.shared_ == {"conv": "fc", "bias": "fc"}
    held = _decay(1, 256, seed=2)[0]
    ctx = np.ascontiguousarray(held[10:15].T)
    truth = held[15:20].T
    err = np.abs(model.predict(ctx, 5) - truth).mean(axis=0)
    persistence = np.abs(ctx[:, -1:] - truth).mean(axis=0)
    assert (err < 0.5 * persistence).all(), (err, persistence)
    # the validation curve is recorded and ends below persistence's loss
    curve = pd.DataFrame(model.curve_)
    assert list(curve["step"]) == [100, 200, 300]
    assert curve["val_loss"].iloc[-1] < curve["val_persistence"].iloc[-1]


def test_fit_is_seeded():
    train = TrainingData.from_arrays(_decay(2, 16, seed=0), kinds="bias")
    a = WNN(steps=20, seed=1).fit(train)
    b = WNN(steps=20, seed=1).fit(train)
    c = WNN(steps=20, seed=2).fit(train)
    W = _windows(20)
    np.testing.assert_array_equal(a.predict(W, 5), b.predict(W, 5))
    assert not np.array_equal(a.predict(W, 5), c.predict(W, 5))
    assert a.n_samples_ == {"conv": 0, "fc": 0, "bias": 2 * 16 * 31}


def test_conformance():
    check_forecaster(WNN(steps=30, eval_every=10))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_and_load_weights(tmp_path, suffix):
    train = TrainingData.from_arrays(_decay(2, 16, seed=0), kinds="linear")
    model = WNN(steps=10).fit(train)
    path = model.save(tmp_path / f"wnn{suffix}")
    loaded = WNN(weights=str(path))
    assert not loaded.get_tag("needs_fit")
    W = _windows(30)
    np.testing.assert_array_equal(loaded.predict(W, 7), model.predict(W, 7))
    assert loaded.shared_ == {"conv": "fc", "bias": "fc"}
    if suffix == ".safetensors":
        with pytest.raises(TrajbenchError, match="negative_slope=0.3"):
            WNN(weights=str(path), negative_slope=0.01).predict(W, 1)


def test_forecaster_config_parameters(tmp_path, official):
    from trajbench.bench.harness import resolve_forecasters

    paths, _ = official
    (f,) = resolve_forecasters(
        ["wnn"],
        {"wnn": {"checkpoints": {k: str(v) for k, v in paths.items()}, "negative_slope": 0.01}},
    )
    W = _windows(10)
    np.testing.assert_array_equal(
        f.predict(W, 5)[:, 4],
        load_official(*paths.values(), negative_slope=0.01).predict_next(W, "fc"),
    )


# --------------------------------------------------------------------- CLI
@pytest.fixture
def quad_store(tmp_path):
    path = str(tmp_path / "quad.zarr")
    make_quadratic_store(
        path,
        tasks=("quad-a", "quad-b"),
        lrs=(0.02, 0.05, 0.1, 0.2, 0.3),
        seeds=(0,),
        n_snapshots=30,
    )
    return path


def test_cli_train_forecaster(tmp_path, quad_store, capsys):
    from trajbench.bench.splits import assign_splits
    from trajbench.cli import main
    from trajbench.store.reader import open_store

    out = tmp_path / "trained"
    code = main(
        [
            "train-forecaster",
            "wnn",
            quad_store,
            "--out",
            str(out),
            "--seed",
            "3",
            "--steps",
            "4",
            "--eval-every",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    assert "trained wnn" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    splits = assign_splits(open_store(quad_store))
    assert sorted(card["split"]["train_runs"]) == sorted(
        splits.loc[splits.split == "train", "path"]
    )
    assert not set(card["split"]["train_runs"]) & set(splits.loc[splits.split != "train", "path"])
    assert card["seed"] == 3 and card["budget"]["steps_per_network"] == 4
    assert len(card["store"]["sha256"]) == 64 and card["versions"]["torch"]
    curve = pd.read_csv(out / "val_curve.csv")
    assert set(curve.columns) >= {"network", "step", "train_loss", "val_loss", "val_persistence"}
    assert list(curve.loc[curve.network == "fc", "step"]) == [2, 4]
    model = WNN(weights=str(out / card["weights"]))
    assert model.predict(_windows(3), 6).shape == (3, 6)


def test_cli_train_forecaster_bad_input(tmp_path, quad_store, capsys):
    from trajbench.cli import main

    assert main(["train-forecaster", "wnm", quad_store, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (
        "did you mean 'wnn'" in err
        and "Traceback" not in err
        and len(err.strip().splitlines()) == 1
    )
    assert (
        main(
            ["train-forecaster", "wnn", str(tmp_path / "absent.zarr"), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert (
        main(["train-forecaster", "wnn", quad_store, "--out", str(tmp_path / "o"), "--steps", "0"])
        == 2
    )
    assert "steps must be a positive int" in capsys.readouterr().err


def test_harness_trains_and_scores_wnn(tmp_path, quad_store):
    """``trajbench bench`` fits WNN on the store's training split and scores it: the
    result rows exist, are ok, and WNN beats persistence on these smooth runs."""
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.protocol import PROTOCOL

    proto = PROTOCOL.replace(bootstrap=20, horizons=(1, 5, 10))
    result = run_benchmark(
        quad_store,
        ["persistence", WNN(steps=150, lr=3e-3, eval_every=50)],
        None,
        protocol=proto,
        hash_store=False,
        measure_memory=False,
    )
    table = result.table
    rows = table[
        table.forecaster.str.startswith("wnn[")  # named after its non-default parameters
        & (table.metric == "scaled_persistence")
        & (table.task == "all")
        & (table.kind == "all")
        # aggregate rows (fit_seconds, ...) have no horizon: compare with NA as no match
        & (table.horizon.fillna("") == "5")
    ]
    assert len(rows) and (rows.status == "ok").all()
    assert (rows.value < 1.0).all(), rows


def test_train_forecaster_sees_the_benchmarks_training_series(quad_store):
    """`trajbench train-forecaster` and the harness build the training and validation data
    with one function: the same runs and the same (chunk-aware) parameter samples."""
    import dataclasses

    from trajbench import Forecaster
    from trajbench.bench.harness import run_benchmark
    from trajbench.bench.protocol import PROTOCOL
    from trajbench.train_cli import split_training_data

    seen: dict[str, list[tuple[str, list[int]]]] = {}

    class Spy(Forecaster):
        name = "spy"
        tags = {"needs_fit": True}

        def _fit(self, train):
            seen["train"] = [(s.path, list(map(int, s.columns))) for s in train.sources]
            seen["validation"] = [
                (s.path, list(map(int, s.columns))) for s in train.validation.sources
            ]

        def _predict(self, context, horizon, meta):
            return np.repeat(context[:, -1:], horizon, axis=1)

    protocol = dataclasses.replace(PROTOCOL, sample_size=3)  # a real sub-sample of every run
    run_benchmark(
        quad_store, [Spy()], protocol=protocol, seed=5, hash_store=False, measure_memory=False
    )
    train = split_training_data(quad_store, seed=5, protocol=protocol)
    assert seen["train"] and seen["validation"]
    assert [(s.path, list(map(int, s.columns))) for s in train.sources] == seen["train"]
    assert [(s.path, list(map(int, s.columns))) for s in train.validation.sources] == seen[
        "validation"
    ]
    assert all(len(cols) == 3 for _, cols in seen["train"])


def test_declared_layers_are_the_registered_ones():
    """WNNNet's class annotations (for the type checker) name exactly the Dense layers its
    ``__init__`` registers, in the authors' key order."""
    from baselines.wnn import _LAYERS, WNNNet, _Dense

    net = WNNNet()
    names = [name for name, _, _ in _LAYERS]
    assert list(WNNNet.__annotations__) == names == list(net._modules)
    for name, n_in, n_out in _LAYERS:
        layer = getattr(net, name)
        assert isinstance(layer, _Dense) and layer is net._layer(name)
        assert (layer.linear.in_features, layer.linear.out_features) == (n_in, n_out)
