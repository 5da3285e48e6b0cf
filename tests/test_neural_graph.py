"""Neural graphs (trajbench/forecasting/neural_graph.py): hand counts for small models,
and NiNo's own generic NeuralGraph (run locally; its sizes and edge checksums are in
tests/data/nino_reference.json) for every task of the zoo that builds without data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from trajbench.errors import TrajbenchError
from trajbench.forecasting.neural_graph import EDGE_TYPES, laplacian_positions, neural_graph
from trajbench.store.layout import ParamSpec

META = json.loads((Path(__file__).parent / "data" / "nino_reference.json").read_text())


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()


def test_logreg_by_hand() -> None:
    # 64 inputs, 1 bias node, 10 outputs; 640 + 10 edges, then 75 self-loops
    g = neural_graph([("weight", (10, 64)), ("bias", (10,))])
    assert (g.n_nodes, g.n_param_edges, g.n_edges) == (75, 650, 725)
    src, dst = g.edge_index
    # in-major: edge i*10+o goes input i -> output node 65+o
    assert (src[13], dst[13]) == (1, 65 + 3)
    assert (src[640:650] == 64).all() and (dst[640:650] == np.arange(65, 75)).all()
    assert (g.edge_type[:640] == EDGE_TYPES["fc"]).all() and (
        g.edge_type[640:650] == EDGE_TYPES["other"]
    ).all()
    assert (src[650:] == dst[650:]).all() and (g.edge_type[650:] == EDGE_TYPES["self_loop"]).all()


def test_cnn_with_batchnorm_by_hand() -> None:
    g = neural_graph(
        [
            ("c.weight", (4, 2, 3, 3)),
            ("c.bias", (4,)),
            ("bn.weight", (4,)),
            ("bn.bias", (4,)),
            ("fc.weight", (3, 4)),
            ("fc.bias", (3,)),
        ]
    )
    # nodes: 2 inputs, 3 vector nodes (bias, bn weight, bn bias), 4 channels, 1 bias, 3 outputs
    assert g.n_nodes == 2 + 3 + 4 + 1 + 3 and g.max_feat_size == 9
    assert g.n_param_edges == 8 + 4 * 3 + 12 + 3
    types = [t.edge_type for t in g.tensors]
    assert types == [3, 2, 4, 2, 1, 2]
    values = np.arange(g.n_params, dtype=np.float32)[:, None] * np.ones((1, 5), np.float32)
    feats = g.edge_features(values)
    # conv edge in 1 -> out 2 holds kernel (2, 1) row-major in slots 0..8
    w = values[:72, 0].reshape(4, 2, 9)
    np.testing.assert_array_equal(feats[1 * 4 + 2, :, 0], w[2, 1])
    assert (feats[g.n_param_edges :, 0] == 2.0).all() and (feats[g.n_param_edges :, 1:] == 0).all()
    assert (feats[72 // 9 :, 1:, :][: g.n_param_edges - 8] == 0).all()  # fc/bias/bn: slot 0 only
    np.testing.assert_array_equal(g.parameters_from_edges(feats[:, :, 2]), values[:, 2])


@pytest.mark.parametrize("task", sorted(t for t in META["graphs"] if not t.startswith("fixture-")))
def test_zoo_task_matches_nino_generic_graph(task: str) -> None:
    from trajbench.store.layout import layout_from_state_dict
    from trajbench.tasks import get_task

    model = get_task(task).make_model()
    layout = layout_from_state_dict(model.state_dict())
    params = [s for s in layout if s.kind != "buffer"]
    assert [s.name for s in params] == [n for n, _ in model.named_parameters()]
    g = neural_graph(layout)
    ref = META["graphs"][task]
    assert (g.n_nodes, g.n_edges, g.max_feat_size) == (
        ref["n_nodes"],
        ref["n_edges"],
        ref["max_feat_size"],
    )
    assert _sha(g.edge_index) == ref["edge_index_sha256"]
    assert _sha(g.edge_type) == ref["edge_type_sha256"]
    assert g.n_params == sum(p.numel() for p in model.parameters())


def test_conv1d_kernel_uses_three_slots_and_type_other() -> None:
    g = neural_graph([("conv.weight", (4, 1, 3)), ("conv.bias", (4,)), ("fc.weight", (2, 4))])
    assert g.max_feat_size == 3 and g.tensors[0].edge_type == EDGE_TYPES["other"]


def test_positions_are_laplacian_eigenvectors() -> None:
    g = neural_graph([("0.weight", (3, 4)), ("0.bias", (3,)), ("2.weight", (2, 3))])
    pos = laplacian_positions(g, k=8)
    assert pos.shape == (g.n_nodes, 8)
    n = g.n_nodes
    a = np.zeros((n, n))
    keep = g.edge_index[0] != g.edge_index[1]
    a[g.edge_index[0, keep], g.edge_index[1, keep]] = 1
    a = np.maximum(a, a.T)
    d = a.sum(1) ** -0.5
    lap = np.eye(n) - d[:, None] * a * d[None, :]
    vals = np.linalg.eigvalsh(lap)
    for j in range(8):
        v = pos[:, j].astype(np.float64)
        lam = v @ lap @ v / (v @ v)
        np.testing.assert_allclose(lap @ v, lam * v, atol=1e-5)
        np.testing.assert_allclose(lam, vals[j + 1], atol=1e-5)


def test_bad_input() -> None:
    with pytest.raises(TrajbenchError, match="at least one parameter"):
        neural_graph([])
    with pytest.raises(TrajbenchError, match="shape"):
        neural_graph([("scale", ())])
    spec = ParamSpec(name="w", shape=(2, 2), offset=0, numel=4, kind="buffer")
    with pytest.raises(TrajbenchError, match="at least one parameter"):
        neural_graph([spec])
