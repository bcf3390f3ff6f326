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


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2)))


def r2(y_true, y_pred) -> float:
    """Coefficient of determination: 1 - SSE / SST (1 is perfect, 0 is predicting the mean)."""
    y_true, y_pred = _np(y_true), _np(y_pred)
    sst = np.sum((y_true - y_true.mean()) ** 2)
    sse = np.sum((y_pred - y_true) ** 2)
    return float(1.0 - sse / sst) if sst > 0 else float("nan")


def in_original_units(y_norm, stats: Stats) -> np.ndarray:
    """Normalized target values back in the units of ``y`` (the last column of ``stats``)."""
    return stats.inverse_transform(_np(y_norm))


def regression(y_true_norm, y_pred_norm, stats: Stats, prefix: str = "test") -> dict:
    """``{prefix}_rmse``, ``{prefix}_r2`` (original units) and ``{prefix}_rows`` of normalized targets."""
    t, p = in_original_units(y_true_norm, stats), in_original_units(y_pred_norm, stats)
    return {f"{prefix}_rmse": rmse(t, p), f"{prefix}_r2": r2(t, p), f"{prefix}_rows": int(t.size)}
