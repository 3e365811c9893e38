"""FAQ problems in Chinese for the admin pages (the CLI keeps `kefu kb check`'s English).

`kb/loader.py`, `kb/schema.py` and `kb/slots.py` write their messages in English for the terminal; a
Chinese page showing them would mix languages, so each known message shape has a Chinese template
here. An unknown shape keeps its English detail after a Chinese lead-in, never disappears.
`tests/kb/test_problems_zh.py` feeds the loader broken files and checks every message is translated.
"""

from __future__ import annotations

import re

from kb.model import Problem

__all__ = ["problem_zh", "translate"]

_FIELD = {
    "id": "编号 id",
    "question": "标准问题 question",
    "similar": "相似问法 similar",
    "similar item": "相似问法",
    "answer": "答案 answer",
    "category": "分类 category",
    "keywords": "关键词 keywords",
    "keywords item": "关键词",
    "enabled": "启用 enabled",
    "name": "名称 name",
    "action": "动作 action",
    "reply": "回复 reply",
}

_WHAT = {
    "this faq entry": "这个问答条目",
    "the top level": "文件顶层",
    "the answer variants": "答案的渠道版本",
}


# The parser's own words for the usual slips, in Chinese (anything else is shown as the parser said it).
_YAML = [
    ("found character '\\t' that cannot start any token", "这里有 Tab 字符"),
    (
        "found character that cannot start any token",
        "有无法识别的字符（常见原因：Tab 缩进，或把中文标点当成了符号）",
    ),
    ("mapping values are not allowed here", "这里不能出现 “: ”（文本里含冒号时请给整段加引号）"),
    ("could not find expected ':'", "缺少冒号 “:”"),
    ("expected <block end>, but found", "缩进不一致"),
    ("found unexpected end of stream", "引号或括号没有闭合"),
    ("found undefined alias", "引用了不存在的锚点"),
    ("did not find expected key", "缩进不一致，或缺少 “键:”"),
    ("did not find expected '-' indicator", "列表项缺少 “- ”"),
]


def _yaml_zh(text: str) -> str:
    for english, chinese in _YAML:
        if english in text:
            return chinese
    return text


def _field(name: str) -> str:
    return _FIELD.get(name, name)


def _type(text: str) -> str:
    """`an integer (2024)` → `整数（2024）`."""
    names = {
        "a mapping": "映射（键: 值）",
        "a list": "列表",
        "nothing (null)": "空值",
        "binary data": "二进制数据",
        "an empty value": "空值",
        "an integer": "整数",
        "a number": "数字",
        "a float": "小数",
        "a boolean": "布尔值",
        "true/false": "布尔值",
        "a date": "日期",
        "a timestamp": "时间",
        "a string": "文本",
    }
    m = re.match(r"(.*?) \('(.*)'\)$", text)
    head, value = (m.group(1), m.group(2)) if m else (text, None)
    zh = names.get(head, head)
    return f"{zh}（{value}）" if value else zh


