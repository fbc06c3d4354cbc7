"""Cross-record rules run by durable_rules, in a worker process (docs/engine-rules.md).

    from engine.rules import RulesEngine, RulesEngineError, Credited
    RulesEngine(methodology).apply(results, prior_state=[Credited(...)])

ruleset.py compiles the rules to a durable_rules ruleset definition (JSON), host.py hosts
durable_rules with our action callbacks, session.py runs one account's records through
short-lived sessions, worker.py is the process and its handle, client.py the interface,
prior.py the prior state (what was already credited).
"""

from .client import RulesEngine, RulesEngineError, RulesPathEngine
from .prior import Credited
from .ruleset import CompiledRules, compile_rules

__all__ = ["RulesEngine", "RulesEngineError", "RulesPathEngine", "Credited", "CompiledRules", "compile_rules"]
