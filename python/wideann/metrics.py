"""Regression metrics in the original units of the target.

Models train on normalized values in [0, 1]; errors are reported after mapping the target back with
the table's :class:`wideann.Stats` (``y = y_norm * (max - min) + min``), so an RMSE can be compared with
the noise level of the data.
"""
from __future__ import annotations

import numpy as np

from .stats import Stats


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float64).ravel()


def _power_of_two_below(m: float) -> float:
    """A power of two at most ``m`` and above ``m / 2`` (1 for 0, inf or nan): dividing by it is exact."""
    return float(np.ldexp(1.0, int(np.frexp(m)[1]) - 1)) if np.isfinite(m) and m > 0 else 1.0


def _scaled_squares(x: np.ndarray) -> tuple[float, float]:
    """``(s, sum((x / s) ** 2))`` with ``s`` a power of two near max |x|: the squares neither overflow (a
    target in the units of 1e200) nor vanish (errors far smaller than the values), and the scaling is exact."""
    s = _power_of_two_below(float(np.max(np.abs(x)))) if x.size else 1.0
    return s, float(np.sum((x / s) ** 2))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    half_errors = y_pred * 0.5 - y_true * 0.5  # (halves: 1e308 - -1e308 would overflow)
    s, squares = _scaled_squares(half_errors)
    return float(2 * s * np.sqrt(squares / half_errors.size))


def r2(y_true, y_pred) -> float:
    """Coefficient of determination: 1 - SSE / SST (1 is perfect, 0 is predicting the mean); NaN when SST
    is 0 (the same ``y`` in every row: undefined)."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    st = _power_of_two_below(float(np.max(np.abs(y_true)))) if y_true.size else 1.0
    t = y_true / st
    s_t, sst = _scaled_squares(t - t.mean())
    s_e, sse = _scaled_squares(y_pred * 0.5 - y_true * 0.5)
    if not sst > 0:
        return float("nan")
    with np.errstate(over="ignore"):
        return float(1.0 - (2 * s_e / (st * s_t)) ** 2 * (sse / sst))


def in_original_units(y_norm, stats: Stats) -> np.ndarray:
    """Normalized target values back in the units of ``y`` (the last column of ``stats``)."""
    return stats.inverse_transform(_np(y_norm))


def regression(y_true_norm, y_pred_norm, stats: Stats, prefix: str = "test") -> dict:
    """``{prefix}_rmse``, ``{prefix}_r2`` (original units) and ``{prefix}_rows`` of normalized targets."""
    t, p = in_original_units(y_true_norm, stats), in_original_units(y_pred_norm, stats)
    return {f"{prefix}_rmse": rmse(t, p), f"{prefix}_r2": r2(t, p), f"{prefix}_rows": int(t.size)}
