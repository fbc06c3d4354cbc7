"""Reading a record's repeated group (the legs of a trip) from what integrators send.

One reader for every path (the scalar engine, the rules path and the batch ingest all
call `read_legs` through engine/records.py), so a leg is accepted or refused the same
way everywhere. A group `legs` may be written:

- as a list: JSON Lines and dicts `"legs": [{"mode": "walk", "distance": "0.8 km"}, ...]`,
  Parquet a list of structs, and a CSV cell holding that JSON list;
- as repeated columns (CSV): `legs[0].mode`, `legs[0].distance`, `legs[1].mode` ...,
  numbered from 0; a header may carry the unit of its plain numbers, as any column can:
  `legs[0].distance[km]`. A leg whose cells are all blank is not there (a file has as
  many columns as its longest trip).

A bad leg is a RecordError naming it as `legs[2].distance`, so the caller reports the
row and the field. The run-time value of a group is a list of dicts (one per leg, every
field present, in the run-time representation of engine/records.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Mapping, Optional

from dsl.ir import ast as ir
from dsl.types import Kind

from . import records
from .records import FieldSpec, RecordError

_EMPTY = {Kind.TEXT: "", Kind.BOOLEAN: False, Kind.INTEGER: 0, Kind.QUANTITY: 0.0}
_NO_UNITS: dict = {}  # a list's quantities carry their units


class LegReader:
    """How to read one group: its fields as record fields (engine/records.py's readers,
    one per leg index and field so that an error names `legs[2].distance`), its bounds."""

    def __init__(self, group: ir.Group):
        self.group = group
        specs = []
        for spec in group.fields:
            t = spec.type
            default = spec.default
            if not spec.required and default is None:
                default = _EMPTY.get(t.kind)
            specs.append(FieldSpec(spec.name, t.kind, t.dimension, t.unit.text, t.choices,
                                   spec.required, records.runtime_value(default)))
        self.specs = tuple(specs)
        self.bounds = {s.name: (records.runtime_value(s.low), records.runtime_value(s.high))
                       for s in group.fields}
        self.column = re.compile(rf"^{re.escape(group.name)}\[(\d+)\]\.(\w+)$")
        self._readers: dict[tuple[int, str], Any] = {}
        self._keys: dict[str, Optional[tuple[int, str]]] = {}

    @staticmethod
    def of(group: ir.Group) -> "LegReader":
        return LegReader(group)

    def _reader(self, k: int, spec: FieldSpec, tz: str):
        found = self._readers.get((k, spec.name))
        if found is None:
            path = f"{self.group.name}[{k}].{spec.name}"
            found = (path, records.field_reader(dataclasses.replace(spec, name=path), tz))
            if len(self._readers) < 4096:
                self._readers[(k, spec.name)] = found
        return found

    # ------------------------------------------------------------ a record
    def read(self, raw: Mapping[str, Any], tz: str, units: Mapping[str, str]) -> list[dict]:
        name = self.group.name
        written = raw.get(name)
        columns = self._columns(raw)
        listed = records.present(written) and not (isinstance(written, (list, tuple)) and not written)
        if listed and columns:
            raise RecordError(name, "written both as a list and as columns "
                                    f"({name}[0].…): write one of them")
        if listed:
            items = _as_list(name, written)
            legs = [self._leg(k, item, tz, _NO_UNITS) for k, item in enumerate(items)]
        else:
            legs = [self._leg(k, cells, tz, units) for k, cells in sorted(columns.items())]
        self._count(len(legs))
        return legs

    def _columns(self, raw: Mapping[str, Any]) -> dict[int, dict]:
        found: dict[int, dict] = {}
        start = self.group.name + "["
        keys = self._keys
        for key, value in raw.items():
            if isinstance(key, str) and key.startswith(start):
                parsed = keys.get(key, False)
                if parsed is False:
                    match = self.column.match(key)
                    parsed = (int(match.group(1)), match.group(2)) if match else None
                    if len(keys) < 4096:
                        keys[key] = parsed
                if parsed is not None:
                    found.setdefault(parsed[0], {})[parsed[1]] = value
        # a leg whose cells are all blank is not there (a file has columns for its longest trip)
        return {k: cells for k, cells in found.items() if any(records.present(v) for v in cells.values())}

    def _leg(self, k: int, item: Any, tz: str, units: Mapping[str, str]) -> dict:
        if not isinstance(item, Mapping):
            raise RecordError(f"{self.group.name}[{k}]", "is not a leg: write an object with "
                              + ", ".join(s.name for s in self.specs))
        leg = {}
        for spec in self.specs:
            raw = item.get(spec.name)
            if not records.present(raw):
                if spec.required:
                    raise RecordError(f"{self.group.name}[{k}].{spec.name}", "missing")
                leg[spec.name] = spec.default
                continue
            path, read = self._reader(k, spec, tz)
            value = read(raw, units)
            low, high = self.bounds[spec.name]
            if (low is not None and value < low) or (high is not None and value > high):
                self._out_of_bounds(path, spec.name)
            leg[spec.name] = value
        for key, value in item.items():
            if key not in leg and records.present(value):
                raise RecordError(f"{self.group.name}[{k}].{key}", "is not a field of a leg ("
                                  + ", ".join(s.name for s in self.specs) + ")")
        return leg

    def _bounds(self, field: str, name: str, value) -> None:
        low, high = self.bounds[name]
        if (low is not None and value < low) or (high is not None and value > high):
            self._out_of_bounds(field, name)

    def _out_of_bounds(self, field: str, name: str) -> None:
        from .plan.from_ir import bound_text  # the message the inputs' bounds give
        spec = self.group.field(name)
        raise RecordError(field, bound_text(dataclasses.replace(spec, name=field)).split("` ", 1)[1])

    def _count(self, n: int) -> None:
        low, high, name = self.group.low, self.group.high, self.group.name
        if low is not None and n < low:
            raise RecordError(name, f"at least {low} leg(s), found {n}")
        if high is not None and n > high:
            raise RecordError(name, f"at most {high} leg(s), found {n}")

    # ------------------------------------------------------------ an example
    def from_example(self, legs: tuple) -> list[dict]:
        """An example's legs (IR values, checked by the checker) -> run-time legs; the
        bounds apply as they do to a file's."""
        out = []
        for k, leg in enumerate(legs):
            values = {}
            for spec, (name, value) in zip(self.specs, leg):
                value = spec.default if value is None else records.runtime_value(value)
                if value is not None:
                    self._bounds(f"{self.group.name}[{k}].{name}", name, value)
                values[name] = value
            out.append(values)
        self._count(len(out))
        return out


