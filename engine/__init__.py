"""The Tanpu engine: compiled methodologies evaluate activity records.

Pure library (no database, no web): ``Engine(methodology).evaluate(records)``. Three
paths give identical results: the scalar evaluator (engine/scalar.py, with
explanations), the columnar batch evaluator and the durable_rules rule sets for
cross-record rules; engine/cross_record.py is the reference for the latter two.
"""

from .evaluate import Engine
from .result import Result

__all__ = ["Engine", "Result"]
