"""Every customer-facing text of the handoff, in one place, following Chinese service norms.

您好 and 您 throughout; an apology when we make the customer wait or cannot serve them; always a next step
(what happens now, what they can do). Functions take what varies, so the wording is tested once.
"""

from __future__ import annotations

from datetime import datetime

from handoff.csat import CSAT_QUESTION

__all__ = [
    "agent_joined",
    "agent_left",
    "auto_closed",
    "back_to_bot",
    "closed_by_agent",
    "format_resume_time",
    "idle_reminder",
    "no_agent_online",
    "position_update",
    "queued",
    "thanks_for_rating",
    "ticket_followup",
    "transferred",
]

_WEEKDAYS = "一二三四五六日"


def _check_position(position: int) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or position < 1:
        raise ValueError(f"queue position must be a positive integer, got {position!r}")
    return position


def queued(position: int) -> str:
    """Right after the handoff: the customer is in the queue at `position` (1-based)."""
    _check_position(position)
    if position == 1:
        return "已为您转接人工客服，当前排队第 1 位，客服接入后会第一时间回复您，请稍候。"
    return f"已为您转接人工客服，当前排队第 {position} 位，请您耐心等待，客服接入后会第一时间回复您。"


def position_update(position: int) -> str:
    """The customer's place in the queue changed."""
    _check_position(position)
    if position == 1:
        return "您好，您已排在第 1 位，客服马上为您服务，请稍候。"
    return f"您好，您当前排队第 {position} 位，感谢您的耐心等待。"


def agent_joined(agent_name: str | None) -> str:
    """An agent took the conversation: "客服 <name> 为您服务"."""
    name = (agent_name or "").strip()
    if not name:
        return "您好，人工客服为您服务，请问有什么可以帮您？"
    return f"您好，客服 {name} 为您服务，请问有什么可以帮您？"


def agent_left(others_online: bool) -> str:
    """The agent serving the customer went offline: back in the queue, honest about who can take over."""
    text = "非常抱歉，刚才为您服务的客服暂时离开了。"
    if others_online:
        return text + "已为您重新排队，其他客服接入后会第一时间回复您，请稍候。"
    return text + "当前暂时没有其他客服在线，您的问题已为您保留，客服上线后会第一时间回复您。"


def idle_reminder(minutes_left: int | None = None) -> str:
    """The customer has been silent; the conversation will close soon unless they answer."""
    if minutes_left is not None and minutes_left >= 1:
        return (
            f"您好，请问您还在吗？如果 {minutes_left} 分钟内没有收到您的回复，本次会话将自动结束，"
            "您之后随时可以再次联系我们。"
        )
    return (
        "您好，请问您还在吗？如果一段时间内没有收到您的回复，本次会话将自动结束，您之后随时可以再次联系我们。"
    )


def auto_closed(with_csat: bool = False) -> str:
    """The conversation was closed after the customer's silence (optionally followed by the CSAT question)."""
    text = "由于长时间没有收到您的回复，本次会话已自动结束。如还有问题，欢迎随时给我们发消息。"
    return f"{text}\n{CSAT_QUESTION}" if with_csat else text


def closed_by_agent(agent_name: str | None = None) -> str:
    """The agent ended the conversation; asks the satisfaction question."""
    name = (agent_name or "").strip()
    who = f"客服 {name} 的" if name else ""
    return f"本次{who}服务已结束，感谢您的耐心与支持。\n{CSAT_QUESTION}"


def thanks_for_rating(rating: int) -> str:
    """After a CSAT answer: thanks, and an apology with a next step when the rating is low."""
    if not 1 <= rating <= 5:
        raise ValueError(f"rating must be 1–5, got {rating!r}")
    if rating <= 2:
        return "非常抱歉本次服务没有让您满意，您的评价我们已经收到，会认真改进。如问题仍未解决，欢迎随时联系我们。"
    if rating == 3:
        return "感谢您的评价，我们会继续努力做得更好。如还有问题，欢迎随时联系我们。"
    return "感谢您的评价与支持，祝您生活愉快！如还有问题，欢迎随时联系我们。"


def format_resume_time(resumes_at: datetime, now: datetime) -> str:
    """When service resumes, as a customer reads it: 今天 18:00 / 明天 09:00 / 后天（周一）08:30 / 11月28日（周五）09:00."""
    # Both datetimes must be in the deployment's local time zone; the caller converts.
    days = (resumes_at.date() - now.date()).days
    clock = resumes_at.strftime("%H:%M")
    if days <= 0:
        return f"今天 {clock}"
    if days == 1:
        return f"明天 {clock}"
    if days == 2:  # name the weekday too: "后天" alone is easy to misread over a weekend
        return f"后天（周{_WEEKDAYS[resumes_at.weekday()]}）{clock}"
    return f"{resumes_at.month}月{resumes_at.day}日（周{_WEEKDAYS[resumes_at.weekday()]}）{clock}"


def no_agent_online(
    resumes_at: datetime | None = None, *, now: datetime | None = None, service_hours: str | None = None
) -> str:
    """Nobody of the group is online: say so honestly; the message is kept as a 留言 and answered later."""
    text = "非常抱歉，当前暂时没有人工客服在线。您的留言我们已经记录，"
    if resumes_at is not None and now is not None:
        text += f"客服将于 {format_resume_time(resumes_at, now)} 上线后第一时间回复您。"
    else:
        text += "客服上线后会第一时间回复您。"
    if service_hours:
        text += f"人工客服服务时间：{service_hours.strip()}。"
    return text + "您也可以继续描述问题，我们会一并处理。"


def ticket_followup() -> str:
    """A further message while the 留言 waits: confirm it was added, without repeating the whole notice."""
    return "您好，您补充的内容已记录，客服上线后会一并为您处理。"


def transferred(to_group: str | None = None, to_agent_name: str | None = None) -> str:
    """The conversation is being passed to another group or agent."""
    agent = (to_agent_name or "").strip()
    group = (to_group or "").strip()
    if agent:
        return f"您好，已为您转接给客服 {agent}，请稍候，马上为您服务。"
    if group:
        return f"您好，为了更好地解决您的问题，正在为您转接{group}客服，请稍候。"
    return "您好，正在为您转接其他客服，请稍候。"


def back_to_bot() -> str:
    """The human part is over and the bot answers again; says how to get a human back."""
    return "人工服务已结束，接下来由智能客服继续为您服务。如需人工帮助，请随时回复“转人工”。"
