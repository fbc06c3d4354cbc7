"""The Tanpu engine: compiled methodologies evaluate activity records.

A library (no database, no web): ``Engine(methodology).evaluate(records)``. Three
paths give identical results: the scalar evaluator (engine/scalar.py, with
explanations), the columnar batch evaluator and the durable_rules rule sets for
cross-record rules; engine/cross_record.py is the reference for the latter two.

Results depend on the inputs only, but evaluating is not free of side effects; these
are all of them:

- process state: while `Engine.evaluate` runs, Python's cycle collector is switched off
  for the whole process (gc_pause.py: every thread, until the last batch is done); the
  batch path and the result writer start thread pools that live as long as the process
  (batch/engine.py, batch/rules.py, recordfiles.py); the rules path runs durable_rules
  in a worker process (rules/worker.py);
- files: a unit the shipped unit table does not know is asked of Pint once and the
  answer kept in the user's cache folder (dsl/units.py, dsl/cache.py), also when it is
  a record's unit; `BatchEngine.evaluate_file` keeps the columns of a file too big for
  memory in a temporary folder, removed when it is done (batch/store.py);
  recordfiles.py reads and writes the files it is given. The C formulas are compiled
  and cached in the cache folder by native/build.py's `build`, which only a caller
  hands to the engine (`BatchEngine(..., kernels=build)`, as `tanpu eval` does).

The other caches (zones, unit factors, record readers, zone tables) are in memory and
only save time.
"""

from .evaluate import Engine
from .result import Result

__all__ = ["Engine", "Result"]
