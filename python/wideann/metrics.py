"""Regression metrics in the original units of the target.

Models train on normalized values in [0, 1]; errors are reported after mapping the target back with
the table's :class:`wideann.Stats` (``y = y_norm * (max - min) + min``), so an RMSE can be compared with
the noise level of the data.
"""
from __future__ import annotations

import numpy as np

from .stats import Stats


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor (float64 kept: 1e200 would be inf in float32)
        a = a.detach().cpu()
        a = (a if str(a.dtype) == "torch.float64" else a.float()).numpy()
    return np.asarray(a, dtype=np.float64).ravel()


def _scaled_squares(x: np.ndarray) -> tuple[int, float]:
    """``(k, sum((x / 2**k) ** 2))`` with ``2**k`` the power of two at most max |x| and above half of it (k = 0
    for zeros, inf or nan): the squares neither overflow (a target in the units of 1e200) nor vanish (errors
    far smaller than the values), and the scaling is exact."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    k = int(np.frexp(m)[1]) - 1 if np.isfinite(m) and m > 0 else 0
    return k, float(np.sum(np.ldexp(x, -k) ** 2))


def _errors(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, int]:
    """``(e, h)``: the errors ``y_pred - y_true`` divided by ``2**h``; h = 1 (halves) only where a difference
    of finite numbers overflows (1e308 - -1e308), so that subnormal errors stay exact otherwise."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = y_pred - y_true
    if np.all(np.isfinite(e)) or not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        return e, 0
    return y_pred * 0.5 - y_true * 0.5, 1


def rmse(y_true, y_pred) -> float:
    """Root mean squared error (NaN of no rows)."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    if y_true.size == 0:
        return float("nan")
    e, h = _errors(y_true, y_pred)
    k, squares = _scaled_squares(e)
    with np.errstate(over="ignore"):
        return float(np.ldexp(np.sqrt(squares / e.size), k + h))


def r2(y_true, y_pred) -> float:
    """Coefficient of determination: 1 - SSE / SST (1 is perfect, 0 is predicting the mean); NaN when the
    same ``y`` is in every row (SST is 0: undefined), or of no rows."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    if y_true.size == 0 or np.all(y_true == y_true[0]):
        return float("nan")
    kt, _ = _scaled_squares(y_true)
    t = np.ldexp(y_true, -kt)
    d = t - t.mean()
    kd, sst = _scaled_squares(d - d.mean())  # (the mean again: a y spread over a few ulps leaves a rounded mean)
    e, h = _errors(y_true, y_pred)
    ke, sse = _scaled_squares(e)
    if not sst > 0:
        return float("nan")
    with np.errstate(over="ignore", under="ignore"):
        return float(1.0 - np.ldexp(sse / sst, 2 * (ke + h - kt - kd)))


def in_original_units(y_norm, stats: Stats) -> np.ndarray:
    """Normalized target values back in the units of ``y`` (the last column of ``stats``)."""
    return stats.inverse_transform(_np(y_norm))


def regression(y_true_norm, y_pred_norm, stats: Stats, prefix: str = "test") -> dict:
    """``{prefix}_rmse``, ``{prefix}_r2`` (original units) and ``{prefix}_rows`` of normalized targets."""
    t, p = in_original_units(y_true_norm, stats), in_original_units(y_pred_norm, stats)
    return {f"{prefix}_rmse": rmse(t, p), f"{prefix}_r2": r2(t, p), f"{prefix}_rows": int(t.size)}
