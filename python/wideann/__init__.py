"""wideann: train neural networks on huge, wide numeric tables.

The C++ engine (``wideann._native``) streams raw CSV files and min-max normalizes them in two passes
with bounded memory; this package is its Python face and the plumbing the lessons in ``scripts/`` share.
"""
from __future__ import annotations

TYPE_CHECKING = False  # (typing.TYPE_CHECKING, without importing typing, which imports re: milliseconds)
__version__ = "0.1.0"

__all__ = ["Stats", "DataError", "compute_stats", "normalize", "denormalize", "make_data", "data",
           "__version__"]

# Where each public name is defined: imported on first use (`wideann.Stats`, `from wideann import normalize`).
# `import wideann` itself imports nothing, so that the `wideann` program (wideann._entry, a module of this
# package) is running, with its handling of Ctrl-C, before the package's modules are imported; and
# `wideann.data` (reading .npy tables in batches) is imported by those who read tables, so that the command
# line starts without numpy.
_LAZY = {"Stats": "stats", "DataError": "engine", "compute_stats": "engine", "normalize": "engine",
         "denormalize": "engine", "make_data": "engine", "data": None}

if TYPE_CHECKING:  # (for type checkers and editors: the names as they will be)
    from . import data
    from .engine import DataError, compute_stats, denormalize, make_data, normalize
    from .stats import Stats


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = _LAZY[name]
    value = importlib.import_module(f".{module or name}", __name__)
    if module is not None:
        value = getattr(value, name)
    globals()[name] = value  # (the next use finds it without this function)
    return value


def __dir__() -> list[str]:  # (the module's own names, less the two it needs only to be written this way)
    return sorted((set(globals()) - {"TYPE_CHECKING", "annotations"}) | set(__all__))
