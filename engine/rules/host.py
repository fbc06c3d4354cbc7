"""durable_rules hosted with our action callbacks; runs only inside the worker process.

Every rule's action is one of ruleset.ACTIONS, parameterised by the rule's index
(`run: "capped#0"`). The callback only writes down a Decision: which rule fired, for
which record, and what the matched ledger fact said. It never changes facts and never
decides anything; the session reads the decision after the post returns.

durable_rules stores an exception raised in an action in the session state instead of
raising it; ours cannot raise, and if they did the error is kept here and raised after
the post. Its Host also starts two timer threads that dispatch pending actions every
0.2 s: posting here is synchronous (the actions of a post run before it returns), so the
threads are not started, and nothing can run an action behind a session's back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from durable import engine as durable

from .ruleset import ACTIONS, CompiledRules


class HostError(RuntimeError):
    """A post did not end in exactly one decision, or an action failed."""


@dataclass(frozen=True)
class Decision:
    kind: str  # one of ruleset.ACTIONS
    index: Optional[int]  # the rule's index among the methodology's rules of its kind
    seq: int  # the record (its index in the caller's result list)
    before: Optional[int] = None  # a cap decision: the ledger amount it was compared with


class RulesHost(durable.Host):
    def __init__(self):
        self._decisions: list[Decision] = []
        self._errors: list[str] = []
        self.loaded: set[str] = set()
        super().__init__()

    def _run(self):  # durable.Host starts its dispatch timers here; see the module doc
        pass

    def get_action(self, action_name: str):
        kind, _, index_text = action_name.partition("#")
        if kind not in ACTIONS:
            raise HostError(f"unknown action {action_name!r}")
        index = int(index_text) if index_text else None

        def record(c):  # durable_rules wants exactly one parameter (or two: async)
            try:
                ledger = c.u
                self._decisions.append(Decision(kind, index, int(c.m.seq),
                                                None if ledger is None else int(ledger.v)))
            except BaseException as error:  # noqa: BLE001 - durable_rules would swallow it
                self._errors.append(f"{action_name}: {type(error).__name__}: {error}")
        return record

    def load(self, rules: CompiledRules) -> bool:
        """Registers the ruleset once; True when it was new. durable_rules never frees a
        ruleset: the worker is recycled after a number of them (worker.py)."""
        if rules.name in self.loaded:
            return False
        # durable_rules takes the `run` entries out of the definition it is given
        self.register_rulesets({rules.name: copy.deepcopy(rules.definition)})
        self.loaded.add(rules.name)
        return True

    def ask(self, ruleset: str, event: dict) -> Decision:
        """Posts one question; exactly one rule must decide it."""
        self._decisions.clear()
        self.post(ruleset, event)
        if self._errors:
            errors, self._errors = self._errors, []
            raise HostError("; ".join(errors))
        decisions, self._decisions = self._decisions, []
        if len(decisions) != 1 or decisions[0].seq != event["seq"]:
            raise HostError(f"{len(decisions)} rules decided {event.get('t')} of record "
                            f"{event['seq']} (expected exactly one)")
        return decisions[0]

    def end_session(self, ruleset: str, sid: str) -> None:
        try:
            self.delete_state(ruleset, sid)
        except Exception as error:  # a session that never received a message
            if "309" not in str(error):
                raise
