"""Neural graphs: a model's parameters as the edges of a graph of its neurons.

A graph forecaster (NiNo, ``baselines/nino.py``) sees a model as a directed graph whose
nodes are neurons and whose edges carry the parameters. :func:`neural_graph` builds the
graph NiNo's *generic* construction builds (Knyazev et al., ICLR 2025; the rules below were
checked against github.com/SamsungSAILMontreal/nino @84fb0cf, ``graph/graph.py``) from
nothing but the ``(name, shape)`` list of the parameters in ``named_parameters`` order,
which a run's ``param_layout`` holds (buffers are not part of the graph). The full
description, and what it means for each task of the zoo, is ``docs/neural-graphs.md``.

Rules (every weight is read as ``(out, in, *kernel)``, the torch layout):

* **Nodes.** The first tensor's ``in`` inputs; then, per weight layer, one node per 1-D
  tensor that follows it (a bias, or a norm's weight and bias), then its ``out`` neurons.
  A following weight's inputs are the nodes from where the previous layer's neurons start;
  when its ``in`` is larger (a flatten, ``conv -> fc``) the extra inputs are new nodes.
* **Edges**, in parameter order: a weight gives ``in x out`` edges ``in_i -> out_o`` at
  position ``i * out + o`` (in-major: transposed relative to torch storage); a 1-D tensor
  gives edges from its node to each of the ``out`` neurons. One self-loop per node is
  appended last, in node order.
* **Types**: a 1-D ``*.weight`` is 4 (norm), a 4-D tensor 3 (conv), a 2-D tensor 1 (fc),
  everything else 2 (biases, and 3-D ``conv1d`` weights, which NiNo's generic graph does
  not single out); self-loops 13.
* **Features**: ``max_feat_size`` slots per edge, the largest ``prod(shape[2:])`` (9 for
  3x3 kernels, 3 for a 1-d kernel of 3, 1 for fc-only models). A kernel fills slots
  row-major; fc, bias and norm values use slot 0; self-loops hold 2.0 in slot 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from trajbench.errors import TrajbenchError
from trajbench.store.layout import ParamSpec

__all__ = [
    "EDGE_TYPES",
    "GraphTensor",
    "NeuralGraph",
    "neural_graph",
    "laplacian_positions",
]

#: Edge type codes of NiNo's generic neural graph.
EDGE_TYPES: dict[str, int] = {"fc": 1, "other": 2, "conv": 3, "norm": 4, "self_loop": 13}
_SELF_LOOP_VALUE = 2.0  # slot 0 of a self-loop, in NiNo's scaled space
_DENSE_NODES = 300  # dense eigh up to this many nodes (NiNo: 100), sparse eigsh above


def _edge_type(name: str, shape: tuple[int, ...]) -> int:
    if len(shape) == 1 and name.endswith(".weight"):
        return EDGE_TYPES["norm"]
    if len(shape) == 4:
        return EDGE_TYPES["conv"]
    if len(shape) == 2:
        return EDGE_TYPES["fc"]
    return EDGE_TYPES["other"]


@dataclass(frozen=True)
class GraphTensor:
    """Where one parameter tensor lives in a :class:`NeuralGraph`.

    ``offset`` indexes the concatenated parameter vector (parameters only, in order);
    ``edges`` is the ``[start, stop)`` range of its edges; ``n_in``/``n_out`` the edge
    grid (``in``-major); ``slots`` the feature slots it fills (kernel numel, else 1)."""

    name: str
    shape: tuple[int, ...]
    offset: int
    edge_type: int
    start: int
    stop: int
    n_in: int
    n_out: int
    slots: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class NeuralGraph:
    """The neural graph of one model (see the module docstring for the rules).

    ``edge_index`` is ``(2, n_edges)`` int64 ``(source, target)`` with the parameter edges
    first and the ``n_nodes`` self-loops last; ``edge_type`` ``(n_edges,)`` int64."""

    tensors: tuple[GraphTensor, ...]
    edge_index: np.ndarray
    edge_type: np.ndarray
    n_nodes: int
    max_feat_size: int

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def n_param_edges(self) -> int:
        """Edges that carry parameters (all but the self-loops)."""
        return self.n_edges - self.n_nodes

    @property
    def n_params(self) -> int:
        return sum(t.numel for t in self.tensors)

    def __repr__(self) -> str:
        return (
            f"NeuralGraph(tensors={len(self.tensors)}, nodes={self.n_nodes}, "
            f"edges={self.n_edges}, max_feat_size={self.max_feat_size})"
        )

    def edge_features(self, values: np.ndarray) -> np.ndarray:
        """``(n_edges, max_feat_size, T)`` edge features of ``values`` ``(n_params, T)``
        (the concatenated parameters, one column per state). Unused slots are 0;
        self-loops hold 2.0 in slot 0 at every ``t``."""
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[0] != self.n_params:
            raise TrajbenchError(
                f"edge_features needs values of shape ({self.n_params}, T), but got {values.shape}"
            )
        t_len = values.shape[1]
        out = np.zeros((self.n_edges, self.max_feat_size, t_len), dtype=values.dtype)
        for t in self.tensors:
            w = values[t.offset : t.offset + t.numel].reshape(t.n_out, -1, t.slots, t_len)
            # torch (out, in, k) -> graph (in, out, k): edges are in-major
            out[t.start : t.stop, : t.slots] = w.transpose(1, 0, 2, 3).reshape(-1, t.slots, t_len)
        out[self.n_param_edges :, 0, :] = _SELF_LOOP_VALUE
        return out

    def parameters_from_edges(self, edge_values: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`edge_features` for one state: ``(n_edges, max_feat_size)``
        (or more rows; self-loops are ignored) to the ``(n_params,)`` parameter vector."""
        edge_values = np.asarray(edge_values)
        if edge_values.ndim != 2 or edge_values.shape[0] < self.n_param_edges:
            raise TrajbenchError(
                f"parameters_from_edges needs ({self.n_edges}, {self.max_feat_size}) values, but got {edge_values.shape}"
            )
        out = np.empty(self.n_params, dtype=edge_values.dtype)
        for t in self.tensors:
            w = edge_values[t.start : t.stop, : t.slots].reshape(t.n_in, t.n_out, t.slots)
            out[t.offset : t.offset + t.numel] = w.transpose(1, 0, 2).reshape(-1)
        return out


