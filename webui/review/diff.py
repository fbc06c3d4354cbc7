"""Side-by-side diff of two methodology sources, and what changed in their meaning.

Pure (no Flask, no database): the review page renders what these functions return.

    rows = side_by_side(old_source, new_source, context=3)
    # [Row(kind="equal"|"replace"|"delete"|"insert"|"skip", old_no, old, new_no, new, ...)]
    changes = semantic_changes(old_methodology, new_methodology)
    # parameters whose values changed, inputs added/removed, requires, rules, metadata

Lines are split as the parser counts them (at "\n" only), so the line numbers on both
sides are the ones the compiler's diagnostics and the review's line comments use.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Optional

from dsl.diagnostics import source_lines

EQUAL, REPLACE, DELETE, INSERT, SKIP = "equal", "replace", "delete", "insert", "skip"


@dataclass
class Segment:
    """A piece of a changed line; `changed` marks the characters that differ."""

    text: str
    changed: bool = False

    def to_dict(self) -> dict:
        return {"text": self.text, "changed": self.changed}


@dataclass
class Row:
    """One row of the side-by-side view. A `skip` row stands for `skipped` equal lines."""

    kind: str
    old_no: Optional[int] = None
    old: Optional[str] = None
    new_no: Optional[int] = None
    new: Optional[str] = None
    old_segments: list[Segment] = field(default_factory=list)
    new_segments: list[Segment] = field(default_factory=list)
    skipped: int = 0

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "old_no": self.old_no, "old": self.old,
               "new_no": self.new_no, "new": self.new}
        if self.old_segments or self.new_segments:
            out["old_segments"] = [s.to_dict() for s in self.old_segments]
            out["new_segments"] = [s.to_dict() for s in self.new_segments]
        if self.kind == SKIP:
            out["skipped"] = self.skipped
        return out


@dataclass
class Stats:
    added: int = 0  # lines only on the new side
    removed: int = 0  # lines only on the old side
    changed: int = 0  # rows with a line on both sides that differ

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


def _segments(old: str, new: str) -> tuple[list[Segment], list[Segment]]:
    """Character-level differences of a changed line pair."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    left: list[Segment] = []
    right: list[Segment] = []

    def add(side: list[Segment], text: str, changed: bool) -> None:
        if not text:
            return
        if side and side[-1].changed == changed:
            side[-1].text += text
        else:
            side.append(Segment(text, changed))

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        add(left, old[i1:i2], tag != EQUAL)
        add(right, new[j1:j2], tag != EQUAL)
    return left, right


def full_rows(old_source: Optional[str], new_source: str) -> list[Row]:
    """Every line of both sources, aligned. old_source None: everything is inserted."""
    old_lines = source_lines(old_source) if old_source is not None else []
    new_lines = source_lines(new_source)
    if old_source is not None and old_lines == [""] and not old_source:
        old_lines = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == EQUAL:
            rows.extend(Row(EQUAL, i + 1, old_lines[i], j + 1, new_lines[j])
                        for i, j in zip(range(i1, i2), range(j1, j2)))
        elif tag == DELETE:
            rows.extend(Row(DELETE, i + 1, old_lines[i]) for i in range(i1, i2))
        elif tag == INSERT:
            rows.extend(Row(INSERT, new_no=j + 1, new=new_lines[j]) for j in range(j1, j2))
        else:  # replace: pair lines up, the rest are deletions or insertions
            pairs = min(i2 - i1, j2 - j1)
            for k in range(pairs):
                old, new = old_lines[i1 + k], new_lines[j1 + k]
                left, right = _segments(old, new)
                rows.append(Row(REPLACE, i1 + k + 1, old, j1 + k + 1, new, left, right))
            rows.extend(Row(DELETE, i + 1, old_lines[i]) for i in range(i1 + pairs, i2))
            rows.extend(Row(INSERT, new_no=j + 1, new=new_lines[j]) for j in range(j1 + pairs, j2))
    return rows


def stats(rows: list[Row]) -> Stats:
    out = Stats()
    for row in rows:
        if row.kind == INSERT:
            out.added += 1
        elif row.kind == DELETE:
            out.removed += 1
        elif row.kind == REPLACE:
            out.changed += 1
    return out


def collapse(rows: list[Row], context: int = 3, keep_lines: frozenset[int] = frozenset()
             ) -> list[Row]:
    """Runs of unchanged lines further than `context` rows from a change become one `skip`
    row; lines in `keep_lines` (new-side numbers, e.g. commented lines) are kept."""
    if context < 0:
        return rows
    near = [False] * len(rows)
    for index, row in enumerate(rows):
        if row.kind != EQUAL or (row.new_no in keep_lines):
            for k in range(max(0, index - context), min(len(rows), index + context + 1)):
                near[k] = True
    out: list[Row] = []
    for index, row in enumerate(rows):
        if near[index] or row.kind != EQUAL:
            out.append(row)
        elif out and out[-1].kind == SKIP:
            out[-1].skipped += 1
        else:
            out.append(Row(SKIP, skipped=1, old_no=row.old_no, new_no=row.new_no))
    return out


