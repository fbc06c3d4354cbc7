"""The registry's messages in Chinese, for the zh pages (the API keeps the English).

The registry (registry/*.py) says why it refuses in English sentences with values in
them ("cannot approve cn.x 1.0.0: quorum not met: ..."); the pages show them through
`server_text` (a template filter `server` too), which translates them with the patterns
below, and the diagnostics' phrasebook for what they quote (types, parts of a check).
A sentence no pattern knows is shown as written: tests/webui/test_i18n.py drives the
refusals a user meets and fails on English.
"""

from __future__ import annotations

from dsl.messages_zh import PHRASES as DIAGNOSTIC_PHRASES
from dsl.messages_zh import Phrasebook

_V = r"(\S+ \S+)"  # a methodology and a version: "cn.x 1.0.0"

_STATES = [(s, zh) for s, zh in (
    ("draft", "草稿"), ("submitted", "已提交"), ("in_review", "评审中"),
    ("changes_requested", "需修改"), ("resubmitted", "已重新提交"), ("approved", "已批准"),
    ("rejected", "已否决"), ("published", "已发布"), ("superseded", "已被取代"),
    ("suspended", "已暂停"), ("retired", "已退役"), ("active", "启用"), ("closed", "已关闭"),
    ("frozen", "已冻结"))]

_ACTIONS = [
    ("submit", "提交"), ("open review", "开启评审"), ("open_review", "开启评审"),
    ("request changes", "要求修改"), ("request_changes", "要求修改"), ("resubmit", "重新提交"),
    ("approve", "批准"), ("reject", "否决"), ("withdraw", "撤回"), ("reset review", "重启评审"),
    ("reset_review", "重启评审"), ("publish", "发布"), ("supersede", "取代"),
    ("suspend", "暂停"), ("reinstate", "恢复"), ("retire", "退役"),
]

