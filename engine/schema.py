"""What a methodology publishes to integrators: metadata, parameters, and the JSON
Schema of its activity records (`tanpu inspect --json`, the API's schema endpoint)."""

from __future__ import annotations

import dataclasses

from dsl.ir import ast as ir
from dsl.types import Kind


def input_schema(methodology: ir.Methodology) -> dict:
    properties: dict[str, dict] = {
        "id": {"type": "string", "description": "unique id of the record (idempotency key)"},
        "account": {"type": "string", "description": "the carbon account credited"},
        "time": {"type": "string", "format": "date-time",
                 "description": f"when the activity happened; without an offset it is in {methodology.metadata.timezone}"},
        "activity": {"type": "string", "enum": list(methodology.metadata.covers)},
    }
    required = ["id", "account"]
    if not any(s.type.kind == Kind.DATETIME for s in methodology.inputs):
        required.append("time")
    for spec in methodology.inputs:
        t = spec.type
        number = t.kind == Kind.QUANTITY and not t.dimension  # a plain (dimensionless) number
        prop: dict = {"x-tanpu-type": "number" if number else t.kind.value}
        if spec.label:
            prop["description"] = spec.label
        if t.kind == Kind.QUANTITY and t.dimension:
            prop.update({
                "oneOf": [
                    {"type": "string", "pattern": r"^\s*[+-]?\d+(\.\d+)?([eE][+-]?\d+)?\s*\S+\s*$",
                     "examples": [f"8.2 {t.unit.text}"]},
                    {"type": "object", "required": ["value", "unit"],
                     "properties": {"value": {"type": "number"}, "unit": {"type": "string"}}},
                ],
                "x-unit": t.unit.text,
            })
            # in the input's own unit, as text an integrator shows (JSON Schema's minimum
            # would compare the number without its unit)
            if spec.low is not None:
                prop["x-minimum"] = _in_unit(t, spec.low)
            if spec.high is not None:
                prop["x-maximum"] = _in_unit(t, spec.high)
            if spec.default is not None:
                prop["default"] = _in_unit(t, spec.default)
        elif number or t.kind == Kind.INTEGER:
            prop["type"] = "number" if number else "integer"
            if spec.low is not None:
                prop["minimum"] = spec.low
            if spec.high is not None:
                prop["maximum"] = spec.high
            if spec.default is not None:
                prop["default"] = spec.default
        elif t.kind == Kind.BOOLEAN:
            prop["type"] = "boolean"
        elif t.kind == Kind.CHOICE:
            prop["type"] = "string"
            prop["enum"] = list(t.choices)
            labels = dict(spec.choice_labels)
            if labels:
                prop["x-labels"] = labels
        elif t.kind == Kind.DATE:
            prop.update({"type": "string", "format": "date"})
        elif t.kind == Kind.DATETIME:
            prop.update({"type": "string", "format": "date-time"})
        else:
            prop["type"] = "string"
        if spec.default is not None and "default" not in prop:
            prop["default"] = spec.default if not hasattr(spec.default, "isoformat") else spec.default.isoformat()
        properties[spec.name] = prop
        if spec.required:
            required.append(spec.name)
    for group in methodology.groups:
        properties[group.name] = _legs_schema(methodology, group)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"{methodology.metadata.id} {methodology.metadata.version} activity record",
            "type": "object", "properties": properties, "required": required}


def _legs_schema(methodology: ir.Methodology, group: ir.Group) -> dict:
    """A list input: an array of legs, each described as the inputs are (the same code,
    given the leg's fields as a record's inputs)."""
    fields = input_schema(dataclasses.replace(methodology, inputs=group.fields, groups=()))
    leg = {"type": "object",
           "properties": {f.name: fields["properties"][f.name] for f in group.fields},
           "required": [f.name for f in group.fields if f.required]}
    out: dict = {"type": "array", "items": leg, "x-tanpu-type": "list",
                 "x-csv-columns": f"{group.name}[0].{group.fields[0].name}, ... (or a JSON list in one cell)"
                 if group.fields else ""}
    if group.label:
        out["description"] = group.label
    if group.low is not None:
        out["minItems"] = group.low
    if group.high is not None:
        out["maxItems"] = group.high
    return out


def _in_unit(t, si_value) -> str:
    """A quantity in SI as the input's unit writes it: `1.5 km`."""
    return f"{t.unit.from_si(si_value):g} {t.unit.text}"