def _as_pairs(
    params: Iterable[ParamSpec] | Iterable[tuple[str, Sequence[int]]],
) -> list[tuple[str, tuple[int, ...]]]:
    pairs: list[tuple[str, tuple[int, ...]]] = []
    for p in params:
        if isinstance(p, ParamSpec):
            if p.kind == "buffer":
                continue  # buffers are not edges of the graph
            pairs.append((p.name, tuple(int(s) for s in p.shape)))
        else:
            name, shape = p
            pairs.append((str(name), tuple(int(s) for s in shape)))
    return pairs


def neural_graph(
    params: Iterable[ParamSpec] | Iterable[tuple[str, Sequence[int]]],
) -> NeuralGraph:
    """The neural graph of a model from its parameters in ``named_parameters`` order:
    :class:`~trajbench.ParamSpec` entries (a run's ``param_layout``; buffers are skipped)
    or ``(name, shape)`` pairs. Scalars (shape ``()``) have no edges, as in NiNo, and are
    rejected (a forecaster could not write them back)."""
    pairs = _as_pairs(params)
    if not pairs:
        raise TrajbenchError("neural_graph needs at least one parameter tensor, but got none")
    # First pass: each tensor's row (source) and column (target) node ranges, before the
    # columns are shifted to make room for the bias/norm nodes of each neuron block.
    rows: list[tuple[int, int]] = []
    cols: list[tuple[int, int]] = []
    blocks: dict[int, int] = {}  # column start -> 1-D tensors attached (insertion order)
    block_of: list[int] = []
    r_off = c_off = 0
    max_feat = 1
    for layer, (name, shape) in enumerate(pairs):
        if len(shape) == 0 or any(s < 1 for s in shape):
            raise TrajbenchError(
                f"neural_graph: parameter '{name}' has shape {shape}; a neural graph needs tensors with at least one dimension and no empty one"
            )
        n_out = shape[0]
        n_in = shape[1] if len(shape) > 1 else 1
        if len(shape) == 1:
            c_off = max(0, c_off - n_out)  # a bias/norm attaches to the previous neurons
        elif layer == 0:
            c_off = n_in
        rows.append((r_off, n_in))
        cols.append((c_off, n_out))
        blocks.setdefault(c_off, 0)
        blocks[c_off] += 1 if len(shape) == 1 else 0
        block_of.append(c_off)
        if len(shape) > 2:
            max_feat = max(max_feat, int(np.prod(shape[2:])))
        r_off += n_in
        c_off += n_out
    # Second pass: shift the columns of each block by the 1-D nodes up to and including it.
    shift: dict[int, int] = {}
    total = 0
    for c0, n_vec in blocks.items():
        total += n_vec
        shift[c0] = total
    # Edges are grouped by module (the name before the last dot), in first-seen order.
    groups: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(pairs):
        # NiNo's module key, name[:rfind(".")], which for a dot-less name drops its last
        # character: kept as it is, since it decides the grouping
        groups.setdefault(name[: name.rfind(".")], []).append(i)
    order = [i for members in groups.values() for i in members]
    starts = np.zeros(len(pairs), dtype=np.int64)
    pos = 0
    for i in order:
        starts[i] = pos
        pos += rows[i][1] * cols[i][1]
    n_param_edges = pos
    src = np.empty(n_param_edges, dtype=np.int64)
    dst = np.empty(n_param_edges, dtype=np.int64)
    types = np.empty(n_param_edges, dtype=np.int64)
    tensors: list[GraphTensor] = []
    offset = 0
    for i, (name, shape) in enumerate(pairs):
        (r0, n_in), (c0, n_out) = rows[i], cols[i]
        c0 += shift[block_of[i]]
        s, e = int(starts[i]), int(starts[i] + n_in * n_out)
        src[s:e] = np.repeat(np.arange(r0, r0 + n_in, dtype=np.int64), n_out)
        dst[s:e] = np.tile(np.arange(c0, c0 + n_out, dtype=np.int64), n_in)
        etype = _edge_type(name, shape)
        types[s:e] = etype
        slots = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        tensors.append(GraphTensor(name, shape, offset, etype, s, e, n_in, n_out, slots))
        offset += int(np.prod(shape))
    n_nodes = int(max(src.max(), dst.max())) + 1
    loops = np.arange(n_nodes, dtype=np.int64)
    edge_index = np.stack([np.concatenate([src, loops]), np.concatenate([dst, loops])])
    edge_type = np.concatenate([types, np.full(n_nodes, EDGE_TYPES["self_loop"], dtype=np.int64)])
    return NeuralGraph(tuple(tensors), edge_index, edge_type, n_nodes, max_feat)


