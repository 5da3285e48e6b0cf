"""``param_layout``: kinds, buffers, frozen parameters, tied weights and dtypes, end to end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trajbench
from trajbench import Recorder, open_store
from trajbench.errors import TrajbenchError
from trajbench.store.layout import (
    build_layout,
    infer_kind,
    layout_from_state_dict,
    layout_problems,
    parse_layout,
)


class Zoo(nn.Module):
    """One module of each kind, plus a plain buffer and a frozen parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 4)
        self.ln = nn.LayerNorm(4)
        self.emb = nn.Embedding(6, 4)
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.frozen = nn.Parameter(torch.full((2,), 0.5), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x)).mean(dim=(2, 3))
        return self.ln(self.fc(h)) + self.emb.weight[:1]


class TiedLM(nn.Module):
    """Embedding and output head share one weight (as in GPT-2)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 3)
        self.mid = nn.Linear(3, 3)
        self.head = nn.Linear(3, 7, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mid(self.emb(idx))))


@pytest.mark.micro
def test_kinds_offsets_and_order():
    """Entries follow state_dict order, are contiguous, and carry the owning module's kind."""
    model = Zoo()
    specs = build_layout(model)
    expected_kinds = {
        "frozen": "other",
        "mask": "buffer",
        "conv.weight": "conv",
        "conv.bias": "bias",
        "bn.weight": "norm",
        "bn.bias": "norm",
        "bn.running_mean": "buffer",
        "bn.running_var": "buffer",
        "bn.num_batches_tracked": "buffer",
        "fc.weight": "linear",
        "fc.bias": "bias",
        "ln.weight": "norm",
        "ln.bias": "norm",
        "emb.weight": "embedding",
    }
    assert [s.name for s in specs] == list(model.state_dict().keys())  # "scratch" is not persistent
    assert {s.name: s.kind for s in specs} == expected_kinds
    offset = 0
    for spec, tensor in zip(specs, model.state_dict().values(), strict=True):
        assert spec.offset == offset
        assert spec.shape == tuple(tensor.shape)
        assert spec.numel == tensor.numel()
        offset += spec.numel
    by_name = {s.name: s for s in specs}
    assert by_name["bn.num_batches_tracked"].dtype == "int64"
    assert by_name["bn.num_batches_tracked"].shape == ()
    assert by_name["mask"].dtype == "bool"
    assert by_name["conv.weight"].module == "Conv2d"
    assert by_name["frozen"].trainable is False and by_name["fc.weight"].trainable is True
    assert by_name["bn.running_mean"].trainable is False
    assert layout_problems([s.to_json() for s in specs], offset) == []
    assert parse_layout([s.to_json() for s in specs]) == specs


@pytest.mark.micro
def test_buffers_and_frozen_options():
    """buffers=False drops every buffer; frozen=False drops requires_grad=False parameters."""
    model = Zoo()
    names = lambda **kw: [s.name for s in build_layout(model, **kw)]  # noqa: E731
    buffer_names = {n for n, _ in model.named_buffers()}
    assert not set(names(buffers=False)) & buffer_names
    assert "frozen" in names(buffers=False)
    assert "frozen" not in names(frozen=False)
    assert "bn.running_mean" in names(frozen=False)
    assert names(buffers=False, frozen=False) == [
        n for n, p in model.named_parameters() if p.requires_grad
    ]
    specs = build_layout(model, buffers=False, frozen=False)
    assert [s.offset for s in specs] == [sum(s.numel for s in specs[:i]) for i in range(len(specs))]


@pytest.mark.micro
def test_empty_model_and_bad_dtype_raise():
    """A model with nothing to record, or a complex tensor, raises a TrajbenchError."""
    with pytest.raises(TrajbenchError, match="no tensors"):
        build_layout(nn.ReLU())
    model = nn.Module()
    model.register_buffer("z", torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(TrajbenchError, match="complex64"):
        build_layout(model)
    with pytest.raises(TrajbenchError, match="Module"):
        build_layout({"w": torch.zeros(2)})


@pytest.mark.micro
def test_infer_kind_from_names_without_module():
    """A bare state dict is classified by name and rank."""
    assert infer_kind("layer1.0.conv1.weight", (8, 3, 3, 3)) == "conv"
    assert infer_kind("fc.weight", (4, 3)) == "linear"
    assert infer_kind("fc.bias", (4,)) == "bias"
    assert infer_kind("transformer.ln_f.weight", (4,)) == "norm"
    assert infer_kind("transformer.wte.weight", (50, 4)) == "embedding"
    assert infer_kind("scale", ()) == "other"
    assert infer_kind("bn1.running_mean", (4,), is_buffer=True) == "buffer"
    specs = layout_from_state_dict({"a.weight": torch.zeros(2, 3), "bn.running_var": torch.ones(3)})
    assert [(s.kind, s.offset, s.trainable) for s in specs] == [
        ("linear", 0, True),
        ("buffer", 6, False),
    ]


@pytest.mark.micro
def test_batchnorm_stats_restore_eval_outputs(store_path):
    """Recorded BatchNorm running stats restore a fresh model whose eval outputs match exactly."""
    torch.manual_seed(0)
    model = Zoo()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, 2, 6, 6)
    outputs = []
    with Recorder(store_path, "bn", model, snapshots_per_chunk=2) as rec:
        for _ in range(3):
            model.train()
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            model.eval()
            with torch.no_grad():
                outputs.append(model(x).clone())
            rec.snapshot()
    run = open_store(store_path).run("bn")
    assert run.layer("bn.num_batches_tracked")[:].tolist() == [1, 2, 3]
    for i, expected in enumerate(outputs):
        fresh = Zoo()
        fresh.load_state_dict(run.state_dict(i), strict=True)
        assert fresh.bn.num_batches_tracked.dtype == torch.int64
        assert int(fresh.bn.num_batches_tracked) == i + 1
        assert fresh.mask.dtype == torch.bool and fresh.mask.tolist() == [True, False, True]
        assert not torch.equal(fresh.bn.running_mean, torch.zeros(3))
        fresh.eval()
        with torch.no_grad():
            assert torch.equal(fresh(x), expected)


