"""Surface AST -> typed IR: the checker's passes, in order, over one file.

Each pass reports what it finds and goes on, so one run lists every problem. The IR is
produced only when there is no error; warnings do not stop it.
"""

from __future__ import annotations

import itertools
from typing import Optional

from ..check import channels, counters, declarations, definitions, examples, history, legs, rules
from ..check.expressions import LookupSite, Uses
from ..check.scope import Scope
from ..messages import Reporter
from ..surface import ast
from ..types import Kind
from . import ast as ir

NO_HISTORY = "NO_HISTORY"  # engine.result's: a window with no record to take a mean of


def lower(module: ast.Module, report: Reporter, failed_names: set[str] = frozenset(),
          broken: set[str] = frozenset()) -> Optional[ir.Methodology]:
    """``failed_names``: what statements that did not parse meant to define;
    ``broken``: the first words of those statements (`require`, `forbid` ...)."""
    scope = Scope()
    scope.failed |= set(failed_names)
    metadata = declarations.check_header(module.header, report)
    if metadata is not None:
        scope.timezone = metadata.timezone
        scope.effective_from = metadata.effective_from
    items = module.items
    declared: dict[str, object] = {}

    declarations.check_inputs(items, scope, report, declared)
    definition_names = {str(item.name) for item in items if isinstance(item, (ast.LetDef, ast.OutputDef))}
    if "baseline" in definition_names:
        definition_names.add("reduction")  # synthesized below when not written
    histories, pending = history.check_histories(items, scope, report, declared,
                                                 frozenset(definition_names))
    legs.check_groups(items, scope, report, declared)
    parameter_nodes = declarations.check_parameters(items, scope, report, declared)
    written = definitions.collect(items, scope, report, declared)
    # `reduction` and `points` are each optional (a points-only scheme, a project giving
    # tonnes only: the missing one is 0); a file that credits nothing at all is E0601
    credits = {"reduction", "baseline", "points"} & (set(written) | scope.failed) or \
        any(isinstance(item, ast.CounterDef) for item in items) or "counter" in broken
    if not credits and module.header is not None:
        report.report("E0601", module.header.id,
                      help="write `reduction = ...` (or `baseline = ...` with `project` and `leakage`), "
                           "`points = ...`, or a `counter`")
    definitions.synthesize_reduction(written)
    if module.header is not None:
        definitions.synthesize_zero(written, module.header, scope.failed)
    scope.definition_names |= set(written)
    lowered, definition_uses = _check_definitions(written, pending, histories, scope, report)
    requires, require_uses = rules.check_requires(items, scope, report)
    cross = rules.check_cross_record(items, scope, report, declarations.timezone_given(module.header))
    counted, counter_uses = counters.check_counters(items, scope, report, declared,
                                                    declarations.timezone_given(module.header))
    near_duplicates, near_inputs = channels.check(items, scope, report)

    # A `require` that did not parse or check may be the one that narrows a table, or
    # that uses a name: then a missing key or an unused name is not reported.
    requires_complete = "require" not in broken and \
        len(requires) == sum(isinstance(item, ast.RequireStmt) for item in items)
    required, leg_keys = _required_keys(scope, lowered, definition_uses, requires, require_uses)
    if requires_complete:
        declarations.check_table_coverage(scope, parameter_nodes, required, report, leg_keys)
    declarations.check_value_in_force(scope, parameter_nodes, report)

    codes = _reason_codes(items, broken)
    example_list = examples.check_examples(items, scope, report, codes)
    if requires_complete:
        _warn_unused(scope, written, declared, definition_uses, require_uses + counter_uses,
                     cross["used_inputs"] | near_inputs, report)

    if report.has_errors or metadata is None:
        return None
    return ir.Methodology(
        metadata=metadata,
        inputs=tuple(scope.inputs.values()),
        parameters=tuple(scope.parameters.values()),
        definitions=tuple(lowered),
        requires=tuple(requires),
        caps=tuple(cross["caps"]),
        overlaps=tuple(cross["overlaps"]),
        duplicates=tuple(cross["duplicates"]),
        bonuses=tuple(cross["bonuses"]),
        flags=tuple(cross["flags"]),
        examples=tuple(example_list),
        histories=tuple(histories),
        groups=tuple(scope.groups.values()),
        near_duplicates=tuple(near_duplicates),
        **counted,
    )


