"""Conditions and cross-record rules as sentences, in Simplified Chinese and English.

A condition is put into words when it has one of the shapes applicability conditions
usually have (a choice among values, a comparison with a value or another field, and/or
of those); any other condition is shown as a formula only. The words are generated
from the same IR that runs, so they cannot say something the rule does not do.
"""

from __future__ import annotations

import re
from typing import Optional

from dsl.ir import ast as ir
from dsl.types import Kind

from . import i18n, values

_COMPARE = {
    "zh": {"<": "小于", "<=": "不大于", ">": "大于", ">=": "不小于", "==": "等于", "!=": "不等于"},
    "en": {"<": "is less than", "<=": "is at most", ">": "is greater than", ">=": "is at least",
           "==": "equals", "!=": "does not equal"},
}
_TEMPORAL = {
    "zh": {"<": "早于", "<=": "不晚于", ">": "晚于", ">=": "不早于", "==": "为", "!=": "不为"},
    "en": {"<": "is before", "<=": "is not after", ">": "is after", ">=": "is not before",
           "==": "is", "!=": "is not"},
}
_FLIP = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_PERIOD = {"zh": {"day": "每日", "week": "每周（周一至周日）", "month": "每月", "year": "每年"},
           "en": {"day": "calendar day", "week": "calendar week (Monday to Sunday)",
                  "month": "calendar month", "year": "calendar year"}}


