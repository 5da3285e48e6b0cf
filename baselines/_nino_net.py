"""The NiNo and WNN+ networks (inference only), as functions of a flat weight dict.

Written from the paper (Knyazev et al., ICLR 2025) and the facts in ``docs/baselines.md``
(checked by running github.com/SamsungSAILMontreal/nino @84fb0cf); no code of theirs. The
weight keys are the names of the released checkpoints' ``state_dict`` (so those load as
they are, and our own files use the same names):

* both: ``layer_embed.weight`` (15, hid) edge-type embeddings, ``edge_proj.fc.0.*``
  (the input projection of the 5 scaled states; ``(hid, 9 * 5)`` for NiNo, ``(hid, 5)`` for WNN+);
* NiNo: ``node_proj.fc.0.*`` (8 -> hid, of the Laplacian positions), per message-passing layer
  ``gnn.convs.{i}.{edge_encoder,pre_nns.0.0,post_nns.0.0,lin}.*`` and
  ``gnn.edge_update.{i}.{lin_e,lin_s,lin_t,lin1}.*``, and the head ``edge_out.fc.{0,2}.*``
  (hid -> hid -> 9 x 40);
* WNN+: ``edge_mlp.fc.{0,2,4,6}.*`` (hid -> hid -> hid -> hid -> 40).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from trajbench.errors import TrajbenchError, did_you_mean

SEQ_LEN = 40  # DMS outputs: k = 1..40
CTX = 5  # states in
MAX_FEAT = 9  # feature slots of the released NiNo (3x3 kernels)
N_EDGE_TYPES = 15
LPE = 8
N_CONVS = 3  # message-passing layers held; only the first 2 affect the output


def _linear_keys(prefix: str, n_in: int, n_out: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (n_out, n_in), f"{prefix}.bias": (n_out,)}


def expected_keys(gnn: bool, hid: int = 128) -> dict[str, tuple[int, ...]]:
    """Every key (with its shape) of a NiNo (``gnn=True``) or WNN+ weight dict."""
    keys: dict[str, tuple[int, ...]] = {"layer_embed.weight": (N_EDGE_TYPES, hid)}
    if not gnn:
        keys.update(_linear_keys("edge_proj.fc.0", CTX, hid))
        for j, n_out in ((0, hid), (2, hid), (4, hid), (6, SEQ_LEN)):
            keys.update(_linear_keys(f"edge_mlp.fc.{j}", hid, n_out))
        return keys
    keys.update(_linear_keys("node_proj.fc.0", LPE, hid))
    keys.update(_linear_keys("edge_proj.fc.0", MAX_FEAT * CTX, hid))
    keys.update(_linear_keys("edge_out.fc.0", hid, hid))
    keys.update(_linear_keys("edge_out.fc.2", hid, MAX_FEAT * SEQ_LEN))
    for i in range(N_CONVS):
        p = f"gnn.convs.{i}"
        keys.update(_linear_keys(f"{p}.edge_encoder", hid, 2 * hid))
        keys.update(_linear_keys(f"{p}.pre_nns.0.0", 2 * hid, hid))
        keys.update(_linear_keys(f"{p}.post_nns.0.0", 2 * hid, hid))
        keys.update(_linear_keys(f"{p}.lin", hid, hid))
    for i in range(N_CONVS - 1):
        for name in ("lin_e", "lin_s", "lin_t", "lin1"):
            keys.update(_linear_keys(f"gnn.edge_update.{i}.{name}", hid, hid))
    return keys


def check_weights(
    state: Mapping[str, torch.Tensor], gnn: bool, what: str
) -> dict[str, torch.Tensor]:
    """``state`` as float32 tensors, after checking its keys and shapes (one-line errors)."""
    hid = int(state["layer_embed.weight"].shape[1]) if "layer_embed.weight" in state else 128
    keys = expected_keys(gnn, hid)
    kind = "NiNo (GNN)" if gnn else "WNN+ (MLP)"
    for key, shape in keys.items():
        if key not in state:
            raise TrajbenchError(f"{what} is not a {kind} weight dict: missing key '{key}'")
        if tuple(state[key].shape) != shape:
            raise TrajbenchError(
                f"{what}: '{key}' has shape {tuple(state[key].shape)}, expected {shape}"
            )
    extra = sorted(k for k in state if k not in keys)
    if extra:
        raise TrajbenchError(
            f"{what} has unexpected key '{extra[0]}'{did_you_mean(extra[0], list(keys))} for a {kind} weight dict"
        )
    return {k: state[k].detach().to(torch.float32).contiguous() for k in keys}


def random_weights(gnn: bool, seed: int, hid: int = 128) -> dict[str, torch.Tensor]:
    """Weights (and biases) drawn from ``seed``, N(0, 0.1): for tests only. (NiNo's own
    initialisation, N(0, 0.02) and zero biases, predicts changes so small that a
    comparison would mostly measure float32 rounding.)"""
    # numpy's generator: the same numbers on every platform and torch version, so a
    # fixture made from them (tests/data/nino_reference.npz) stays valid
    rng = np.random.default_rng(int(seed))
    return {
        key: torch.from_numpy((rng.standard_normal(shape) * 0.1).astype(np.float32))
        for key, shape in expected_keys(gnn, hid).items()
    }


def _lin(w: Mapping[str, torch.Tensor], prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w[f"{prefix}.weight"], w[f"{prefix}.bias"])


def wnn_plus_delta(
    w: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    types: torch.Tensor,
    ks: list[int],
    chunk: int = 1 << 16,
) -> torch.Tensor:
    """WNN+: ``(len(ks), N)`` scaled deltas of ``N`` scalars from their 5 scaled states
    ``x (N, 5)`` and edge types ``types (N,)``: per scalar, ``edge_proj + layer_embed[type]``,
    3 x (Linear, SiLU) and the DMS output rows ``k - 1``."""
    rows = torch.as_tensor([k - 1 for k in ks], dtype=torch.long)
    w_out, b_out = w["edge_mlp.fc.6.weight"][rows], w["edge_mlp.fc.6.bias"][rows]
    out = torch.empty((len(ks), len(x)), dtype=torch.float32)
    for s in range(0, len(x), chunk):
        h = _wnn_plus_hidden(w, x[s : s + chunk], types[s : s + chunk])
        out[:, s : s + chunk] = F.linear(h, w_out, b_out).T
    return out


def _wnn_plus_hidden(
    w: Mapping[str, torch.Tensor], x: torch.Tensor, types: torch.Tensor
) -> torch.Tensor:
    """WNN+ up to its output layer: ``edge_proj(x) + layer_embed[type]``, then 3 x
    (Linear, SiLU); shared by prediction (chunked, the asked rows of the output layer) and
    training (every row, with autograd)."""
    h = _lin(w, "edge_proj.fc.0", x) + w["layer_embed.weight"][types]
    h = F.silu(_lin(w, "edge_mlp.fc.0", h))
    h = F.silu(_lin(w, "edge_mlp.fc.2", h))
    return F.silu(_lin(w, "edge_mlp.fc.4", h))


def nino_delta(
    w: Mapping[str, torch.Tensor],
    feats: torch.Tensor,
    edge_index: torch.Tensor,
    types: torch.Tensor,
    pos: torch.Tensor,
    n_nodes: int,
    ks: list[int],
    chunk: int = 1 << 16,
) -> torch.Tensor:
    """NiNo's GNN: ``(len(ks), E, F)`` scaled deltas of the edges ``feats (E, F, 5)``.

    Edge embedding ``e = edge_proj(feats flattened f*5+t) + layer_embed[type]`` (the input
    projection cut to its first ``F * 5`` columns when ``F < 9``), node embedding
    ``x = node_proj(pos)``; two message-passing layers, each: ``(scale, shift) =
    edge_encoder(e)``, messages ``scale * pre_nn([x_dst, x_src]) + shift`` averaged into
    each target, ``x = SiLU(lin(post_nn([x, mean])))``, then the edge update ``e =
    lin1(SiLU(lin_e(e) + lin_s(x)_src + lin_t(x)_dst))``. (NiNo's third layer updates only
    the nodes, which the output never reads.) Head: Linear, SiLU, and the DMS rows
    ``(f, k - 1)`` of the last Linear (its outputs are ``9 x 40``, slot-major)."""
    n_edges, n_feat, ctx = feats.shape
    hid = w["layer_embed.weight"].shape[1]
    src, dst = edge_index[0], edge_index[1]
    w_in = w["edge_proj.fc.0.weight"][:, : n_feat * ctx]
    e = torch.empty((n_edges, hid), dtype=torch.float32)
    flat = feats.reshape(n_edges, n_feat * ctx)
    for s in range(0, n_edges, chunk):
        e[s : s + chunk] = F.linear(flat[s : s + chunk], w_in, w["edge_proj.fc.0.bias"])
        e[s : s + chunk] += w["layer_embed.weight"][types[s : s + chunk]]
    x = _lin(w, "node_proj.fc.0", pos)
    count = torch.bincount(dst, minlength=n_nodes).clamp_min(1).to(torch.float32)[:, None]
    for i in range(N_CONVS - 1):
        p = f"gnn.convs.{i}"
        agg = torch.zeros((n_nodes, hid), dtype=torch.float32)
        # pre_nn([x_dst, x_src]) is linear: project the nodes once, then gather per edge
        # (equal up to float rounding; saves a (E, 256) x (256, 128) product per layer)
        w_pre = w[f"{p}.pre_nns.0.0.weight"]
        pre_dst = F.linear(x, w_pre[:, :hid], w[f"{p}.pre_nns.0.0.bias"])
        pre_src = F.linear(x, w_pre[:, hid:])
        for s in range(0, n_edges, chunk):
            d, r = dst[s : s + chunk], src[s : s + chunk]
            m = pre_dst[d] + pre_src[r]
            scale, shift = _lin(w, f"{p}.edge_encoder", e[s : s + chunk]).chunk(2, dim=1)
            agg.index_add_(0, d, scale * m + shift)
        agg /= count
        x = F.silu(_lin(w, f"{p}.lin", _lin(w, f"{p}.post_nns.0.0", torch.cat([x, agg], dim=1))))
        u = f"gnn.edge_update.{i}"
        xs, xt = _lin(w, f"{u}.lin_s", x), _lin(w, f"{u}.lin_t", x)
        for s in range(0, n_edges, chunk):
            h = (
                _lin(w, f"{u}.lin_e", e[s : s + chunk])
                + xs[src[s : s + chunk]]
                + xt[dst[s : s + chunk]]
            )
            e[s : s + chunk] = _lin(w, f"{u}.lin1", F.silu(h))
    w_head = w["edge_out.fc.2.weight"].reshape(MAX_FEAT, SEQ_LEN, hid)[:n_feat]
    b_head = w["edge_out.fc.2.bias"].reshape(MAX_FEAT, SEQ_LEN)[:n_feat]
    rows = np.asarray([k - 1 for k in ks])
    # (n_feat, n_k, hid) -> (n_k * n_feat, hid): one matmul for every asked k
    w_sel = w_head[:, rows].permute(1, 0, 2).reshape(-1, hid)
    b_sel = b_head[:, rows].T.reshape(-1)
    out = torch.empty((len(ks), n_edges, n_feat), dtype=torch.float32)
    for s in range(0, n_edges, chunk):
        h = F.silu(_lin(w, "edge_out.fc.0", e[s : s + chunk]))
        out[:, s : s + chunk] = (
            F.linear(h, w_sel, b_sel).reshape(-1, len(ks), n_feat).permute(1, 0, 2)
        )
    return out


# ------------------------------------------------------------------ training
def init_weights(gnn: bool, seed: int, hid: int = 128) -> dict[str, torch.Tensor]:
    """NiNo's own initialisation (its ``_init_weights``): every weight and embedding
    N(0, 0.02), every bias 0; drawn from a torch generator seeded with ``seed``, in the
    order of :func:`expected_keys`. For training from scratch."""
    gen = torch.Generator().manual_seed(int(seed))
    out: dict[str, torch.Tensor] = {}
    for key, shape in expected_keys(gnn, hid).items():
        if key.endswith(".bias"):
            out[key] = torch.zeros(shape, dtype=torch.float32)
        else:
            out[key] = torch.normal(0.0, 0.02, size=shape, generator=gen)
    return out


def wnn_plus_delta_all(
    w: Mapping[str, torch.Tensor], x: torch.Tensor, types: torch.Tensor
) -> torch.Tensor:
    """WNN+ for training: ``(N, 40)`` scaled deltas of every ``k`` (the math of
    :func:`wnn_plus_delta` without chunks or in-place writes, so autograd can run)."""
    return _lin(w, "edge_mlp.fc.6", _wnn_plus_hidden(w, x, types))


def nino_delta_all(
    w: Mapping[str, torch.Tensor],
    feats: torch.Tensor,
    edge_index: torch.Tensor,
    types: torch.Tensor,
    pos: torch.Tensor,
    n_nodes: int,
) -> torch.Tensor:
    """NiNo's GNN for training: ``(E, F, 40)`` scaled deltas of every ``k`` (the math of
    :func:`nino_delta` on the whole graph at once, without in-place writes, so autograd
    can run; NiNo's own training mode also runs the graph unchunked)."""
    n_edges, n_feat, ctx = feats.shape
    hid = w["layer_embed.weight"].shape[1]
    src, dst = edge_index[0], edge_index[1]
    w_in = w["edge_proj.fc.0.weight"][:, : n_feat * ctx]
    e = F.linear(feats.reshape(n_edges, n_feat * ctx), w_in, w["edge_proj.fc.0.bias"])
    e = e + w["layer_embed.weight"][types]
    x = _lin(w, "node_proj.fc.0", pos)
    count = torch.bincount(dst, minlength=n_nodes).clamp_min(1).to(torch.float32)[:, None]
    for i in range(N_CONVS - 1):
        p = f"gnn.convs.{i}"
        w_pre = w[f"{p}.pre_nns.0.0.weight"]
        pre_dst = F.linear(x, w_pre[:, :hid], w[f"{p}.pre_nns.0.0.bias"])
        pre_src = F.linear(x, w_pre[:, hid:])
        scale, shift = _lin(w, f"{p}.edge_encoder", e).chunk(2, dim=1)
        msg = scale * (pre_dst[dst] + pre_src[src]) + shift
        agg = torch.zeros((n_nodes, hid), dtype=msg.dtype).index_add(0, dst, msg) / count
        x = F.silu(_lin(w, f"{p}.lin", _lin(w, f"{p}.post_nns.0.0", torch.cat([x, agg], dim=1))))
        u = f"gnn.edge_update.{i}"
        h = _lin(w, f"{u}.lin_e", e) + _lin(w, f"{u}.lin_s", x)[src] + _lin(w, f"{u}.lin_t", x)[dst]
        e = _lin(w, f"{u}.lin1", F.silu(h))
    out = _lin(w, "edge_out.fc.2", F.silu(_lin(w, "edge_out.fc.0", e)))
    return out.reshape(n_edges, MAX_FEAT, SEQ_LEN)[:, :n_feat]
