"""The error track's scoring kernel: every sufficient statistic of a batch of windows in
one pass over the scored values (``docs/protocol.md``, section 6).

Compiled with numba (cached on disk after the first call). One pass reads, for each
scored (window, horizon, series): the prediction, the truth and the two snapshots before
it, and adds to the sums of :data:`trajbench.bench.metrics.STAT_FIELDS`; nothing of the
size of a batch is written. Series are visited in runs of equal parameter kind
("segments"), so a kind's sums are plain reductions over contiguous series.

Arithmetic: the last-two linear reference is extrapolated in float32, exactly as the
``linear`` baseline computes it; every difference, product and sum is then float64. The
sums over the series of a segment may be reassociated (``fastmath={"reassoc"}``: the
compiler vectorises them); nothing else is. Results are reproducible bit for bit on one
machine and agree across CPUs to float64 rounding.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Field positions, in the order of metrics.STAT_FIELDS (asserted there).
_N, _ABS, _SQ, _ABS_P, _REF_P, _ZERO_P, _ABS_L, _REF_L, _ZERO_L, _COS, _N_COS = range(11)
N_FIELDS = 11


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def score_kernel(
    pred, block, start, origins, n_valid, horizons, seg_start, seg_kind, n_kinds, linear, out
):
    """Add a batch's statistics to ``out`` ``(G, n_kinds + 1, N_FIELDS)`` float64.

    pred: ``(B * S, H)`` float32, window-major rows (unused when ``linear``).
    block: ``(R, S)`` float32 rows ``start:start + R`` of the run.
    origins: ``(B,)`` int64; n_valid: ``(B,)`` how many of ``horizons`` (ascending) each
    window can be scored on; seg_start: ``(Q + 1,)`` series bounds of equal-kind runs,
    seg_kind: ``(Q,)`` their kinds. ``linear``: score last-two linear extrapolation itself.
    """
    n_windows = origins.shape[0]
    n_series = block.shape[1]
    n_segments = seg_kind.shape[0]
    window = np.zeros((n_kinds + 1, 3))  # per kind: dot, |pred disp|^2, |true disp|^2
    for b in range(n_windows):
        row_last = origins[b] - start
        base = b * n_series
        for g in range(n_valid[b]):
            h = horizons[g]
            h32 = np.float32(h)
            row_true = row_last + h
            window[:] = 0.0
            for q in range(n_segments):
                s_abs = 0.0
                s_sq = 0.0
                s_abs_p = 0.0
                s_ref_p = 0.0
                n_zero_p = 0.0
                s_abs_l = 0.0
                s_ref_l = 0.0
                n_zero_l = 0.0
                dot = 0.0
                norm_p = 0.0
                norm_t = 0.0
                for s in range(seg_start[q], seg_start[q + 1]):
                    last32 = block[row_last, s]
                    lin32 = (
                        h32 * (last32 - block[row_last - 1, s]) + last32
                    )  # as `linear` computes it
                    t = np.float64(block[row_true, s])
                    last = np.float64(last32)
                    lin = np.float64(lin32)
                    p = lin if linear else np.float64(pred[base + s, h - 1])
                    err = p - t
                    abs_err = abs(err)
                    true_disp = t - last
                    ref_p = abs(true_disp)
                    ref_l = abs(t - lin)
                    zero_p = ref_p == 0.0
                    zero_l = ref_l == 0.0
                    pred_disp = p - last
                    s_abs += abs_err
                    s_sq += err * err
                    s_abs_p += 0.0 if zero_p else abs_err
                    s_ref_p += ref_p
                    n_zero_p += 1.0 if zero_p else 0.0
                    s_abs_l += 0.0 if zero_l else abs_err
                    s_ref_l += ref_l
                    n_zero_l += 1.0 if zero_l else 0.0
                    dot += pred_disp * true_disp
                    norm_p += pred_disp * pred_disp
                    norm_t += true_disp * true_disp
                count = np.float64(seg_start[q + 1] - seg_start[q])
                for k in (seg_kind[q], n_kinds):
                    cell = out[g, k]
                    cell[_N] += count
                    cell[_ABS] += s_abs
                    cell[_SQ] += s_sq
                    cell[_ABS_P] += s_abs_p
                    cell[_REF_P] += s_ref_p
                    cell[_ZERO_P] += n_zero_p
                    cell[_ABS_L] += s_abs_l
                    cell[_REF_L] += s_ref_l
                    cell[_ZERO_L] += n_zero_l
                    window[k, 0] += dot
                    window[k, 1] += norm_p
                    window[k, 2] += norm_t
            for k in range(n_kinds + 1):
                if window[k, 1] > 0.0 and window[k, 2] > 0.0:
                    c = window[k, 0] / np.sqrt(window[k, 1] * window[k, 2])
                    out[g, k, _COS] += min(1.0, max(-1.0, c))
                    out[g, k, _N_COS] += 1.0