def _ordinal_en(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(items: list[str], lang: str, word_zh: str = "或", word_en: str = "or") -> str:
    if len(items) == 1:
        return items[0]
    if lang == "zh":
        return "、".join(items[:-1]) + word_zh + items[-1]
    return ", ".join(items[:-1]) + f" {word_en} " + items[-1]


_ZH_GAP = re.compile(r"(?<=[\u3400-\u9fff])(?=[A-Za-z0-9])|(?<=[A-Za-z0-9%])(?=[\u3400-\u9fff])")


def zh_spaced(text: str) -> str:
    """A space between Chinese and Latin letters or digits: "speed不大于40 km/h" -> "speed 不大于 40 km/h"."""
    return _ZH_GAP.sub(" ", text)


def duration(seconds: int, lang: str) -> str:
    for size, zh, en in ((86400, "天", "day"), (3600, "小时", "hour"), (60, "分钟", "minute"),
                         (1, "秒", "second")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {zh}" if lang == "zh" else f"{n} {en}{'' if n == 1 else 's'}"
    return f"{seconds} s"


class Words:
    def __init__(self, methodology: ir.Methodology, lang: str):
        self.m = methodology
        self.lang = lang
        self.inputs = {spec.name: spec for spec in methodology.inputs}
        self.timezone = methodology.metadata.timezone

    # ------------------------------------------------------------ names
    def label(self, name: str) -> str:
        """What a reader calls a field: its label in the language, else its name."""
        spec = self.inputs.get(name)
        if spec is not None and spec.label:
            return i18n.pick(spec.label, self.lang)
        if name == "time":
            return i18n.t("sym_time", self.lang)
        return name

    def choice(self, input_name: Optional[str], value: str) -> str:
        spec = self.inputs.get(input_name) if input_name else None
        if spec is not None:
            labels = dict(spec.choice_labels)
            if value in labels:
                return i18n.pick(labels[value], self.lang)
        return value

    def _subject(self, e: ir.Expr) -> Optional[str]:
        if isinstance(e, ir.Input):
            return self.label(e.name)
        if isinstance(e, ir.Ref):
            if e.name in ("baseline", "project", "leakage", "reduction", "points"):
                return i18n.t("out_" + e.name, self.lang)
            return e.name
        if isinstance(e, ir.Lookup):
            number = [p.name for p in self.m.parameters].index(e.parameter) + 1
            if self.lang == "zh":
                return f"参数 {e.parameter} 的取值（表 {number}）"
            return f"the value of {e.parameter} (Table {number})"
        return None

    def _value(self, e: ir.Expr, subject: ir.Expr) -> Optional[str]:
        if isinstance(e, ir.Const):
            if e.type.kind == Kind.CHOICE:
                owner = subject.name if isinstance(subject, ir.Input) else e.type.choice_of
                return self.choice(owner, str(e.value))
            return values.value(e.value, e.type, self.timezone)
        return self._subject(e)

    # ------------------------------------------------------------ conditions
    def condition(self, e: ir.Expr, negated: bool = False) -> Optional[str]:
        """The condition in words, or None when it has no simple wording."""
        lang = self.lang
        if isinstance(e, ir.Not):
            return self.condition(e.operand, not negated)
        if isinstance(e, ir.Logic):
            op = e.op if not negated else ("or" if e.op == "and" else "and")
            left, right = self.condition(e.left, negated), self.condition(e.right, negated)
            if left is None or right is None:
                return None
            if lang == "zh":
                return f"{left}，{'且' if op == 'and' else '或'}{right}"
            return f"{left}, {op} {right}"
        if isinstance(e, ir.InSet):
            subject = self._subject(e.operand)
            items = [self._value(v, e.operand) for v in e.values]
            if subject is None or any(i is None for i in items):
                return None
            if lang == "zh":
                return zh_spaced(f"{subject}{'不' if negated else ''}为{_join(items, lang)}")
            if negated:
                return f"{subject} is not {_join(items, lang, word_en='or')}" if len(items) == 1 \
                    else f"{subject} is neither {_join(items, lang, word_en='nor')}"
            return f"{subject} is {_join(items, lang)}"
        if isinstance(e, ir.Compare):
            op = _FLIP[e.op] if negated else e.op
            subject = self._subject(e.left)
            other = self._value(e.right, e.left)
            if subject is None or other is None:
                return None
            kind = e.left.type.kind
            if kind in (Kind.DATE, Kind.DATETIME):
                verb = _TEMPORAL[lang][op]
            elif kind in (Kind.CHOICE, Kind.BOOLEAN, Kind.TEXT):
                verb = {"zh": {"==": "为", "!=": "不为"}, "en": {"==": "is", "!=": "is not"}}[lang][op]
            else:
                verb = _COMPARE[lang][op]
            return zh_spaced(f"{subject}{verb}{other}") if lang == "zh" else f"{subject} {verb} {other}"
        if isinstance(e, ir.Input) and e.type.kind == Kind.BOOLEAN:
            label = self.label(e.name)
            if lang == "zh":
                return f"{label}为{'“否”' if negated else '“是”'}"
            return f"{label} is {'false' if negated else 'true'}"
        return None

    # ------------------------------------------------------------ cross-record rules
    def _limit(self, cap: ir.Cap) -> str:
        if cap.target == "points":
            return f"{cap.limit} 分" if self.lang == "zh" else f"{cap.limit} points"
        if cap.limit % 1_000_000 == 0:
            return f"{cap.limit // 1_000_000} kg"
        return f"{values.number(cap.limit / 1000)} g"

    def cap(self, cap: ir.Cap) -> str:
        period = _PERIOD[self.lang][cap.period]
        if self.lang == "zh":
            what = "减排量" if cap.target == "reduction" else "积分"
            tail = "，积分按封顶后的减排量重新计算" if cap.target == "reduction" else ""
            return (f"每个碳账户{period}（按 {cap.timezone} 时间）计入的{what}不超过 {self._limit(cap)}。"
                    f"超出的记录只计入剩余额度，状态为“达到上限”（原因代码 CAP_REACHED）{tail}；奖励积分不受此限。")
        what = " of reduction" if cap.target == "reduction" else ""
        tail = "; its points are recomputed from the capped reduction" if cap.target == "reduction" else ""
        return (f"Each carbon account is credited at most {self._limit(cap)}{what} per {period} "
                f"({cap.timezone}). A record beyond it is credited what is left and is capped "
                f"(reason code CAP_REACHED){tail}. Bonus points are not capped.")

    def counter(self, counter: ir.Counter) -> str:
        unit = f" {counter.unit}" if counter.unit else ""
        if self.lang == "zh":
            return f"计数器 {counter.name}：每条计入的记录按其公式累加（整数{unit}），为负数的记录被拒绝（NEGATIVE_COUNTER）。"
        return (f"Counter {counter.name}: each credited record adds its formula's whole number{unit} "
                f"to the account's total; a record giving a negative amount is rejected (NEGATIVE_COUNTER).")

    def counter_cap(self, cap: ir.CounterCap) -> str:
        period = _PERIOD[self.lang][cap.period]
        if self.lang == "zh":
            return (f"每个碳账户{period}（按 {cap.timezone} 时间）计数器 {cap.counter} 累加不超过 {cap.limit}；"
                    f"超出的记录只累加剩余额度，状态为“达到上限”（CAP_REACHED），其减排量与积分不变。")
        return (f"Each carbon account adds at most {cap.limit} to counter {cap.counter} per {period} "
                f"({cap.timezone}); a record beyond it adds what is left and is capped (CAP_REACHED), "
                f"its reduction and points unchanged.")

    def reward(self, reward: ir.Reward) -> str:
        source = ("积分" if self.lang == "zh" else "points") if reward.source == "points" else reward.source
        if self.lang == "zh":
            return (f"碳账户每累计 {reward.every} {source}折合一个 {reward.name}（价值 {reward.worth} {reward.unit}），"
                    f"余数保留至该账户之后的记录。")
        return (f"Every {reward.every} {source} a carbon account accumulates give one {reward.name} "
                f"worth {reward.worth} {reward.unit}; the remainder stays for the account's next records.")

    def overlap(self, rule: ir.Overlap) -> str:
        start, end = self.label(rule.start), self.label(rule.end)
        message = i18n.pick(rule.message, self.lang)
        if self.lang == "zh":
            return (f"同一碳账户的记录，其{start}至{end}的时段不得相互重叠（一条记录可在另一条结束时开始）。"
                    f"与此前已接受的记录重叠的记录被拒绝，原因代码 {rule.code}：{message}。")
        return (f"The records of one carbon account may not overlap in time from {start} to {end} "
                f"(one may start when another ends). A record that overlaps an earlier accepted "
                f"record is rejected, reason code {rule.code}: {message}.")

    def duplicate(self, rule: ir.Duplicate) -> str:
        keys = _join([self.label(k) for k in rule.keys], self.lang, "和", "and")
        message = i18n.pick(rule.message, self.lang)
        if self.lang == "zh":
            return (f"同一碳账户中{keys}均相同的记录只计入第一条；其后的记录为重复记录，"
                    f"原因代码 {rule.code}：{message}。")
        return (f"Of the records of one carbon account with the same {keys}, only the first is "
                f"credited; a later one is a duplicate, reason code {rule.code}: {message}.")

    def bonus(self, rule: ir.Bonus) -> str:
        window = duration(rule.window_seconds, self.lang)
        if self.lang == "zh":
            return (f"碳账户在 {window}内被接受的第 {rule.ordinal} 条记录另得 {rule.points} 奖励积分"
                    f"（计数包括该记录本身）。")
        return (f"The {_ordinal_en(rule.ordinal)} accepted record of a carbon account within "
                f"{window} (itself included) earns {rule.points} bonus points.")

    def flag(self, rule: ir.Flag) -> str:
        window = duration(rule.window_seconds, self.lang)
        message = i18n.pick(rule.message, self.lang)
        if self.lang == "zh":
            return (f"碳账户在截至某条记录的 {window}内被接受的记录（含该记录）超过 {rule.count} 条时，"
                    f"该记录被标记 {rule.code}：{message}；标记不影响计入。")
        return (f"A record is flagged {rule.code} when more than {rule.count} accepted records of "
                f"the carbon account (itself included) fall within the {window} up to it: "
                f"{message}. A flag does not change what is credited.")