def _as_list(name: str, written: Any) -> list:
    if isinstance(written, str):
        try:
            written = json.loads(written)
        except ValueError as error:
            raise RecordError(name, f"is not a JSON list of legs ({error.msg} at {error.pos})") from None
    if not isinstance(written, (list, tuple)):
        raise RecordError(name, "is not a list of legs")
    return list(written)


def reader(group: ir.Group) -> LegReader:
    return _READERS.get(group) or _READERS.setdefault(group, LegReader.of(group))


_READERS: dict[ir.Group, LegReader] = {}


def read_legs(raw: Mapping[str, Any], group: ir.Group, tz: str,
              units: Optional[Mapping[str, str]] = None) -> list[dict]:
    """The legs of one raw record; RecordError names the leg and field (`legs[2].distance`)."""
    return reader(group).read(raw, tz, units or {})


def shown(legs: list[dict], group: ir.Group) -> str:
    """A record's legs as an explanation shows them, each field in its own unit:
    `walk, 0.8 km; metro, 12.4 km`."""
    def one(spec, value):
        if spec.type.kind == Kind.QUANTITY and spec.type.dimension and isinstance(value, (int, float)):
            return f"{spec.type.unit.from_si(value):.12g} {spec.type.unit.text}"
        return str(value).lower() if isinstance(value, bool) else str(value)
    return "; ".join(", ".join(one(spec, leg.get(spec.name)) for spec in group.fields) for leg in legs)