def side_by_side(old_source: Optional[str], new_source: str, context: int = -1,
                 keep_lines: frozenset[int] = frozenset()) -> list[Row]:
    """The aligned rows; context >= 0 collapses unchanged runs away from the changes."""
    rows = full_rows(old_source, new_source)
    return collapse(rows, context, keep_lines) if context >= 0 else rows


# ---------------------------------------------------------------- what changed in meaning
@dataclass
class Change:
    """One difference in meaning: `what` is parameter, input, require, rule, metadata,
    example; `name` what it is called; `old`/`new` readable values (None: absent)."""

    what: str
    name: str
    old: Optional[str]
    new: Optional[str]

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"

    def to_dict(self) -> dict:
        return {"what": self.what, "name": self.name, "old": self.old, "new": self.new,
                "kind": self.kind}


def _parameter_values(description: dict) -> dict[str, str]:
    """'name[key] from DATE' -> 'value unit (source)' for every period and key."""
    out = {}
    for p in description["parameters"]:
        for period in p["periods"]:
            values = period["values"]
            items = values.items() if isinstance(values, dict) else [("", values)]
            for key, value in items:
                label = f"{p['name']}{f'[{key}]' if key else ''} from {period['from']}"
                unit = f" {p['unit']}" if p["unit"] and p["unit"] != "1" else ""
                out[label] = f"{value}{unit}"
    return out


def _inputs(description: dict) -> dict[str, str]:
    schema = description["input_schema"]
    required = set(schema.get("required", []))
    out = {}
    for name, prop in schema["properties"].items():
        if name in ("id", "account", "time", "activity"):
            continue
        kind = prop.get("x-tanpu-type", prop.get("type", ""))
        unit = f" [{prop['x-unit']}]" if prop.get("x-unit") else ""
        choices = f" {{{', '.join(prop['enum'])}}}" if prop.get("enum") else ""
        bounds = ""
        if prop.get("x-minimum") or prop.get("x-maximum"):
            bounds = f" between {prop.get('x-minimum', '…')} and {prop.get('x-maximum', '…')}"
        out[name] = f"{kind}{unit}{choices}{bounds}{'' if name in required else ' (optional)'}"
    return out


def _rules(description: dict) -> dict[str, str]:
    out = {}
    rules = description["cross_record_rules"]
    for cap in rules["caps"]:
        out[f"cap {cap['target']} per {cap['period']}"] = str(cap["limit"])
    for o in rules["overlaps"]:
        out[f"no overlap {o['start']}..{o['end']}"] = o["code"]
    for d in rules["duplicates"]:
        out[f"no duplicate {', '.join(d['keys'])}"] = d["code"]
    for d in rules.get("near_duplicates", ()):
        keys = ", ".join(d["keys"] + ([d["near"]] if d["near"] else []))
        out[f"no duplicate {keys} within {d['window_seconds']:g} s"] = d["code"]
    for b in rules["bonuses"]:
        out[f"bonus #{b['ordinal']} in {b['window_seconds']} s"] = f"{b['points']} points"
    for f in rules["flags"]:
        out[f"flag {f['code']}"] = f"{f['count']} in {f['window_seconds']} s"
    return out


def _metadata(description: dict) -> dict[str, str]:
    meta = description["metadata"]
    out = {"title": meta["title"], "effective_from": meta["effective_from"] or "",
           "effective_until": meta["effective_until"] or "", "timezone": meta["timezone"] or "",
           "covers": ", ".join(meta["covers"]), "issuer": meta["issuer"] or ""}
    out.update({f"title ({lang})": text for lang, text in meta["titles"].items()})
    return {k: v for k, v in out.items() if v}


def _compare(what: str, old: dict[str, str], new: dict[str, str]) -> list[Change]:
    changes = []
    for name in list(old) + [n for n in new if n not in old]:
        a, b = old.get(name), new.get(name)
        if a != b:
            changes.append(Change(what, name, a, b))
    return changes


def describe_methodology(methodology) -> dict:
    from dsl.ir.printer import content_hash
    from engine.schema import describe
    return describe(methodology, content_hash(methodology))


def semantic_changes(old_methodology, new_methodology) -> list[Change]:
    """What the new version changes in meaning (both compiled, IR): parameter values,
    inputs, requirements, cross-record rules, metadata. Comments and layout are not
    changes; a version number is not reported."""
    if old_methodology is None or new_methodology is None:
        return []
    old, new = describe_methodology(old_methodology), describe_methodology(new_methodology)
    changes = _compare("parameter", _parameter_values(old), _parameter_values(new))
    changes += _compare("input", _inputs(old), _inputs(new))
    changes += _compare("require", {r["code"]: r["message"] for r in old["requires"]},
                        {r["code"]: r["message"] for r in new["requires"]})
    changes += _compare("rule", _rules(old), _rules(new))
    changes += _compare("metadata", _metadata(old), _metadata(new))
    return changes
