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


@dataclasses.dataclass(frozen=True)
class LegReader:
    """How to read one group: its fields as record fields, and its bounds."""
    group: ir.Group
    specs: tuple[FieldSpec, ...]
    column: re.Pattern

    @staticmethod
    def of(group: ir.Group) -> "LegReader":
        specs = []
        for spec in group.fields:
            t = spec.type
            default = spec.default
            if not spec.required and default is None:
                default = _EMPTY.get(t.kind)
            specs.append(FieldSpec(spec.name, t.kind, t.dimension, t.unit.text, t.choices,
                                   spec.required, records.runtime_value(default)))
        return LegReader(group, tuple(specs),
                         re.compile(rf"^{re.escape(group.name)}\[(\d+)\]\.(\w+)$"))

    # ------------------------------------------------------------ a record
    def read(self, raw: Mapping[str, Any], tz: str, units: Mapping[str, str]) -> list[dict]:
        name = self.group.name
        written = raw.get(name)
        columns = self._columns(raw)
        listed = records._present(written) and not (isinstance(written, (list, tuple)) and not written)
        if listed and columns:
            raise RecordError(name, "written both as a list and as columns "
                                    f"({name}[0].…): write one of them")
        if listed:
            items = _as_list(name, written)
            legs = [self._leg(f"{name}[{k}]", item, tz, {}) for k, item in enumerate(items)]
        else:
            legs = [self._leg(f"{name}[{k}]", cells, tz, units, prefix=f"{name}[{k}].")
                    for k, cells in sorted(columns.items())]
        self._count(len(legs))
        return legs

    def _columns(self, raw: Mapping[str, Any]) -> dict[int, dict]:
        found: dict[int, dict] = {}
        start = self.group.name + "["
        for key, value in raw.items():
            if isinstance(key, str) and key.startswith(start):
                match = self.column.match(key)
                if match:
                    found.setdefault(int(match.group(1)), {})[match.group(2)] = value
        # a leg whose cells are all blank is not there (a file has columns for its longest trip)
        return {k: cells for k, cells in found.items() if any(records._present(v) for v in cells.values())}

    def _leg(self, path: str, item: Any, tz: str, units: Mapping[str, str], prefix: str = "") -> dict:
        if not isinstance(item, Mapping):
            raise RecordError(path, "is not a leg: write an object with "
                              + ", ".join(s.name for s in self.specs))
        leg = {}
        for spec in self.specs:
            field = f"{path}.{spec.name}"
            raw = item.get(spec.name)
            if not records._present(raw):
                if spec.required:
                    raise RecordError(field, "missing")
                leg[spec.name] = spec.default
                continue
            value = records.parse_value(dataclasses.replace(spec, name=field), raw, tz,
                                        units.get(prefix + spec.name) if prefix else None)
            self._bounds(field, spec.name, value)
            leg[spec.name] = value
        for key, value in item.items():
            if key not in leg and records._present(value):
                raise RecordError(f"{path}.{key}", "is not a field of a leg ("
                                  + ", ".join(s.name for s in self.specs) + ")")
        return leg

    def _bounds(self, field: str, name: str, value) -> None:
        spec = self.group.field(name)
        low = records.runtime_value(spec.low)
        high = records.runtime_value(spec.high)
        if (low is not None and value < low) or (high is not None and value > high):
            from .plan.from_ir import bound_text  # the message the inputs' bounds give
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
