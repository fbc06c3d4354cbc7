"""The diagnostics in Simplified Chinese, for the zh web UI (`tanpu check` stays English).

A diagnostic is made in English (dsl/messages.py: CATALOGUE, the one catalogue of codes,
and the checks' labels and help lines); this module translates one as it is shown, so
the checks keep a single way to report and the two languages cannot drift apart:

- the message: its English text is matched against the code's CATALOGUE template, which
  gives back the fields (`unknown name `{name}`` -> name), and ZH[code] is filled with them;
- fields, labels, help lines and notes: PHRASES, English patterns with their Chinese, tried
  on the whole text and then on its parts (a help line is often "did you mean ...; ...").

What is not known (a field value that is the author's own text, say) stays as written.
tests/dsl/test_messages_zh.py checks that every code has a Chinese template with the same
fields, and that each fixed label and help line of the checks is translated.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Optional

from .messages import CATALOGUE
from .zones import DEFAULT_TIMEZONE

ZH: dict[str, str] = {
    # file
    "E0001": "文件不是 UTF-8 文本",
    "E0002": "方法学文件以 `methodology ID \"标题\" version X.Y.Z {{ ... }}` 开头",
    "E0003": "文件过大（{size} 字节；上限 {limit}）",
    "E0004": "此行过长（{length} 个字符；上限 {limit}）",
    "E0005": "文件过长：超过 {limit} {what}",
    # syntax
    "E0101": "意外的 {found}",
    "E0102": "意外的字符 {char}",
    "E0103": "{place}没有写完",
    "E0104": "嵌套过深（超过 {limit} 层）",
    # names
    "E0201": "未知名称 `{name}`",
    "E0202": "`{name}` 被重复定义",
    "E0203": "未知函数 `{name}`",
    "E0204": "`{value}` 不是 `{choice}` 的取值",
    "E0205": "`{name}` 依赖于自身",
    "E0206": "`{name}` 是每条记录的内置字段，不能重新定义",
    "E0207": "`{name}` 不是输入项",
    "E0208": "`{name}` 是按 {keys} 取值的参数表：请写成 `{name}[...]` 查表",
    "E0209": "`{name}` 不是参数表",
    # types and units
    "E0301": "未知单位 `{unit}`",
    "E0302": "不能{action} {left} 与 {right}",
    "E0303": "应为{expected}，实际为{found}",
    "E0304": "`{name}` 必须是 CO2e 质量，但它是{found}",
    "E0305": "`points` 必须是整数，但它是{found}",
    "E0306": "`{func}` 需要 {expected} 个参数，实际为 {found} 个",
    "E0307": "`{func}` 的精度必须是常量，例如 `1 g` 或 `0.01`",
    "E0308": "两个分支的类型不同：{left} 与 {right}",
    "E0309": "单位 `{unit}` 带有偏移量（如 °C），不能用于计算",
    "E0310": "{what} 不是有效的{kind}",
    "E0311": "`{name}` 不是数值",
    "E0312": "此 `case` 未覆盖 {missing}：请补上这些情形或加上 `else`",
    "E0313": "没有判断对象的 `case` 需要 `else`",
    "E0314": "`{name}` 的值必须是整毫克，实际为 {found}",
    "E0315": "可选输入 `{name}` 是{kind}，没有空值：请用 `= ...` 给出默认值",
    "E0316": "对{kind}的 `case` 无法列出所有取值：请加上 `else`",
    "E0317": "计数器的单位必须计数某种事物（device、household、person、ride、trip）或是金额（CNY），实际为 `{unit}`",
    "E0330": "{problem}",
    "E0331": "行程段字段 `{name}` 是{kind}：行程段的字段只能是数量、数值、整数、布尔值、文本或选项",
    "E0332": "`{name}` 在此处不是行程段列表",
    "E0333": "列表不能嵌套：这里在对 `{outer}` 求和的内部又遍历行程段",
    "E0334": "`{var}` 不是此处正在遍历的行程段",
    "E0335": "`{name}` 是{found}：在窗口内 `within` 可以不同的键必须是日期时间输入",
    "E0336": "`{name}` 不是说明记录到达时间的日期时间输入",
    "E0337": "重复规则的 `where` 只能把一个输入与若干值比较",
    # parameters and tables
    "E0401": "`{name}` 从 {start}（方法学生效日）到 {first} 之间没有有效值",
    "E0402": "`{name}` 的各时段没有按日期顺序排列",
    "E0403": "参数表 `{name}` 缺少 {missing} 的值（自 {start} 起）",
    "E0404": "`{key}` 不是 `{keyname}` 的取值",
    "E0405": "键 {key} 在 `{name}` 中出现多次",
    "E0406": "按{kind} `{keyname}` 取值的参数表无法列出所有键：请加上 `otherwise reject CODE \"说明\"` 或 `otherwise 值`",
    "E0407": "`{name}` 按 {expected} 个键取值，实际为 {found} 个",
    "E0408": "按 `{keyname}` 取值的参数表需要选项、整数、文本或布尔输入，而不是{kind}",
    "E0409": "{problem}",
    "E0410": "`{name}` 自 {start} 起的取值没有注明来源",
    # metadata
    "E0501": "方法学缺少 `{field}`",
    "E0502": "`{field}` 被重复给出",
    "E0503": "未知时区 `{zone}`",
    "E0504": "`{text}` 不是有效的{kind}",
    "E0505": "方法学的结束日期（{until}）早于生效日期（{start}）",
    # rules
    "E0601": "方法学没有定义 `reduction`（或可推导出它的 `baseline`）",
    "E0602": "方法学没有定义 `points` 的换算",
    "E0603": "对 {target} 的上限必须是{expected}，实际为{found}",
    "E0604": "用于界定重叠的 `{name}` 必须是日期或日期时间输入，但它是{found}",
    "E0605": "时间窗口必须是时长，例如 `7 days` 或 `1 h`，实际为{found}",
    "E0606": "`{name}` 既被直接定义，又由 `baseline - project - leakage` 推导",
    "E0607": "序数 `{ordinal}` 必须是 1st 或更大",
    "E0608": "`{name}` 不是计数器",
    "E0609": "计数器 `{name}` 必须是整数，但它是{found}",
    "E0610": "对计数器 `{name}` 的上限必须是{expected}（至少为 0），实际为{found}",
    "E0611": "奖励至少需要每 1 个单位兑换一次，实际为 `every {found}`",
    "E0612": "`{source}` 已经换算为 `{other}`：每种积分或计数器只能对应一种奖励",
    "E0613": "奖励的价值必须是金额或数量，例如 `5 CNY` 或 `1 ride`，实际为{found}",
    # examples
    "E0701": "示例设置了 `{name}`，但它不是输入项",
    "E0702": "示例没有设置必填输入 `{name}`",
    "E0703": "示例中 `{name}` 的值应为{expected}，实际为{found}",
    "E0704": "未知原因代码 `{code}`",
    "E0705": "期望的 `{output}` 应为{expected}，实际为{found}",
    "E0706": "方法学没有示例",
    "E0707": "`{name}` 不是此方法学的 `let` 或输出",
    "E0708": "`total` 只能是 `reduction`、`points`、计数器或奖励的合计，而不是 `{name}`",
    # histories
    "E1001": "历史只能汇总数值、整数或数量输入；`{name}` 是{found}",
    "E1002": "窗口应为 1 到 {most} {unit}，实际为 {found}",
    "E1003": "历史不足时 `{name}` 的值必须是{expected}，实际为{found}",
    "E1004": "历史汇总的 `{name}` 使用了历史 `{history}`：窗口不能依赖另一个窗口",
    # warnings
    "W0101": "参数 `{name}` 从未被使用",
    "W0102": "`{name}` 已定义但从未被使用",
    "W0103": "输入 `{name}` 从未被使用",
    "W0201": "此分支永远不会被执行",
    "W0202": "此条件始终为 {value}",
    "W0301": f"上限周期没有时区；按 {DEFAULT_TIMEZONE} 处理",
    "W0302": "原因代码 `{code}` 没有使用 UPPER_SNAKE_CASE 写法",
    "W0401": "两个方法学自 {start}{where}起都覆盖 `{activity}`，且都没有说明哪个优先",
    # the checker itself
    "E9999": "检查器处理此文件时出错（{error}）：这是 Tanpu 的缺陷，不是文件的问题",
}

# English pattern (the whole text) -> Chinese; groups are put back with \1, \2 ...
_PHRASES: list[tuple[str, str]] = [
    # types (dsl/types.py describe, dsl/units.py describe)
    (r"a plain number", "纯数"),
    (r"a number", "数值"),
    (r"a mass", "质量"),
    (r"a length", "长度"),
    (r"a duration", "时长"),
    (r"a volume", "体积"),
    (r"an energy", "能量"),
    (r"a power", "功率"),
    (r"a speed", "速度"),
    (r"a mass per length", "单位长度质量"),
    (r"a mass per energy", "单位能量质量"),
    (r"a mass per volume", "单位体积质量"),
    (r"a per-volume length", "单位体积长度"),
    (r"a quantity of (.+)", r"量纲为 \1 的量"),
    (r"(a [a-z -]+|an [a-z -]+) \(([^()]+)\)", r"{\1}（\2）"),
    (r"a choice of `([^`]+)`", r"`\1` 的选项"),
    (r"a choice", "选项"),
    (r"a whole number", "整数"),
    (r"true or false", "布尔值"),
    (r"text", "文本"),
    (r"a date", "日期"),
    (r"a datetime", "日期时间"),
    (r"date", "日期"),
    (r"datetime", "日期时间"),
    (r"a number or quantity", "数值或数量"),
    (r"a mass such as (`[^`]+`)", r"质量，例如 \1"),
    (r"a condition \(true or false\)", "条件（真或假）"),
    (r"a datetime", "日期时间"),
    (r"(\d+) or more", r"\1 个或更多"),
    (r"(\d+) or (\d+)", r"\1 或 \2"),
    (r"whole number: it needs more than 64 bits", "整数：超出 64 位"),
    (r"number: it is out of the range of a binary64 float in SI units",
     "数值：换算为国际单位后超出 binary64 浮点数范围"),
    (r"`==` or `!=`", "`==` 或 `!=`"),
    # the parser (dsl/surface/parse.py)
    (r"the header", "文件头"),
    (r"this statement", "此语句"),
    (r"lines", "行"),
    (r"words, numbers and symbols", "个词、数字和符号"),
    (r"end of the statement", "语句结尾"),
    (r"the end of the file", "文件结尾"),
    (r"a name", "名称"),
    (r"a name (`.+`)", r"名称 \1"),
    (r"a number (`.+`)", r"数字 \1"),
    (r"a unit (`.+`)", r"单位 \1"),
    (r"a quoted text \(\"...\"\) (`.+`)", r"带引号的文本 \1"),
    (r"a quoted text \(\"...\"\)", "带引号的文本（\"...\"）"),
    (r"a date \(2024-05-20\)( `.+`)?", r"日期（2024-05-20）\1"),
    (r"a date and time \(2024-05-20T08:30\)( `.+`)?", r"日期时间（2024-05-20T08:30）\1"),
    (r"a unit", "单位"),
    (r"a methodology id", "方法学标识"),
    (r"a version \(1\.0\.0\)", "版本号（1.0.0）"),
    (r"a time zone \(Asia/Shanghai\)", "时区（Asia/Shanghai）"),
    (r"a language code \(en, zh\)", "语言代码（en、zh）"),
    (r"a provenance tag \((.+)\)", r"来源标记（\1）"),
    (r"an ordinal \(3rd\)", "序数（3rd）"),
    (r"a comparison \((.+)\)", r"比较运算符（\1）"),
    (r"an expression", "表达式"),
    (r"`\*` or `/`", "`*` 或 `/`"),
    (r"expected one of (.+), \.\.\. after this", r"此处之后应为以下之一：{\1}……"),
    (r"expected one of (.+), \.\.\.", r"应为以下之一：{\1}……"),
    (r"expected (.+) or (.+) after this", r"此处之后应为 {\1} 或 {\2}"),
    (r"expected (.+) after this", r"此处之后应为 {\1}"),
    (r"expected (.+) or (.+)", r"应为 {\1} 或 {\2}"),
    (r"expected (.+)", r"应为 {\1}"),
    # the syntax labels (dsl/surface/syntax_errors.py)
    (r"a `require` needs `else CODE \"message\"` after its condition",
     "`require` 的条件之后需要 `else CODE \"说明\"`"),
    (r"a reason needs a code and a quoted message: `else CODE \"message\"`",
     "原因需要代码和带引号的说明：`else CODE \"说明\"`"),
    (r"`=` defines a value; compare with `==`", "`=` 用于定义值；比较请用 `==`"),
    (r"a unit is written in square brackets, e\.g\. `quantity \[km\]`",
     "单位写在方括号中，例如 `quantity [km]`"),
    (r"choice values go in braces: (`.+`)", r"选项值写在花括号中：\1"),
    (r"an input needs a type after the colon: (.+)", r"输入项的冒号后需要类型：\1"),
    (r"a parameter needs a value: (`.+`) or a block (`.+`)", r"参数需要取值：\1 或代码块 \2"),
    (r"an example needs `=>` and what it expects, e\.g\. (`.+`)",
     r"示例需要 `=>` 和期望结果，例如 \1"),
    (r"record fields are separated by commas: (`.+`)", r"记录字段之间用逗号分隔：\1"),
    (r"a `case` ends with `end`", "`case` 以 `end` 结尾"),
    (r"an `if` needs both `then` and `else`", "`if` 需要同时有 `then` 和 `else`"),
    # labels, help lines and notes of the checks
    (r"did you mean (`[^`]+`)\?", r"是否想写 \1？"),
    (r"the values are (.+)", r"可选值为 \1"),
    (r"the codes are (.+)", r"原因代码有 \1"),
    (r"the functions are (.+)", r"可用函数有 \1"),
    (r"no rule gives a reason code", "没有规则给出原因代码"),
    (r"not defined", "未定义"),
    (r"first defined here", "首次定义于此"),
    (r"first given here", "首次给出于此"),
    (r"(`[^`]+`) uses (`[^`]+`)", r"\1 使用了 \2"),
    (r"(`[^`]+`) in (.+) also covers (`[^`]+`)", r"\2 中的 \1 也覆盖 \3"),
    (r"every value is covered above", "所有取值在上面都已覆盖"),
    (r"write `reduction = \.\.\.`, or `baseline = \.\.\.` with `project` and `leakage` if any",
     "请写 `reduction = ...`，或写 `baseline = ...` 并视情况写 `project` 和 `leakage`"),
    (r"say how a reduction becomes points, e\.g\. (`.+`)", r"说明减排量如何换算为积分，例如 \1"),
    (r"units are written like (.+)", r"单位的写法如 \1"),
    (r"write the zone of the calendar, e\.g\. (`.+`), or (`.+`) in the header",
     r"请写明日历所用的时区，例如 \1，或在文件头写 \2"),
    (r"add `precedes (.+)` to the header of the one that should apply \(or `precedes (.+)` to the other\)",
     r"在应优先适用的方法学文件头中加上 `precedes \1`（或在另一个中加上 `precedes \2`）"),
    (r"say which activity types it credits, e\.g\. (`.+`)", r"说明它给哪些活动类型记减排，例如 \1"),
    (r"say from when it applies, e\.g\. (`.+`)", r"说明从何时起适用，例如 \1"),
    (r"text, true/false, whole numbers and quantities default to \"\", false, 0 and 0",
     "文本、true/false、整数和数量的默认值分别为 \"\"、false、0 和 0"),
    (r"say where the value comes from: (.+)", r"请注明取值来源：\1"),
    (r"add the missing keys, or say what happens without one: (`.+`) or (`.+`)",
     r"请补上缺少的键，或说明缺少时如何处理：\1 或 \2"),
    (r"start its first value no later than the methodology's `effective from` date",
     "其第一个值的开始日期不得晚于方法学的 `effective from` 日期"),
    (r"convert explicitly, e\.g\. (`.+`) or (`.+`)", r"请显式换算，例如 \1 或 \2"),
    (r"convert explicitly, e\.g\. (`.+`)", r"请显式换算，例如 \1"),
    (r"multiply a factor by an activity amount so that the units give a mass, e\.g\. (`.+`)",
     r"用因子乘以活动量，使单位得出质量，例如 \1"),
    (r"a plain number needs a unit here, e\.g\. `2 km` rather than `2`",
     "此处的纯数需要单位，例如写 `2 km` 而不是 `2`"),
    (r"both sides must be the same kind of quantity; units convert automatically \(g and kg, km and mile\)",
     "两边必须是同一类量；单位会自动换算（g 与 kg、km 与 mile）"),
    (r"say to what it is rounded, e\.g\. (`.+`), or make it a number first, e\.g\. (`.+`)",
     r"请说明舍入到什么精度，例如 \1，或先化为纯数，例如 \2"),
    (r"a `case` nests one level per `when`: a table \(`parameter \.\.\. by`\) holds many values better",
     "`case` 每个 `when` 嵌套一层：取值多时用参数表（`parameter ... by`）更合适"),
    (r"break it into several lines; a long text can be split into several strings or `note` lines",
     "请拆成多行；长文本可拆成多个字符串或多行 `note`"),
    (r"a methodology this long is several methodologies", "这么长的方法学应拆成多个方法学"),
    (r"a methodology this long is several methodologies, or its tables belong in fewer rows",
     "这么长的方法学应拆成多个方法学，或者其参数表应精简行数"),
    (r"the file and the error were saved in (.+): please attach them to a bug report",
     r"文件和错误已保存在 \1：请附在缺陷报告中"),
    (r"please report it with the file", "请连同文件一起报告此问题"),
    (r"byte (0x[0-9a-f]+) at offset (\d+) is not UTF-8", r"偏移 \2 处的字节 \1 不是 UTF-8"),
    (r"(`[^`]+`) is keyed by (.+): give a value for each key in `\{ \.\.\. \}`",
     r"\1 按 \2 取值：请在 `{ ... }` 中为每个键给出值"),
    (r"(`[^`]+`) is keyed by (.+): give a value for each key", r"\1 按 \2 取值：请为每个键给出值"),
    (r"(`[^`]+`) is a single value, not a table: write (`[^`]+`) without brackets",
     r"\1 是单个值而不是参数表：请不带方括号写 \2"),
    (r"(`[^`]+`) has keyed values but no `by`: say what they are keyed by, e\.g\. `by mode`",
     r"\1 有按键给出的值但没有 `by`：请说明按什么取值，例如 `by mode`"),
    (r"checking took longer than (.+) s and was stopped; shorten the file, or report it if it is short",
     r"检查用时超过 \1 秒，已停止；请缩短文件，如果文件并不长请报告此问题"),
    # counters and rewards
    (r"write a count unit such as (.+)", r"请写计数单位，例如 \1"),
    (r"a counter adds whole units, e\.g\. (`.+`) or (`.+`)", r"计数器按整数单位累加，例如 \1 或 \2"),
    (r"write what one reward is worth, e\.g\. (`.+`) or (`.+`)", r"请写明一份奖励的价值，例如 \1 或 \2"),
    (r"a whole number of (\S+)", r"\1 的整数"),
    (r"a quantity in (\S+) \((.+)\)", r"以 \1 计的量（{\2}）"),
    (r"a count of (\S+)", r"\1 的计数"),
    (r"write `reduction = \.\.\.` \(or `baseline = \.\.\.` with `project` and `leakage`\), `points = \.\.\.`, or a `counter`",
     "请写 `reduction = ...`（或写 `baseline = ...` 并配以 `project` 和 `leakage`）、`points = ...`，或一个 `counter`"),
    (r" in (.+)", r"（在 \1）"),
    # lists of legs (dsl/check/legs.py), histories, duplicate rules
    (r"a list input declares one name", "一个列表输入只声明一个名称"),
    (r"write one `input NAME: list \{ \.\.\. \}` per group", "每组写一个 `input NAME: list { ... }`"),
    (r"a list input takes `at least N`, `at most N`, `between N and M` and `label` only",
     "列表输入只接受 `at least N`、`at most N`、`between N and M` 和 `label`"),
    (r"give each field its own default or `optional`", "请为每个字段单独给出默认值或 `optional`"),
    (r"over legs: sum or count", "对行程段只能用 sum 或 count"),
    (r"declare it: (`.+`)", r"请先声明：\1"),
    (r"(`[^`]+`) already names something else", r"\1 已是其他事物的名称"),
    (r"call the leg `leg`, `l` or `segment`", "请把行程段命名为 `leg`、`l` 或 `segment`"),
    (r"`count` counts legs", "`count` 计数的是行程段"),
    (r"write (`count\(.+\)`)", r"请写成 \1"),
    (r"a leg's fields are read inside (`.+`)", r"行程段的字段只能在 \1 内读取"),
    (r"not a field of the legs", "不是行程段的字段"),
    (r"write one of its fields, e\.g\. (`.+`)", r"请写出它的某个字段，例如 \1"),
    (r"a list is read through (`.+`) or (`.+`)", r"列表通过 \1 或 \2 读取"),
    (r"name an input declared with (`.+`), (`.+`) or (`.+`), or a (`let`) of such a type",
     r"请写用 \1、\2 或 \3 声明的输入，或这类类型的 \4"),
    (r"aggregate an input, or a definition computed from the record's own inputs and parameters",
     "请汇总一个输入，或只由本条记录的输入和参数计算的定义"),
    (r"name an input declared with (`.+`), (`.+`) or (`.+`)", r"请写用 \1、\2 或 \3 声明的输入"),
    (r"e\.g\. (`.+`) or (`.+`)", r"例如 \1 或 \2"),
    # E0302's actions
    (r"add", "相加"), (r"subtract", "相减"), (r"multiply", "相乘"), (r"divide", "相除"),
    (r"compare", "比较"), (r"round to", "舍入到"), (r"choose between", "在其间选择"),
    (r"true", "真"), (r"false", "假"),
    # the most general last
    (r"(.+?) (\+|-|\*|/|<=|>=|<|>|==|!=) (.+)", r"{\1} \2 {\3}"),  # E0302's label
    (r"(`[^`]+`) is (.+)", r"\1 是{\2}"),
]


class Phrasebook:
    """English patterns, each matched against a whole text, with their Chinese: `{\\1}` in
    the Chinese is group 1 translated in turn (a list item by item), `\\1` is it as written.
    The first pattern that matches wins: the general ones go last."""

    def __init__(self, patterns: list[tuple[str, str]], fallback: Optional["Phrasebook"] = None):
        self.patterns = [(re.compile(pattern, re.DOTALL), zh) for pattern, zh in patterns]
        self.fallback = fallback

    def phrase(self, text: str) -> Optional[str]:
        """The Chinese of one English phrase, or None when no pattern matches it whole."""
        for pattern, zh in self.patterns:
            match = pattern.fullmatch(text)
            if match:
                groups = ["" if g is None else g for g in match.groups()]

                def group(m: re.Match) -> str:
                    return groups[int(m.group(1)) - 1]

                def inner(m: re.Match) -> str:
                    part = groups[int(m.group(1)) - 1]
                    found = self.phrase(part)
                    if found is None and "; " in part:  # sentences: each
                        return self.text(part)
                    if found is None and ", " in part:  # a list: each item
                        return "、".join(self.phrase(p) or p for p in part.split(", "))
                    return part if found is None else found

                out = re.sub(r"\{\\(\d)\}", inner, zh)
                return re.sub(r"\\(\d)", group, out)
        return self.fallback.phrase(text) if self.fallback else None

    def text(self, english: str) -> str:
        """The whole in Chinese, else each "; "-separated part, else as written."""
        if not english:
            return english
        whole = self.phrase(english)
        if whole is not None:
            return whole
        parts = english.split("; ")
        if len(parts) > 1:
            return "；".join(self.text(part) for part in parts)
        return english


PHRASES = Phrasebook(_PHRASES)


def phrase(text: str) -> Optional[str]:
    return PHRASES.phrase(text)


def text(english: str) -> str:
    """A label, help line or note in Chinese (as written when no pattern knows it)."""
    return PHRASES.text(english)


@lru_cache(maxsize=None)
def _template(code: str) -> Optional[re.Pattern]:
    english = CATALOGUE.get(code)
    if english is None:
        return None
    pattern, seen = [], set()
    shaped = {"start": r"\d{4}-\d{2}-\d{2}", "until": r"\d{4}-\d{2}-\d{2}"}  # fields side by side
    for literal, field, _spec, _conv in string.Formatter().parse(english):
        pattern.append(re.escape(literal))
        if field is None:
            continue
        if field in seen:
            pattern.append(f"(?P={field})")
        else:
            seen.add(field)
            pattern.append(f"(?P<{field}>{shaped.get(field, '.*?')})")
    return re.compile("".join(pattern), re.DOTALL)


def fields_of(code: str, message: str) -> Optional[dict[str, str]]:
    """The fields a catalogue message was made from (None: not made from the template)."""
    template = _template(code)
    match = template.fullmatch(message) if template else None
    return match.groupdict() if match else None


def message(code: str, english: str) -> str:
    """The Chinese of a diagnostic's message, or the English when it cannot be rebuilt."""
    fields = fields_of(code, english)
    if fields is None or code not in ZH:
        return english
    return ZH[code].format(**{k: phrase(v) or v for k, v in fields.items()})


def translate(diagnostic: dict) -> dict:
    """A diagnostic as JSON (Diagnostic.to_json) with its texts in Chinese."""
    out = dict(diagnostic)
    code, english = out.get("code", ""), out.get("message", "")
    out["message"] = message(code, english) if code in CATALOGUE else text(english)
    for key in ("label", "help"):
        if out.get(key):
            out[key] = text(out[key])
    if out.get("notes"):
        out["notes"] = [{**n, "message": text(n.get("message", ""))} for n in out["notes"]]
    return out


__all__ = ["ZH", "PHRASES", "Phrasebook", "fields_of", "message", "phrase", "text", "translate"]