def laplacian_positions(graph: NeuralGraph, k: int = 8, seed: int = 0) -> np.ndarray:
    """``(n_nodes, k)`` float32 Laplacian eigenvector positions of ``graph``, as NiNo's
    (PyG ``AddLaplacianEigenvectorPE``): the eigenvectors 1..k (by ascending eigenvalue)
    of ``L = I - D^-1/2 A D^-1/2`` of the undirected graph without self-loops, each
    multiplied by a random sign (drawn from ``seed``; NiNo draws them from torch's global
    generator). Dense ``eigh`` up to 300 nodes (NiNo: below 100), ``scipy.sparse.linalg.eigsh``
    from a start vector drawn from ``seed`` above, so the result is repeatable. The eigenvalue 1 of layered graphs is highly degenerate, so columns past the
    first few are an arbitrary basis of its eigenspace: positions match NiNo's only up to
    that choice (a test injects NiNo's own). Graphs with ``n_nodes <= k`` get zero
    columns for the missing eigenvectors."""
    import scipy.sparse as sp

    n = graph.n_nodes
    keep = graph.edge_index[0] != graph.edge_index[1]
    src, dst = graph.edge_index[0, keep], graph.edge_index[1, keep]
    adj = sp.coo_matrix(
        (
            np.ones(2 * len(src), dtype=np.float32),
            (np.concatenate([src, dst]), np.concatenate([dst, src])),
        ),
        shape=(n, n),
    ).tocsr()
    adj.data[:] = 1.0  # duplicate (u, v) entries count once, as after ToUndirected
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    lap = sp.identity(n, dtype=np.float32, format="csr") - sp.diags(inv) @ adj @ sp.diags(inv)
    n_vec = min(k + 1, n)
    rng = np.random.default_rng(seed)
    if n <= _DENSE_NODES:
        vals, vecs = np.linalg.eigh(lap.toarray().astype(np.float64))
    else:
        from scipy.sparse.linalg import eigsh

        # a fixed start vector: ARPACK's default is random, which would make the
        # positions (and the forecast) differ from one call to the next
        v0 = rng.standard_normal(n)
        vals, vecs = eigsh(lap.astype(np.float64), k=n_vec, which="SA", tol=1e-6, v0=v0)
    vecs = np.real(vecs[:, np.argsort(vals, kind="stable")])[:, 1:n_vec]
    out = np.zeros((n, k), dtype=np.float32)
    signs = rng.integers(0, 2, size=k) * 2 - 1
    out[:, : vecs.shape[1]] = vecs * signs[: vecs.shape[1]]
    return out
