"""The columnar batch evaluator: the same IR as engine/scalar.py, on columns.

    >>> BatchEngine(methodology).evaluate_frame(frame, column_units)  # -> polars.DataFrame

Pure: frames in, frames out. `BatchEngine.evaluate_file` reads a record file through
engine/recordfiles.py (the one reader of record files); nothing here writes any, but a
run too big for memory keeps its columns in a temporary folder (store.py).
"""

from .engine import BatchEngine, results_frame, to_results

__all__ = ["BatchEngine", "results_frame", "to_results"]