@pytest.mark.micro
def test_tied_weights_stored_once_and_restored(store_path, clone_state):
    """Tied weights take one slot with an alias; state_dict() restores both keys (strict load)."""
    torch.manual_seed(1)
    model = TiedLM()
    specs = build_layout(model)
    assert [s.name for s in specs] == ["emb.weight", "mid.weight", "mid.bias"]
    assert specs[0].aliases == ("head.weight",)
    n_unique = sum(p.numel() for p in model.parameters())  # parameters() de-duplicates
    assert sum(s.numel for s in specs) == n_unique == 21 + 9 + 3
    oracle = []
    with Recorder(store_path, "tied", model) as rec:
        for _ in range(3):
            with torch.no_grad():
                model.emb.weight.add_(1.0)
                model.mid.bias.mul_(-2.0)
            oracle.append(clone_state(model))
            rec.snapshot()
    run = open_store(store_path).run("tied")
    assert run.n_params == n_unique
    assert run.spec("head.weight").name == "emb.weight"
    assert torch.equal(torch.from_numpy(run.layer("head.weight")[2]), oracle[2]["head.weight"])
    idx = torch.tensor([0, 3, 6])
    for i, expected in enumerate(oracle):
        state = run.state_dict(i)
        assert set(state) == set(expected)
        for key, value in expected.items():
            assert torch.equal(state[key], value), key
        fresh = TiedLM()
        fresh.load_state_dict(state, strict=True)
        assert fresh.head.weight is fresh.emb.weight
        reference = TiedLM()
        reference.load_state_dict(expected)
        with torch.no_grad():
            assert torch.equal(fresh(idx), reference(idx))


@pytest.mark.micro
@pytest.mark.parametrize(
    "dtype, values",
    [
        (torch.int64, [0, -5, 2**24]),
        (torch.int32, [7, -8, 123456]),
        (torch.int16, [-300, 300, 0]),
        (torch.uint8, [0, 255, 17]),
        (torch.int8, [-128, 127, 0]),
        (torch.bool, [True, False, True]),
        (torch.float16, [0.5, -65504.0, 1e-3]),
        (torch.bfloat16, [1.5, -3.0e38, 7.0]),
        (torch.float64, [0.25, -1.5, 3.0]),  # values float32 holds exactly
    ],
)
def test_buffer_dtypes_restored(store_path, dtype, values):
    """Integer, boolean and low/high-precision tensors come back with their dtype and values."""
    model = nn.Linear(2, 1)
    model.register_buffer("buf", torch.tensor(values, dtype=dtype))
    with Recorder(store_path, "dt", model) as rec:
        rec.snapshot()
    state = open_store(store_path).run("dt").state_dict(0)
    assert state["buf"].dtype == dtype
    assert torch.equal(state["buf"], model.buf)
    assert math.prod(state["buf"].shape) == len(values)


@pytest.mark.micro
def test_recording_without_buffers_or_frozen(store_path, clone_state):
    """buffers=False / frozen=False runs hold only the trainable parameters, restored exactly."""
    torch.manual_seed(2)
    model = Zoo()
    expected = clone_state(model)
    with Recorder(store_path, "slim", model, buffers=False, frozen=False) as rec:
        rec.snapshot()
    run = open_store(store_path).run("slim")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert run.layout["name"].tolist() == trainable
    assert run.n_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    state = run.state_dict(0)
    assert list(state) == trainable
    for name in trainable:
        assert torch.equal(state[name], expected[name])
    fresh = Zoo()
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    # (BatchNorm quietly defaults a missing num_batches_tracked, so it is not reported missing)
    assert (
        set(missing) == set(expected) - set(trainable) - {"bn.num_batches_tracked"}
        and not unexpected
    )


@pytest.mark.micro
def test_non_finite_buffer_and_extra_state_are_skipped_with_a_warning(store_path) -> None:
    """A -inf attention mask buffer must not mark the run diverged; it is left out, loudly."""

    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.register_buffer("mask", torch.full((3, 3), float("-inf")).triu(1))

        def get_extra_state(self) -> dict:
            return {"note": "not a tensor"}

        def set_extra_state(self, state: dict) -> None:
            pass

    model = Masked()
    with pytest.warns(trajbench.TrajbenchWarning) as record:
        rec = trajbench.Recorder(store_path, "masked", model)
    text = " ".join(str(w.message) for w in record)
    assert "'mask'" in text and "_extra_state" in text
    with rec:
        assert rec.snapshot(step=0)
    run = trajbench.open_store(store_path).run("masked")
    assert run.status == "complete"
    assert [s.name for s in run.specs] == ["fc.weight", "fc.bias"]
    model.load_state_dict(run.state_dict(0), strict=False)