def describe(methodology: ir.Methodology, content_hash: str) -> dict:
    meta = methodology.metadata
    parameters = []
    for p in methodology.parameters:
        periods = []
        for period in p.periods:
            if p.keys:
                values = {"/".join(map(str, key)): written
                          for (key, _), written in zip(period.entries, period.written)}
            else:
                values = period.written[0] if period.written else ""
            periods.append({"from": period.start.isoformat(), "source": period.source.text,
                            "tag": period.source.tag, "values": values})
        parameters.append({"name": p.name, "unit": p.type.unit.text, "keys": list(p.keys),
                           "periods": periods,
                           "missing": {"kind": p.missing.kind, "code": p.missing.code}})
    return {
        "content_hash": content_hash,
        "metadata": {
            "id": meta.id, "title": meta.title, "version": meta.version,
            "titles": dict(meta.titles), "issuer": meta.issuer,
            "citations": [{"text": c.text, **dict(c.details)} for c in meta.citations],
            "covers": list(meta.covers), "descriptions": dict(meta.descriptions),
            "effective_from": meta.effective_from.isoformat() if meta.effective_from else None,
            "effective_until": meta.effective_until.isoformat() if meta.effective_until else None,
            "timezone": meta.timezone, "precedes": list(meta.precedes),
            "regions": list(meta.regions),
        },
        "parameters": parameters,
        "requires": [{"code": r.code, "message": r.message} for r in methodology.requires],
        "cross_record_rules": {
            "caps": [{"target": c.target, "limit": c.limit, "period": c.period, "timezone": c.timezone}
                     for c in methodology.caps],
            "overlaps": [{"start": o.start, "end": o.end, "code": o.code} for o in methodology.overlaps],
            "duplicates": [{"keys": list(d.keys), "code": d.code} for d in methodology.duplicates],
            "near_duplicates": [{"keys": list(d.keys), "near": d.near, "window_seconds": d.window_us / 1e6,
                                 "where": list(d.when[:1]) + [list(d.when[1]), d.when[2]] if d.when else None,
                                 "arrival": d.arrival, "code": d.code}
                                for d in methodology.near_duplicates],
            "bonuses": [{"points": b.points, "ordinal": b.ordinal, "window_seconds": b.window_seconds}
                        for b in methodology.bonuses],
            "flags": [{"count": f.count, "window_seconds": f.window_seconds, "code": f.code}
                      for f in methodology.flags],
            "histories": [_history(h, methodology) for h in methodology.histories],
            "counters": [{"name": c.name, "unit": c.unit} for c in methodology.counters],
            "counter_caps": [{"counter": c.counter, "limit": c.limit, "period": c.period,
                              "timezone": c.timezone} for c in methodology.counter_caps],
            "rewards": [{"name": r.name, "every": r.every, "source": r.source, "worth": r.worth,
                         "unit": r.unit} for r in methodology.rewards],
        },
        # what each credited record's `counters` column lists, in this order: the
        # counters' amounts, then the rewards' counts (engine/counters.py)
        "moved": [c.name for c in methodology.counters] + [r.name for r in methodology.rewards],
        "definitions": [_definition(d) for d in methodology.definitions],
        "input_schema": input_schema(methodology),
    }


def _unit_of(t) -> dict:
    """The type of a value as `inspect --json` describes it: the kind, and a quantity's unit."""
    from dsl.types import Kind
    if t.kind == Kind.QUANTITY:
        return {"type": "number" if t.is_number else "quantity", "unit": t.unit.text}
    return {"type": t.kind.value}


def _definition(d: ir.Definition) -> dict:
    """A `let` or output: what an example can expect of it (docs/language.md §10)."""
    return {"name": d.name, "kind": d.kind, **_unit_of(d.type), "line": d.line}


def _history(h: ir.History, m: ir.Methodology) -> dict:
    """A history window (docs/language.md §9.6), its subject an input or a definition."""
    subject = "definition" if any(d.name == h.subject for d in m.definitions) else "input"
    value = h.value
    if value is not None and h.type.kind.value == "quantity":
        value = float(h.type.unit.from_si(value))
    return {"name": h.name, "aggregate": h.aggregate, "subject": h.subject, "subject_kind": subject,
            "side": h.side, "size": h.size, "unit": h.unit, "timezone": h.timezone,
            **{f"value_{k}": v for k, v in _unit_of(h.type).items()},
            "short": h.short, "code": h.code or None,
            "short_value": value}
