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


def _scale(*arrays) -> float:
    """A power of two near the largest magnitude: errors divided by it are squared without overflow (a
    target in the units of 1e200 squares beyond a double), and the scaling itself is exact."""
    m = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
    return 2.0 ** np.frexp(m)[1] if np.isfinite(m) and m > 0 else 1.0


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    s = _scale(y_true, y_pred)
    return float(s * np.sqrt(np.mean(((y_pred - y_true) / s) ** 2)))


def r2(y_true, y_pred) -> float:
    """Coefficient of determination: 1 - SSE / SST (1 is perfect, 0 is predicting the mean); NaN when SST
    is 0 (the same ``y`` in every row: undefined)."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    s = _scale(y_true, y_pred)
    t, p = y_true / s, y_pred / s
    sst = np.sum((t - t.mean()) ** 2)
    sse = np.sum((p - t) ** 2)
    return float(1.0 - sse / sst) if sst > 0 else float("nan")


def in_original_units(y_norm, stats: Stats) -> np.ndarray:
    """Normalized target values back in the units of ``y`` (the last column of ``stats``)."""
    return stats.inverse_transform(_np(y_norm))


def regression(y_true_norm, y_pred_norm, stats: Stats, prefix: str = "test") -> dict:
    """``{prefix}_rmse``, ``{prefix}_r2`` (original units) and ``{prefix}_rows`` of normalized targets."""
    t, p = in_original_units(y_true_norm, stats), in_original_units(y_pred_norm, stats)
    return {f"{prefix}_rmse": rmse(t, p), f"{prefix}_r2": r2(t, p), f"{prefix}_rows": int(t.size)}