# (pattern over the English message, Chinese template over its groups)
_RULES: list[tuple[re.Pattern[str], str]] = [
    (r"faq entry has no 'id'.*", "问答条目缺少 id，请加一个稳定的英文编号，例如 id: return-how"),
    (r"faq entry has no 'question'.*", "问答条目缺少标准问题 question，请填写客户最常问的说法"),
    (r"faq entry has no 'answer'.*", "问答条目缺少答案 answer，请填写机器人要回复的内容"),
    (r"duplicate id '(.*)': already used at (.*)", "编号 “{0}” 重复，已在 {1} 使用"),
    (
        r"id '(.*)' is not a valid slug.*?(?:did you mean '(.*)'\?)?$",
        "编号 “{0}” 不合规：只能用小写字母、数字和 . _ -，并以字母或数字开头{1?，可改为 “{1}”}",
    ),
    (r"'(.*)' is empty; .*", "{F0} 为空，请填写"),
    (
        r"'(.*)' must be a string, got (.*?)(; put it in quotes.*)?$",
        "{F0} 必须是文本，现在是{T1}{2?，如果是文字请加引号}",
    ),
    (
        r"'(.*)' must be a list of strings, got (.*?)(?:; write it as a list: \[(.*)\])?$",
        "{F0} 必须是文本列表，现在是{T1}{2?，请写成列表：[{2}]}",
    ),
    (r"empty item in '(.*)'.*", "{F0} 里有空的一项，请删除或填写"),
    (r"'(.*)' must be true or false, got (.*)", "{F0} 只能是 true 或 false，现在是{T1}"),
    (r"'(.*)' must be one of (.*), got '(.*)'; .*", "{F0} 只能是 {1} 之一，现在是 “{2}”"),
    (
        r"question '(.*)' is also a question of entry (.*?) \((.*?)\); .*",
        "问题 “{0}” 已属于条目 {1}（{2}），同一个问题只能对应一个答案，请只保留在一个条目里",
    ),
    (r"question '(.*)' has no letters or digits in it", "问题 “{0}” 里没有文字或数字"),
    (
        r"key '(.*)' appears twice in (.*?) \(first at line (\d+)\).*",
        "{W1}里的 “{0}” 出现了两次（第一次在第 {2} 行），只会保留后一个",
    ),
    (r"unknown key '(.*)' in (.*?); did you mean '(.*)'\?", "{W1}里有未知的键 “{0}”，是不是想写 “{2}”？"),
    (r"unknown key '(.*)' in (.*?); allowed: (.*)", "{W1}里有未知的键 “{0}”，可用的键：{2}"),
    (r"keys in (.*) must be plain words, got (.*)", "{W0}的键必须是普通文字，现在是{T1}"),
    (
        r"'answer' must be a string or a mapping of channel variants \((.*)\), got (?:a list|(.*?));.*",
        "答案 answer 必须是文本，或按渠道（{0}）分别写的映射",
    ),
    (
        r"'answer' must be a string or a mapping of channel variants.*",
        "答案 answer 必须是文本，或按渠道分别写的映射",
    ),
    (
        r"answer variants need a 'default:' answer.*",
        "按渠道写的答案需要一个 default: 默认答案，没有专门版本的渠道用它",
    ),
    (
        r"each faq entry must be a mapping with id, question and answer, got (.*)",
        "每个问答条目都必须包含 id、question 和 answer，现在是{T0}",
    ),
    (r"'(.*)' must be (a list of .*), got (.*)", "{F0} 必须是列表，现在是{T2}"),
    (
        r"the top level must be a mapping with .*?; got (.*?)(; did you forget the 'faqs:' line.*)?$",
        "文件顶层必须是 faqs:、synonyms: 等段落，现在是{T0}{1?，是不是漏写了 faqs: 这一行？}",
    ),
    (
        r"invalid YAML: (.*?)(; indent with spaces, not tabs)?$",
        "YAML 格式错误：{Y0}{1?；请用空格缩进，不要用 Tab}",
    ),
    (r"file is not UTF-8.*", "文件不是 UTF-8 编码，请另存为 UTF-8（常见原因是 GBK/GB2312）"),
    (r"nesting too deep.*", "嵌套层级太深，FAQ 文件只需要几层"),
    (r"no faq entries found.*", "没有找到任何问答条目，请在 faqs: 下至少添加一条（id、question、answer）"),
    (
        r"all (\d+) faq entries are disabled.*",
        "全部 {0} 个问答条目都已停用（enabled: false），机器人将无可回答",
    ),
    (r"no FAQ files \(\*\.yaml\) in this directory", "这个目录里没有 FAQ 文件（*.yaml）"),
    (r"no such file or directory", "文件或目录不存在"),
    (r"not a regular file or directory", "不是普通文件或目录"),
    (r"cannot read(?: file)?: (.*)", "无法读取：{0}"),
    (
        r"synonym '(.*)' is already (.*); a word can belong to one group only",
        "同义词 “{0}” 已出现在其他同义词组（{1}），一个词只能属于一组",
    ),
    (r"a synonym group needs at least two words.*", "同义词组至少需要两个词（第一个是标准词）"),
    (r"each synonym group must be a list of words, got (.*)", "每个同义词组必须是词的列表，现在是{T0}"),
    (r"dictionary word '(.*)' contains a space.*", "词典词 “{0}” 含有空格，请分开写"),
    (r"intent has no 'name'.*", "意图缺少名称 name"),
    (r"intent has no 'action'.*", "意图缺少动作 action"),
    (
        r"intent has neither 'keywords' nor 'examples'.*",
        "意图既没有 keywords 也没有 examples，永远不会被触发",
    ),
    (r"intent has action 'answer' but no 'reply'.*", "意图的动作是 answer，但没有 reply 回复内容"),
    (r"duplicate intent name '(.*)': already defined at (.*)", "意图名称 “{0}” 重复，已在 {1} 定义"),
    (r"name '(.*)' is not a valid slug.*", "名称 “{0}” 不合规：只能用小写字母、数字和 . _ -"),
    (r"reply '(.*)' is already defined at (.*); keep one", "回复 “{0}” 已在 {1} 定义，请只保留一个"),
    (r"'replies' must be a mapping.*", "replies 必须是“短语键: 文本”的映射"),
    (r"action '(.*)' is not an action name.*", "动作 “{0}” 不是合法的动作名（例如 action_order_status）"),
    (r"form '(.*)' is not a form name.*", "表单 “{0}” 不是合法的表单名（例如 order_form）"),
    (r"required_slots/form need an 'action' to run", "required_slots/form 需要配合 action 使用"),
    (r"slot '(.*?)'.*", "槽位 “{0}” 配置有误：{all}"),
]

_COMPILED = [(re.compile(p + r"\Z", re.S), t) for p, t in _RULES]  # type: ignore[arg-type]
_TOKEN = re.compile(r"\{([FTWY]?)(\d+)(!hint)?\}|\{(\d+)\?([^{}]*(?:\{\d+\}[^{}]*)*)\}|\{all\}")


def _render(template: str, groups: tuple[str | None, ...], english: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "{all}":
            return english
        if m.group(4) is not None:  # {n?text}: the text only when group n matched
            value = groups[int(m.group(4))]
            return re.sub(r"\{(\d+)\}", lambda x: groups[int(x.group(1))] or "", m.group(5)) if value else ""
        kind, index, hint = m.group(1), int(m.group(2)), m.group(3)
        value = groups[index] or ""
        if hint:
            return ""
        if kind == "F":
            return _field(value)
        if kind == "T":
            return _type(value)
        if kind == "Y":
            return _yaml_zh(value)
        if kind == "W":
            return _WHAT.get(value, value)
        return value

    return _TOKEN.sub(sub, template)


def translate(message: str) -> str:
    """A loader message in Chinese (the English detail kept when its shape is unknown)."""
    for pattern, template in _COMPILED:
        m = pattern.match(message)
        if m:
            return _render(template, m.groups(), message)
    return f"内容有误：{message}"


def problem_zh(problem: Problem) -> str:
    """`文件 service.yaml 第 12 行（条目 return-how）：……` for the admin pages."""
    where = f"{problem.file} 第 {problem.line} 行"
    who = f"（条目 {problem.entry_id}）" if problem.entry_id else ""
    lead = "提示" if problem.severity == "warning" else ""
    return f"{where}{who}：{lead}{translate(problem.message)}"