def _check_definitions(written: dict, pending: list, histories: list, scope: Scope,
                       report: Reporter) -> tuple[list, dict]:
    """The definitions, typed; with histories over definitions, in two halves: the
    definitions those histories aggregate (and what these use, no history among it:
    E1004), then those histories, then every other definition, which may use them."""
    if not pending:
        return definitions.check_definitions(written, scope, report)
    history_names = {str(item.name) for item in pending} | {h.name for h in histories}
    broken = history.report_windows_in_subjects(pending, history.subject_closure(
        pending, written, definitions.names_in), written, history_names, definitions.names_in, report)
    scope.failed |= broken
    pending = [item for item in pending if str(item.name) not in broken]
    closure = history.subject_closure(pending, written, definitions.names_in)
    first = {name: node for name, node in written.items() if name in closure}
    rest = {name: node for name, node in written.items() if name not in closure}
    lowered, uses = definitions.check_definitions(first, scope, report)
    histories += history.check_definition_histories(pending, scope, report)
    more, more_uses = definitions.check_definitions(rest, scope, report)
    for item in pending:  # the definition a history aggregates is used by it
        uses.setdefault("#history " + str(item.name), Uses()).definitions.add(str(item.subject))
    return lowered + more, {**uses, **more_uses}


def _reason_codes(items, broken: set[str]) -> dict[str, Optional[set[str]]]:
    """The reason codes the file writes, by what an example expects of them.

    Taken from the statements as written, so that a rule with an error of its own
    does not make every example that expects its code wrong too; None when a statement
    that could give such a code did not parse (the code is then not checked).
    """
    codes: dict[str, Optional[set[str]]] = {"rejected": set(), "duplicate": set(),
                                             "flagged": set()}
    for item in items:
        if isinstance(item, (ast.RequireStmt, ast.OverlapRule)):
            codes["rejected"].add(str(item.code))
        elif isinstance(item, ast.ParameterDecl) and isinstance(item.otherwise, ast.OtherwiseReject):
            codes["rejected"].add(str(item.otherwise.code))
        elif isinstance(item, (ast.DuplicateRule, ast.NearDuplicateRule, ast.ConditionalDuplicateRule)):
            codes["duplicate"].add(str(item.code))
        elif isinstance(item, ast.FlagRule):
            codes["flagged"].add(str(item.code))
        elif isinstance(item, ast.HistoryDef):
            if str(item.aggregate) in ("mean", "min", "max") and not isinstance(item.short, ast.ShortValue):
                codes["rejected"].add(NO_HISTORY)  # an empty window's mean, least or greatest
            if isinstance(item.short, ast.ShortReject):
                codes["rejected"].add(str(item.short.code))
    for kind, words in (("rejected", {"require", "parameter", "forbid", "history"}),
                        ("duplicate", {"forbid"}), ("flagged", {"flag"})):
        if broken & words:
            codes[kind] = None
    return codes


# ---------------------------------------------------------------- narrowing
def _subject(e: ir.Expr):
    """What a fact is about: an input (narrowed by `require`s) or a leg field (narrowed by
    the `where` of the sum or count going over the legs)."""
    if isinstance(e, ir.Input):
        return e.name
    if isinstance(e, ir.LegField):
        return (e.group, e.name)
    return None


def _facts(cond: ir.Expr) -> list[tuple[object, set, bool]]:
    """(subject, values, allowed?) that a condition guarantees where it holds: a passing
    `require` about choice inputs, a sum's `where` about the leg's fields."""
    if isinstance(cond, ir.Logic) and cond.op == "and":
        return _facts(cond.left) + _facts(cond.right)
    negated = False
    if isinstance(cond, ir.Not):
        cond, negated = cond.operand, True
    if isinstance(cond, ir.InSet) and _subject(cond.operand) is not None and \
            all(isinstance(v, ir.Const) for v in cond.values):
        return [(_subject(cond.operand), {v.value for v in cond.values}, not negated)]
    if isinstance(cond, ir.Compare) and cond.op in ("==", "!=") and \
            _subject(cond.left) is not None and isinstance(cond.right, ir.Const):
        allowed = (cond.op == "==") != negated
        return [(_subject(cond.left), {cond.right.value}, allowed)]
    return []


