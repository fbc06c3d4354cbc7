"""The words of a record's explanation (engine/explain.render) in Chinese, for the zh
pages of the web UI. Here, beside the engine, so that the engine never imports the web UI:
the web UI chooses the language and passes it to render(). Names, values, units, codes
and the methodology's own text (a history window as written) stay as they are.
"""

from __future__ import annotations

# kind -> the line's text; the fields are the step's (engine/explain.render fills them)
LINES = {
    "input": "  输入　　 {name} = {shown}",
    "parameter": "  参数　　 {name}{key} = {shown}   自 {from_} 起生效；来源：{source}{tag}",
    "let": "  中间值　 {name} = {shown}{note}   第 {line} 行",
    "output": "  输出　　 {name} = {shown}{note}   第 {line} 行",
    "counter": "  计数器　 {name} = {shown}{note}   第 {line} 行",
    "history": "  历史　　 {name} = {value}   {window}，第 {line} 行",
    "require": "  条件　　 {code} {verdict}   第 {line} 行",
    "rule": "  规则　　 {status} {code}：{message}",
    "counted": "  计数　　 {name} + {amount}{unit}   账户累计 {total}",
    "reward": "  奖励　　 {name} × {count} = {value}   每 {every} {source}；余 {remainder}",
}
WORDS = {
    "passed": "通过", "FAILED": "未通过", "none (short or empty)": "无（历史不足或为空）",
    "capped": "已封顶",
    # result statuses (engine/result.py)
    "credited": "已计入", "rejected": "已拒绝", "duplicate": "重复",
    "not_applicable": "不适用", "invalid": "无效",
}


def message(text: str) -> str:
    """A rule's message (cross-record rules, caps) through the diagnostics' phrasebook."""
    from dsl.messages_zh import PHRASES
    return PHRASES.text(text)
