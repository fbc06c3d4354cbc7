"""A methodology as the document a committee reads: one self-contained HTML file.

``render_html(methodology)`` builds the document's content from the IR (and runs the
embedded examples with the engine), then fills the Jinja2 template
``templates/methodology.html.j2``. The output is a pure function of the methodology
and the language: no clock, no paths, so the same source always gives the same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from dsl.ir import ast as ir
from dsl.ir.printer import content_hash as compute_hash
from dsl.types import Kind, Type
from dsl.units import SI_MASS

from . import i18n, values
from .formulas import Notation, to_mathml, unit_latex
from .i18n import pick, t
from .words import Words

_EXPRS = (ir.Const, ir.Input, ir.Ref, ir.Negate, ir.Arith, ir.Elapsed, ir.Compare, ir.Logic, ir.Not,
          ir.InSet, ir.If, ir.MinMax, ir.Abs, ir.Round, ir.DatePart, ir.Lookup)

def _walk(e):
    """An expression and all its subexpressions."""
    yield e
    for f in dataclasses.fields(e):
        value = getattr(e, f.name)
        for child in (value if isinstance(value, tuple) else (value,)):
            if isinstance(child, _EXPRS):
                yield from _walk(child)


SECTIONS = ("s_scope", "s_applicability", "s_parameters", "s_calculation", "s_cross",
            "s_examples", "s_version")


# ---------------------------------------------------------------- the content
@dataclass
class LegendEntry:
    symbol: Markup
    meaning: str
    unit: str
    name: str


@dataclass
class Equation:
    number: int
    name: str
    kind: str
    mathml: Markup
    latex: str
    legend: list[LegendEntry]


@dataclass
class Condition:
    text: str
    words: Optional[str] = None
    formula: Optional[Markup] = None
    outcome: str = ""
    code: str = ""


@dataclass
class ParameterTable:
    number: int
    name: str
    symbol: Markup
    by: str
    unit: str
    key_headers: list[str]
    period_headers: list[str]  # "from 2022-01-01 (a)"
    rows: list[tuple[list[Markup], list[str]]]  # (key cells, value per period)
    sources: list[tuple[str, str, str, str]]  # (mark, effective from, source, tag)
    missing: str
    scalar: bool


@dataclass
class ExampleRow:
    number: int
    record: Markup
    expected: Markup
    actual: Markup
    ok: bool


@dataclass
class ExampleView:
    title: str
    passed: Optional[bool]
    rows: list[ExampleRow]
    failures: list[str] = field(default_factory=list)


def _label_cell(text: str, code: str) -> Markup:
    """A readable label, with the code that the source and the records use."""
    if text and text != code:
        return Markup('{} <code class="code">{}</code>').format(text, code)
    return Markup('<code class="code">{}</code>').format(code)


class _Builder:
    def __init__(self, m: ir.Methodology, lang: str, digest: str):
        self.m = m
        self.lang = lang
        self.digest = digest
        self.notation = Notation(m, lang)
        self.words = Words(m, lang)
        self.meta = m.metadata
        self.inputs = {spec.name: spec for spec in m.inputs}
        self.table_of = {p.name: i for i, p in enumerate(m.parameters, start=1)}
        self.equation_of = {d.name: i for i, d in enumerate(m.definitions, start=1)}

    def tr(self, key: str, **kw) -> str:
        return t(key, self.lang, **kw)

    def sentence(self, text: str) -> str:
        """A sentence: capitalized in English, ending with a full stop."""
        text = text.strip()
        if not text:
            return text
        if self.lang == "en":
            text = text[0].upper() + text[1:]
        if text[-1] not in ".。!！?？)）":
            text += "。" if self.lang == "zh" else "."
        return text

    def inline(self, latex: str) -> Markup:
        return Markup(to_mathml(latex, "inline"))

    # ------------------------------------------------------------ title and metadata
    def titles(self) -> tuple[str, str]:
        meta = self.meta
        found = dict(meta.titles)
        main_lang = "zh" if i18n.has_cjk(meta.title) else "en"
        found.setdefault(main_lang, meta.title)
        title = i18n.by_lang(tuple(found.items()), self.lang, meta.title)
        others = [v for k, v in found.items() if v != title]
        return title, (others[0] if others else "")

    def effective(self) -> str:
        meta = self.meta
        if meta.effective_from is None:
            return self.tr("effective_none")
        if meta.effective_until is not None:
            return self.tr("effective_range", start=meta.effective_from.isoformat(),
                           end=meta.effective_until.isoformat())
        return self.tr("effective_from", start=meta.effective_from.isoformat())

    def description(self) -> str:
        return i18n.by_lang(self.meta.descriptions, self.lang,
                            self.meta.descriptions[0][1] if self.meta.descriptions else "")

    # ------------------------------------------------------------ scope: the record
    def type_text(self, ty: Type) -> str:
        if ty.kind == Kind.QUANTITY:
            return self.tr("type_quantity", unit=ty.unit.text) if ty.dimension else self.tr("type_number")
        return self.tr("type_" + ty.kind.value)

    def bounds(self, spec: ir.InputSpec) -> str:
        show = lambda v: values.value(v, spec.type, self.meta.timezone)  # noqa: E731
        if spec.low is not None and spec.high is not None:
            return self.tr("range_between", low=show(spec.low), high=show(spec.high))
        if spec.low is not None:
            return self.tr("range_least", low=show(spec.low))
        if spec.high is not None:
            return self.tr("range_most", high=show(spec.high))
        return ""

    def input_rows(self) -> list[dict]:
        rows = []
        for spec in self.m.inputs:
            allowed = self.bounds(spec)
            if spec.type.kind == Kind.CHOICE:
                allowed = Markup("<br>").join(
                    _label_cell(self.words.choice(spec.name, c), c) for c in spec.type.choices)
            required = self.tr("yes") if spec.required else self.tr("no")
            if spec.default is not None:
                required += "（" if self.lang == "zh" else " ("
                required += self.tr("default", value=values.value(spec.default, spec.type, self.meta.timezone))
                required += "）" if self.lang == "zh" else ")"
            rows.append({"name": spec.name, "label": pick(spec.label, self.lang) if spec.label else "",
                         "type": self.type_text(spec.type), "allowed": allowed, "required": required})
        return rows

    # ------------------------------------------------------------ applicability
    def conditions(self) -> list[Condition]:
        meta, out = self.meta, []
        na, rejected = self.tr("not_applicable"), self.tr("rejected")
        if meta.effective_from is not None:
            start = meta.effective_from.isoformat()
            text = (self.tr("app_period_range", tz=meta.timezone, start=start, end=meta.effective_until.isoformat())
                    if meta.effective_until else self.tr("app_period_from", tz=meta.timezone, start=start))
            out.append(Condition(text, outcome=na, code="OUT_OF_PERIOD"))
        if meta.covers:
            out.append(Condition(self.tr("app_covers", covers=", ".join(meta.covers)),
                                 outcome=na, code="ACTIVITY_NOT_COVERED"))
        for spec in self.m.inputs:
            if spec.low is None and spec.high is None:
                continue
            show = lambda v: values.value(v, spec.type, meta.timezone)  # noqa: E731
            label = self.words.label(spec.name)
            if spec.low is not None and spec.high is not None:
                text = self.tr("app_between", label=label, low=show(spec.low), high=show(spec.high))
            elif spec.low is not None:
                text = self.tr("app_least", label=label, low=show(spec.low))
            else:
                text = self.tr("app_most", label=label, high=show(spec.high))
            out.append(Condition(self.sentence(text), outcome=rejected, code="OUT_OF_RANGE"))
        for require in self.m.requires:
            formula = self.notation.formula(require.cond)
            words = self.words.condition(require.cond)
            out.append(Condition(self.sentence(pick(require.message, self.lang)),
                                 words=self.sentence(words) if words else None,
                                 formula=Markup(formula.mathml("inline")),
                                 outcome=rejected, code=require.code))
        for p in self.m.parameters:
            if p.missing.kind == "reject":
                out.append(Condition(self.tr("app_missing", name=p.name) + " " + self.sentence(pick(p.missing.message, self.lang)),
                                     outcome=rejected, code=p.missing.code))
        return out

    # ------------------------------------------------------------ parameters
    def key_cell(self, value, key_type: Type) -> Markup:
        if key_type.kind == Kind.CHOICE:
            owner = key_type.choice_of or None
            return _label_cell(self.words.choice(owner, str(value)), str(value))
        return Markup("{}").format(values.value(value, key_type, self.meta.timezone))

    def parameter_tables(self) -> list[ParameterTable]:
        tables = []
        for number, p in enumerate(self.m.parameters, start=1):
            keys_shown = [self.words.label(k) for k in p.keys]
            by = (self.tr("param_by", keys="、".join(keys_shown) if self.lang == "zh" else ", ".join(keys_shown))
                  if p.keys else self.tr("param_scalar"))
            unit = self.unit_of(p.type)
            sources, period_headers = [], []
            for index, period in enumerate(p.periods):
                mark = chr(ord("a") + index) if len(p.periods) <= 26 else str(index + 1)
                tag = period.source.tag
                sources.append((mark, period.start.isoformat(), period.source.text, tag))
                period_headers.append(self.tr("from_date", date=period.start.isoformat()))
            rows: list[tuple[list[Markup], list[str]]] = []
            if p.keys:
                order: list[tuple] = []
                for period in p.periods:
                    for key, _ in period.entries:
                        if key not in order:
                            order.append(key)
                for key in order:
                    cells = [self.key_cell(v, kt) for v, kt in zip(key, p.key_types)]
                    shown = []
                    for period in p.periods:
                        written = dict(zip((k for k, _ in period.entries), period.written))
                        shown.append(written.get(key, "—"))
                    rows.append((cells, shown))
            else:
                rows.append(([], [period.written[0] if period.written else
                                  values.in_unit(period.scalar, p.type.unit) for period in p.periods]))
            missing = ""
            if p.missing.kind == "reject":
                missing = self.tr("missing_reject", code=p.missing.code, message=pick(p.missing.message, self.lang))
            elif p.missing.kind == "value" and p.missing.value is not None:
                missing = self.tr("missing_value", value=values.quantity(p.missing.value, p.type.unit))
            elif p.keys:
                missing = self.tr("missing_impossible")
            symbol = self.inline(self.notation.symbols[p.name].latex(
                tuple(self.notation.symbols[k].latex() if k in self.notation.symbols.by_name else k
                      for k in p.keys)))
            tables.append(ParameterTable(number, p.name, symbol, by, unit, keys_shown, period_headers,
                                         rows, sources, missing, scalar=not p.keys))
        return tables

    def tags(self) -> list[tuple[str, str]]:
        used = []
        for p in self.m.parameters:
            for period in p.periods:
                if period.source.tag and period.source.tag not in used:
                    used.append(period.source.tag)
        return [(tag, self.tr("tag_" + tag)) for tag in ("SRC", "DER", "ASM", "MEM") if tag in used]

    # ------------------------------------------------------------ calculation
    def unit_of(self, ty: Type, name: str = "") -> str:
        if name == "points":
            return self.tr("unit_points")
        if ty.kind == Kind.QUANTITY and ty.unit.text not in ("", "1"):
            return ty.unit.text  # kgCO2/kg is a plain number, but says what it is
        return self.tr("unit_none")

    def meaning(self, name: str, defined_here: bool) -> tuple[str, str]:
        """(meaning, unit) of a name in an equation's legend."""
        m = self.m
        if name in self.inputs:
            spec = self.inputs[name]
            label = pick(spec.label, self.lang) if spec.label else name
            return self.tr("sym_input", label=label), self.unit_of(spec.type)
        if name == "time":
            return self.tr("sym_time"), self.tr("unit_none")
        if name in ("id", "account", "activity"):
            return self.tr("sym_builtin", name=name), self.tr("unit_none")
        history = next((h for h in m.histories if h.name == name), None)
        if history is not None:  # a history window (docs/language.md §9.6)
            spec = self.inputs.get(history.subject)  # an input, or a definition (its name)
            label = pick(spec.label, self.lang) if spec is not None and spec.label else history.subject
            window = self.tr(f"window_{history.side}_{history.unit}", n=history.size)
            return (self.tr("sym_history", aggregate=self.tr("agg_" + history.aggregate),
                            input=label, window=window), self.unit_of(history.type))
        if name in self.table_of:
            p = m.parameter(name)
            keys = [self.words.label(k) for k in p.keys]
            by = (self.tr("param_by", keys=("、" if self.lang == "zh" else ", ").join(keys))
                  if p.keys else self.tr("param_scalar"))
            return self.tr("sym_parameter", by=by, n=self.table_of[name]), self.unit_of(p.type)
        d = m.definition(name)
        if d.kind == "output":
            meaning = self.tr("out_" + name) if name in ir.OUTPUT_NAMES else name
            if not defined_here:
                meaning = self.tr("sym_output_ref", meaning=meaning, n=self.equation_of[name])
            return meaning, self.unit_of(d.type, name)
        if defined_here:
            return self.tr("sym_let_here"), self.unit_of(d.type)
        return self.tr("sym_let", n=self.equation_of[name]), self.unit_of(d.type)

    def equations(self) -> list[Equation]:
        out = []
        for number, d in enumerate(self.m.definitions, start=1):
            formula = self.notation.definition(d)
            legend = []
            for use in formula.uses:
                meaning, unit = self.meaning(use.name, use.name == d.name)
                legend.append(LegendEntry(self.inline(use.latex), meaning, unit, use.name))
            out.append(Equation(number, d.name, d.kind, Markup(formula.mathml("block")),
                                formula.latex, legend))
        return out

    def rounding_note(self) -> str:
        masses = [self.tr("out_" + d.name) for d in self.m.definitions if d.quantized]
        if not masses:
            return ""
        if self.lang == "zh":
            listed = "、".join(masses[:-1]) + ("与" if len(masses) > 1 else "") + masses[-1]
        else:
            listed = ", ".join(masses[:-1]) + (" and " if len(masses) > 1 else "") + masses[-1]
            listed = listed[0].upper() + listed[1:]
        are = "" if self.lang == "zh" else ("are" if len(masses) > 1 else "is")
        return self.tr("calc_rounding", masses=listed, are=are)

    def uses_round(self) -> bool:
        """Whether any formula rounds to nearest (its tie rule then needs saying)."""
        exprs = [d.expr for d in self.m.definitions] + [r.cond for r in self.m.requires]
        return any(isinstance(e, ir.Round) and e.mode == "round" for root in exprs for e in _walk(root))

    def reduction_derived(self) -> bool:
        names = {d.name: d for d in self.m.definitions}
        r, b = names.get("reduction"), names.get("baseline")
        return bool(r and b and r.line == b.line)

    # ------------------------------------------------------------ cross-record rules
    def cross_rules(self) -> list[str]:
        w, m = self.words, self.m
        return ([w.duplicate(r) for r in m.duplicates] + [w.overlap(r) for r in m.overlaps]
                + [w.flag(r) for r in m.flags] + [w.bonus(r) for r in m.bonuses]
                + [w.cap(r) for r in m.caps] + [w.counter(c) for c in m.counters]
                + [w.counter_cap(c) for c in m.counter_caps] + [w.reward(r) for r in m.rewards])

    # ------------------------------------------------------------ examples
    def examples(self) -> tuple[list[ExampleView], dict]:
        from engine import Engine
        from engine.examples import compare, run_examples
        from engine.records import from_example

        engine = Engine(self.m)
        outcomes = run_examples(engine)
        views = []
        for example, outcome in zip(self.m.examples, outcomes):
            fields = self._example_fields(example)
            results = engine.evaluate_prepared([from_example(s.record, engine.schema) for s in example.steps])
            rows = []
            for number, (step, result) in enumerate(zip(example.steps, results), start=1):
                record = dict(step.record)
                shown = [Markup('<span class="field"><code>{}</code> = {}</span>').format(
                    f, self._field_cell(f, record.get(f))) for f in fields if record.get(f) is not None]
                rows.append(ExampleRow(number, Markup("<br>").join(shown), self._expected(step.expected),
                                       self._actual(step.expected, result),
                                       not compare(step, result)))
            views.append(ExampleView(example.title, outcome.passed, rows, outcome.failures))
        passed = sum(1 for o in outcomes if o.passed)
        return views, {"total": len(outcomes), "passed": passed, "failed": len(outcomes) - passed}

    def _example_fields(self, example: ir.Example) -> list[str]:
        present: set[str] = set()
        times_redundant = True
        for step in example.steps:
            record = dict(step.record)
            present |= set(record)
            others = [v for k, v in record.items() if k != "time" and k in self.inputs
                      and self.inputs[k].type.kind == Kind.DATETIME]
            if record.get("time") not in others:
                times_redundant = False
        fields = [spec.name for spec in self.m.inputs if spec.name in present]
        fields += [g.name for g in self.m.groups if dict(example.steps[0].record).get(g.name) is not None]
        if "activity" in present and any(dict(s.record).get("activity") for s in example.steps):
            fields.append("activity")
        if "time" in present and not times_redundant:
            fields.append("time")
        return fields

    def _field_cell(self, name: str, value) -> Markup:
        group = next((g for g in self.m.groups if g.name == name), None)
        if group is not None:  # a list of legs, each field in its own unit
            from engine.legs import reader, shown
            return Markup("{}").format(shown(reader(group).from_example(value), group) or "—")
        if value is None:
            return Markup("—")
        spec = self.inputs.get(name)
        if spec is not None and spec.type.kind == Kind.CHOICE:
            return _label_cell(self.words.choice(name, str(value)), str(value))
        if name == "time":
            return Markup("{}").format(values.local(value, self.meta.timezone))
        if spec is None:
            return Markup("{}").format(value)
        return Markup("{}").format(values.value(value, spec.type, self.meta.timezone))

    def _output(self, name: str, value) -> str:
        label = self.tr("ex_out_" + name)
        if name == "points":
            shown = str(value)
        else:
            unit = self.m.definition(name).type.unit if name in self.equation_of else SI_MASS
            shown = values.mass_mg(value, unit)
        return f"{label} {shown}"

    def _sep(self) -> Markup:
        return Markup("<br>")

    def _expected(self, e: ir.Expected) -> str:
        parts = []
        status = e.status if e.status_given else "credited"
        if e.status_given or not e.outputs:
            parts.append(self.tr("status_" + status) + (f" {e.code}" if e.code else ""))
        parts += [self._output(n, v) for n, v in e.outputs]
        if e.flags:
            parts.append(self.tr("flagged", codes=", ".join(e.flags)))
        if e.bonus is not None:
            parts.append(self.tr("bonus", n=e.bonus))
        for c in e.checks:  # named values and totals, as the example writes them
            decimals = f" (≈ {c.decimals})" if c.decimals is not None else ""
            parts.append(f"{'Σ ' if c.kind == 'total' else ''}{c.name} = {c.value}"
                         f"{' ' + c.unit if c.unit else ''}{decimals}")
        return self._sep().join(parts)

    def _actual(self, e: ir.Expected, r) -> str:
        head = self.tr("status_" + r.status) + (f" {r.code}" if r.code else "")
        if r.message and r.status != "credited":
            head += ("（" + pick(r.message, self.lang) + "）") if self.lang == "zh" else f" ({pick(r.message, self.lang)})"
        parts = []
        actual = {"reduction": r.reduction_mg, "points": r.points, "baseline": r.baseline_mg,
                  "project": r.project_mg, "leakage": r.leakage_mg}
        names = [n for n, _ in e.outputs]
        if not names and r.status in ("credited", "capped"):
            names = ["reduction", "points"]
        parts += [self._output(n, actual[n]) for n in names]
        if r.flags:
            parts.append(self.tr("flagged", codes=", ".join(r.flags)))
        if r.bonus:
            parts.append(self.tr("bonus", n=r.bonus))
        return self._sep().join([head] + parts)

    # ------------------------------------------------------------ version
    def citations(self) -> list[dict]:
        out = []
        for c in self.meta.citations:
            details = []
            for key, value in c.details:
                label = self.tr("cite_" + key) if ("cite_" + key) in i18n.STRINGS else key
                shown = value if key in ("url", "equation", "doi") else pick(value, self.lang)
                link = key == "url" and value.startswith(("https://", "http://"))
                details.append({"key": key, "label": label, "value": shown, "link": link})
            out.append({"text": c.text, "details": details})
        return out

    # ------------------------------------------------------------ all
    def context(self) -> dict:
        title, subtitle = self.titles()
        examples, summary = self.examples()
        from importlib.metadata import PackageNotFoundError, version
        try:
            tool = f"tanpu {version('tanpu')}"
        except PackageNotFoundError:  # pragma: no cover - running from a checkout
            tool = "tanpu"
        return {
            "lang": self.lang, "tr": self.tr, "sections": [self.tr(s) for s in SECTIONS],
            "title": title, "subtitle": subtitle, "meta": self.meta,
            "issuer": pick(self.meta.issuer, self.lang), "effective": self.effective(),
            "hash": self.digest, "description": self.description(),
            "inputs": self.input_rows(), "conditions": self.conditions(),
            "parameters": self.parameter_tables(), "tags": self.tags(),
            "equations": self.equations(), "reduction_derived": self.reduction_derived(),
            "rounding": self.rounding_note(),
            "round_note": self.tr("calc_round") if self.uses_round() else "",
            "cross_rules": self.cross_rules(), "examples": examples, "summary": summary,
            "citations": self.citations(), "tool": tool,
        }


