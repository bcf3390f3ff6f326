"""wideann: train neural networks on huge, wide numeric tables.

The C++ engine (``wideann._native``) streams raw CSV files and min-max normalizes them in two passes
with bounded memory; this package is its Python face and the plumbing the lessons in ``scripts/`` share.
"""
__version__ = "0.1.0"

from .stats import Stats
from .engine import DataError, compute_stats, denormalize, make_data, normalize

__all__ = ["Stats", "DataError", "compute_stats", "normalize", "denormalize", "make_data", "data",
           "__version__"]


def __getattr__(name):
    # `wideann.data` (reading .npy tables in batches) is imported on first use, so that the command
    # line starts without numpy.
    if name == "data":
        import importlib

        return importlib.import_module(".data", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