_PATTERNS: list[tuple[str, str]] = [
    *[(state, zh) for state, zh in _STATES],
    *[(action, zh) for action, zh in _ACTIONS],
    (r"(\w+) \(frozen\)", r"{\1}（已冻结）"),
    # workflow: transitions, review, votes
    (rf"cannot ([a-z ]+) {_V}: it is (\S+) \(a published version is immutable\); \S+ applies to (.+)",
     r"不能{\1} \2：它的状态是{\3}（已发布的版本不可更改）；此操作只适用于{\4}"),
    (rf"cannot ([a-z ]+) {_V}: it is (\S+); \S+ applies to (.+)",
     r"不能{\1} \2：它的状态是{\3}；此操作只适用于{\4}"),
    (rf"cannot change {_V}: it is (\S+) and a published version is immutable: publish a new version instead",
     r"不能修改 \1：它的状态是{\2}，已发布的版本不可更改：请发布新版本"),
    (rf"cannot change {_V}: it is (\S+)", r"不能修改 \1：它的状态是{\2}"),
    (rf"{_V} cannot be submitted: (.+)", r"\1 不能提交：{\2}"),
    (r"does not compile: (\d+) error\(s\)", r"无法编译：\1 个错误"),
    (r"the source declares methodology (\S+), not (\S+)", r"源文本声明的方法学是 \1，而不是 \2"),
    (r"the source declares version (\S+), not (\S+)", r"源文本声明的版本是 \1，而不是 \2"),
    (r"the examples could not run: (.+)", r"示例无法运行：\1"),
    (r"has no examples: a submission shows its results on examples", "没有示例：提交时须展示示例的结果"),
    (r"(\d+) of (\d+) example\(s\) fail: (.+)", r"\2 个示例中有 \1 个未通过：\3"),
    (r"version (\S+) is not MAJOR\.MINOR\.PATCH \(e\.g\. 1\.2\.0\)",
     r"版本号 \1 不是 MAJOR.MINOR.PATCH 格式（例如 1.2.0）"),
    (r"version (\S+) must be greater than (\S+), the last version of (\S+)",
     r"版本号 \1 必须大于 \3 的最新版本 \2"),
    (r"no methodology version (\d+)", r"没有编号为 \1 的方法学版本"),
    (r"no version (\S+) of (\S+)", r"\2 没有版本 \1"),
    (r"no methodology (\S+)", r"没有方法学 \1"),
    (r"methodology id (.+): lower-case letters, digits, '\.', '-' and '_'",
     r"方法学标识 \1：只能使用小写字母、数字、“.”、“-”和“_”"),
    (r"methodology (\S+) exists", r"方法学 \1 已存在"),
    (r"domain (.+): lower-case letters, digits, - and _", r"领域 \1：只能使用小写字母、数字、- 和 _"),
    (r"there is already a (\S+) committee", r"已有 \1 领域的委员会"),
    (r"no such committee", "没有这个委员会"),
    (r"no (\S+) committee", r"没有 \1 领域的委员会"),
    (r"a quorum needs at least one vote", "表决规则至少需要一票"),
    (r"approval share (\S+) must be in \(0, 1\]", r"通过票比例 \1 必须在 (0, 1] 之间"),
    (r"(\S+) needs the committee member role first", r"\1 需要先拥有委员会成员角色"),
    (r"(.+) needs a comment saying why", r"{\1}需要填写意见说明理由"),
    (r"asking for changes", "要求修改"), (r"a rejection", "否决"),
    (r"a conflict of interest", "申报利益冲突"), (r"a vote to (.+)", r"投{\1}票"),
    (r"a vote (.+)", r"投{\1}票"), (r"request changes", "要求修改"),
    (r"to ([a-z_ ]+)", r"{\1}"),
    (rf"{_V} is (\S+): votes are cast during a review", r"\1 的状态是{\2}：只能在评审期间投票"),
    (r"decision (.+): one of (.+)", r"决定 \1：必须是 \2 之一"),
    (r"(\S+) has already voted in review round (\d+)", r"\1 已在第 \2 轮评审中投过票"),
    (r"an empty comment", "意见为空"),
    (r"votes are cast during a review; this version is (\S+)", r"只能在评审期间投票；此版本的状态是{\1}"),
    (r"you have voted in this review round", "你已在本轮评审中投票"),
    # review threads, suggestions, pending reviews (registry/discussion.py)
    (r"a reply answers its thread: it has no line or suggestion of its own",
     "回复属于所在的讨论：它没有自己的行号或修改建议"),
    (rf"comment (\d+) is not on {_V}", r"意见 \1 不在 \2 上"),
    (r"a range of lines or a suggested change needs its first line", "行范围或修改建议需要填写起始行"),
    (r"line (\d+) is not in the source \(1 to (\d+)\)", r"第 \1 行不在源文本中（1 至 \2）"),
    (r"the last line (\d+) is not between (\d+) and (\d+)", r"结束行 \1 不在 \2 与 \3 之间"),
    (r"only the thread's author, the version's author or an administrator resolves a thread",
     "只有讨论的发起人、版本作者或管理员可以将讨论标为已解决"),
    (r"comment (\d+) is a reply: resolve its thread", r"意见 \1 是一条回复：请解决它所在的讨论"),
    (r"the thread is already resolved", "该讨论已解决"),
    (r"the thread is not resolved", "该讨论尚未解决"),
    (r"comment (\d+) suggests no change", r"意见 \1 没有修改建议"),
    (r"lines (\d+)-(\d+) changed since the suggestion was made: apply it by hand in the editor",
     r"第 \1–\2 行在提出建议后已被修改：请在编辑器中手动修改"),
    (r"the suggestion of comment (\d+) is applied already", r"意见 \1 的修改建议已被采纳"),
    (r"a pending comment is its author's only", "待提交的意见只属于其作者"),
    (r"no pending comment (\d+)", r"没有待提交的意见 \1"),
    (r"verdict (.+): one of (.+)", r"评审结论 \1：必须是 \2 之一"),
    (r"an empty review: write a comment or add comments on lines",
     "评审为空：请填写意见或在源文本行上添加意见"),
    (r"only its author edits or deletes a comment", "只有作者本人可以编辑或删除意见"),
    (r"comment (\d+) is deleted", r"意见 \1 已被删除"),
    (r"no comment (\d+)", r"没有意见 \1"),
    (rf"cannot (approve|publish) {_V}: (.+)", r"不能{\1} \2：{\3}"),
    (r"quorum (met|not met): (.+); needs (\d+) votes with (\S+) approving, from at least (\d+) people \((.+)\)",
     r"表决规则{\1}：{\2}；需要 \3 票，其中 \4 通过，且至少 \5 人投通过票（{\6}）"),
    (r"quorum (met|not met): (.+); needs (\d+) votes with (\S+) approving, from at least (\d+) people",
     r"表决规则{\1}：{\2}；需要 \3 票，其中 \4 通过，且至少 \5 人投通过票"),
    (r"(\d+) vote\(s\), (\d+) approving(.*)", r"\1 票，其中 \2 票通过{\3}"),
    (r", (\d+) abstention\(s\)(.*)", r"，\1 票弃权{\2}"),
    (r", (\d+) no longer counted", r"，\1 票不再计入"),
    (r"(\d+) of (\d+) votes", r"已有 \1 票，需要 \2 票"),
    (r"(\d+) of (\d+) approve, under (\S+)", r"\2 票中 \1 票通过，低于 \3"),
    (r"(\d+) approving people, (\d+) needed", r"投通过票的有 \1 人，需要 \2 人"),
    (r"every approver changed the committee's rules during the round",
     "所有投通过票者都在本轮评审期间修改过委员会规则"),
    (r"met", "已达到"), (r"not met", "未达到"),
    (r"a grace period cannot be negative", "宽限期不能为负数"),
    (r"(\S+) cannot take effect on (\S+): its source says `effective from (\S+)`, and it applies to nothing before that",
     r"\1 不能在 \2 生效：其源文本写明 `effective from \3`，在此之前不适用于任何活动"),
    (r"(\S+) is already published: (\S+) cannot follow it", r"\1 已发布：\2 不能排在它之后"),
    (r"(\S+) must take effect after (\S+) \(in effect from (\S+)\)",
     r"\1 必须在 \2（自 \3 起生效）之后生效"),
    # users and permissions (registry/users.py)
    (r"a password needs at least (\d+) characters", r"密码至少需要 \1 个字符"),
    (r"not an email address: (.+)", r"不是电子邮箱地址：\1"),
    (r"unknown role (.+) \(roles: (.+)\)", r"未知角色 \1（可用角色：\2）"),
    (r"no user (\d+)", r"没有编号为 \1 的用户"),
    (r"a user needs a name", "用户需要姓名"),
    (r"a user needs at least one role", "用户至少需要一个角色"),
    (r"a user with email (\S+) exists", r"电子邮箱为 \1 的用户已存在"),
    (r"an administrator cannot revoke their own administrator role", "管理员不能撤销自己的管理员角色"),
    (r"an administrator cannot deactivate themselves", "管理员不能停用自己"),
    (r"not signed in", "未登录"),
    (r"this account is deactivated", "此账户已停用"),
    (r"needs the expert role", "需要专家角色"),
    (r"needs the committee member role", "需要委员会成员角色"),
    (r"needs the administrator role", "需要管理员角色"),
    (r"needs the integrator role", "需要接入方角色"),
    (r"needs the integrator or administrator role", "需要接入方或管理员角色"),
    (r"only the author can change or submit a version", "只有作者可以修改或提交版本"),
    (r"only administrators, the author and the committee see a review", "只有管理员、作者和委员会可以查看评审"),
    (r"the author cannot vote on their own submission", "作者不能对自己的提交投票"),
    (r"only members of the (\S+) committee vote on this methodology", r"只有 \1 领域委员会的成员可以对此方法学投票"),
    (r"the author cannot run the review of their own submission", "作者不能主持自己提交的评审"),
    (r"an author cannot approve or publish their own work", "作者不能批准或发布自己的成果"),
    (r"only the author or an administrator can withdraw", "只有作者或管理员可以撤回"),
    (r"the one-time link is invalid or has expired", "一次性链接无效或已过期"),
    # tokens, accounts, ledger, rewards, retirements, reversals
    (r"(\S+) is not an active integrator: API tokens are for integrators", r"\1 不是启用的接入方：API 令牌只发给接入方"),
    (r"give the token a name \(what uses it\)", "请给令牌起个名字（说明谁在使用它）"),
    (r"no API token (\d+)", r"没有编号为 \1 的 API 令牌"),
    (r"no account (\d+)", r"没有编号为 \1 的账户"),
    (r"account (\d+) is closed: (.+)", r"账户 \1 已关闭：{\2}"),
    (r"nothing is attached to it", "不能再挂接任何账户"),
    (r"its status is final", "其状态不能再改变"),
    (r"it changes no more", "不能再修改"),
    (r"a name has at most (\d+) characters", r"名称最多 \1 个字符"),
    (r"account (\d+) is (\S+): it (retires|redeems) nothing", r"账户 \1 的状态是{\2}：不能\3"),
    (r"retires", "注销"), (r"redeems", "兑换"),
    (r"account (\d+) has (\d+) mg to retire, (.+)", r"账户 \1 可注销的减排量为 \2 mg，\3"),
    (r"give the amount once: in mg, g, kg or t", "请只给出一个数量：单位为 mg、g、kg 或 t"),
    (r"(.+) is not a positive whole number of milligrams", r"\1 不是正的整毫克数"),
    (r"the amount to retire is a positive whole number of milligrams", "注销数量必须是正的整毫克数"),
    (r"no certificate (\S+)", r"没有证书 \1"),
    (r"no reward (\d+)", r"没有编号为 \1 的奖励"),
    (r"(.+) is required", r"必须填写{\1}"),
    (r"(.+) has at most (\d+) characters", r"{\1}最多 \2 个字符"),
    (r"unknown time zone (.+)", r"未知时区 \1"),
    (r"reward (\d+) is not offered any more", r"奖励 \1 已不再提供"),
    (r"a redemption needs an idempotency key", "兑换需要幂等键"),
    (r"idempotency key (.+) was used for (?:a different request|another redemption.*)", r"幂等键 \1 已用于另一个请求"),
    (r"credit (\d+) was reversed already \(reversal (\d+)\)", r"记账 \1 已被冲正（冲正 \2）"),
    (r"credit (\d+) was reversed already", r"记账 \1 已被冲正"),
    (r"grams of credit (\d+) were retired (.+)", r"记账 \1 的减排量已被注销\2"),
    (r"name a credit by its id or by integrator, methodology and record id",
     "请用记账编号，或用接入方、方法学和记录编号指明一笔记账"),
    (r"(.+) does not compile: its caps cannot be corrected", r"\1 无法编译：其上限无法修正"),
    (r"a (\S+) account can be under a (.+) account or none, not under a (\S+)",
     r"{\1}账户只能挂在{\2}账户下或不挂接，不能挂在{\3}账户下"),
    (r"(\w+) or a (\w+)", r"{\1}或{\2}"),
    (r"individual", "个人"), (r"unit", "单位"), (r"project", "项目"), (r"region", "地区"),
    (r"frozen", "已冻结"),
    (r"a reversal's reason", "冲正理由"), (r"a retirement's purpose", "注销用途"),
    (r"a beneficiary", "受益方"), (r"a reward's name", "奖励名称"),
    (r"a reward's English name", "奖励英文名称"),
    (r"no (.+)", r"没有 \1"),
]

SERVER_PHRASES = Phrasebook(_PATTERNS, fallback=DIAGNOSTIC_PHRASES)


def server_text(english: str, lang: str) -> str:
    """A registry message in the reader's language (zh: translated where it is known)."""
    if lang != "zh" or not english:
        return english
    return SERVER_PHRASES.text(english)


__all__ = ["SERVER_PHRASES", "server_text"]