_ENV: Optional[Environment] = None


def _environment() -> Environment:
    global _ENV
    if _ENV is None:
        _ENV = Environment(loader=PackageLoader("docgen", "templates"), autoescape=True,
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                           keep_trailing_newline=True)
    return _ENV


def document_context(methodology: ir.Methodology, lang: str = i18n.DEFAULT_LANG,
                     content_hash: Optional[str] = None) -> dict:
    """The document's content as render_html's template gets it (parameter tables with
    their sources and dates, equations as MathML, examples with their results, ...), for
    another page that shows parts of it (the web UI's methodology page). `tr(key)` in it
    gives the document's fixed strings in ``lang``."""
    if lang not in i18n.LANGS:
        raise ValueError(f"unknown language {lang!r}: use one of {', '.join(i18n.LANGS)}")
    digest = content_hash or compute_hash(methodology)
    return _Builder(methodology, lang, digest).context()


def render_html(methodology: ir.Methodology, lang: str = i18n.DEFAULT_LANG,
                content_hash: Optional[str] = None) -> str:
    """The methodology as one self-contained HTML document in ``lang`` (zh or en)."""
    if lang not in i18n.LANGS:
        raise ValueError(f"unknown language {lang!r}: use one of {', '.join(i18n.LANGS)}")
    digest = content_hash or compute_hash(methodology)
    builder = _Builder(methodology, lang, digest)
    return _environment().get_template("methodology.html.j2").render(**builder.context())


__all__ = ["render_html", "document_context", "unit_latex"]
