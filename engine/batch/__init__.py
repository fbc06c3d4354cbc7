"""The columnar batch evaluator: the same IR as engine/scalar.py, on columns.

    >>> BatchEngine(methodology).evaluate_frame(frame, column_units)  # -> polars.DataFrame

Pure: frames in, frames out. `reader.py` is the one helper that reads files (for
`tanpu eval`); nothing here writes any.
"""

from .engine import BatchEngine, results_frame, to_results

__all__ = ["BatchEngine", "results_frame", "to_results"]