def _closure(names: set[str], uses: dict[str, Uses]) -> set[str]:
    seen, stack = set(), list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in uses:
            stack.extend(uses[name].definitions)
    return seen


def _required_keys(scope: Scope, lowered, definition_uses: dict[str, Uses], requires,
                   require_uses: list[Uses]) -> tuple[dict[str, set], dict[str, tuple]]:
    """For each table, the key tuples its lookups can ask for, after narrowing; and for
    each table looked up by a leg's field, (leg variable, group, field) as written (for
    E0403's help).

    `require`s are checked in order before any output; a definition is first evaluated
    by the first `require` that needs it (or after all of them), so only the `require`s
    before that point narrow the keys its lookups see. A lookup in the body of a sum over
    legs also sees only the legs its `where` keeps.
    """
    leg_keys: dict[str, tuple] = {}
    first_use: dict[str, int] = {}
    for index, uses in enumerate(require_uses):
        for name in _closure(set(uses.definitions), definition_uses):
            first_use.setdefault(name, index)
    sites: list[tuple[LookupSite, int]] = []
    for name, uses in definition_uses.items():
        limit = first_use.get(name, len(requires))
        sites += [(site, limit) for site in uses.lookups]
    for index, uses in enumerate(require_uses):
        sites += [(site, index) for site in uses.lookups]
    facts = [_facts(r.cond) for r in requires]

    required: dict[str, set] = {}
    for site, limit in sites:
        parameter = scope.parameters[site.parameter]
        domains = []
        for position, (key, key_type) in enumerate(zip(site.keys, parameter.key_types)):
            if key_type.kind == Kind.CHOICE:
                domain = set(key_type.choices)
            elif key_type.kind == Kind.BOOLEAN:
                domain = {True, False}
            else:
                domain = None  # unbounded: the table has `otherwise`
            if isinstance(key, ir.Const):
                domain = {key.value}
            elif domain is not None and _subject(key) is not None:
                guards = facts[:limit] if isinstance(key, ir.Input) else []
                if site.where is not None:  # the lookup is in the body of a sum over legs
                    guards = guards + [_facts(site.where)]
                if isinstance(key, ir.LegField):
                    leg_keys.setdefault(site.parameter,
                                        (str(site.node.keys[position].var), key.group, key.name))
                for guard in guards:
                    for subject, values, allowed in guard:
                        if subject == _subject(key):
                            domain = domain & values if allowed else domain - values
            domains.append(domain)
        if any(d is None for d in domains):
            continue
        required.setdefault(site.parameter, set()).update(itertools.product(*domains))
    return required, leg_keys


# ---------------------------------------------------------------- unused
def _warn_unused(scope: Scope, written: dict, declared: dict, definition_uses: dict[str, Uses],
                 require_uses: list[Uses], rule_inputs: set[str], report: Reporter) -> None:
    if scope.failed:
        return  # a statement that did not compile may be the one that uses them
    all_uses = list(definition_uses.values()) + require_uses
    used_parameters = set().union(*(u.parameters for u in all_uses)) if all_uses else set()
    used_definitions = set().union(*(u.definitions for u in all_uses)) if all_uses else set()
    used_inputs = set(rule_inputs).union(*(u.inputs for u in all_uses)) if all_uses else set(rule_inputs)
    for name in scope.parameters:
        if name not in used_parameters:
            report.report("W0101", declared[name], name=name)
    for name, node in written.items():
        if isinstance(node, ast.LetDef) and name not in used_definitions and name not in scope.failed:
            report.report("W0102", node.name, name=name)
    for name in scope.inputs:
        if name not in used_inputs:
            report.report("W0103", declared[name], name=name)
    for name in scope.histories:  # a history window no formula reads
        if name not in used_inputs:
            report.report("W0102", declared[name], name=name)
