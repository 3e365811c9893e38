"""Agent management for admins (`/admin/api/agents…`): what `kefu agent add|list|disable` does, in the browser.

- `GET /admin/api/agents` — every agent (role, groups, capacity, enabled, presence, load) and the
  configured skill groups;
- `POST /admin/api/agents {name, role, groups, max_chats}` — create one; the token is in the answer, once;
- `PATCH /admin/api/agents/{id} {role?, groups?, max_chats?, enabled?}` — change or disable (a disabled
  agent's token stops working at once and they show offline);
- `POST /admin/api/agents/{id}/token` — a new token (the old one stops working), shown once.

Errors are Chinese (the admin page shows them as they come); every change is in the audit log.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.http.auth import Caller, require_admin
from gateway.http.bodies import http_error, path_id, read_json
from gateway.keys import HANDOFF, RUNTIME
from gateway.storage import Conflict
from handoff.agents import (
    MAX_CHATS_LIMIT,
    AgentInfo,
    Role,
    new_token,
    validate_agent_name,
    validate_group_name,
)

ROLES_ZH = {"agent": "客服", "supervisor": "主管", "admin": "管理员"}


def agent_admin_routes() -> list[web.AbstractRouteDef]:
    """Routes of agent management."""
    return [
        web.get("/admin/api/agents", list_agents),
        web.post("/admin/api/agents", add_agent),
        web.patch("/admin/api/agents/{id}", update_agent),
        web.post("/admin/api/agents/{id}/token", reset_token),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _bad(message: str) -> web.HTTPException:
    return http_error(web.HTTPBadRequest, message)


def _configured_groups(request: web.Request) -> tuple[str, ...]:
    return request.app[HANDOFF].rules.group_names


def _agent_json(info: AgentInfo) -> dict[str, Any]:
    return {
        "id": int(info.id),
        "name": info.name,
        "role": info.role.value,
        "groups": sorted(info.groups),
        "max_chats": info.max_chats,
        "enabled": info.enabled,
    }


async def _body(request: web.Request) -> dict[str, Any]:
    data = await read_json(request, request.app[RUNTIME].settings.server.max_body_bytes)
    if not isinstance(data, dict):
        raise _bad("请求体必须是 JSON 对象")
    return data


def _role(value: Any) -> Role:
    if not isinstance(value, str) or value not in ROLES_ZH:
        raise _bad("角色 role 只能是 agent（客服）、supervisor（主管）或 admin（管理员）")
    return Role(value)


def _groups(request: web.Request, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value) or len(value) > 32:
        raise _bad('技能组 groups 必须是组名列表，例如 ["售前", "售后"]')
    for group in value:
        try:
            validate_group_name(group)
        except ValueError:
            raise _bad(f"技能组名称不合规：{group!r}") from None
    configured = _configured_groups(request)
    unknown = [g for g in value if configured and g not in configured]
    if unknown:
        # An agent in a group nobody routes to would wait forever: say which groups exist.
        raise http_error(
            web.HTTPUnprocessableEntity,
            f"技能组 {'、'.join(unknown)} 未在配置 handoff.groups 中；可选：{'、'.join(configured)}",
        )
    return value


def _max_chats(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CHATS_LIMIT:
        raise _bad(f"同时接待上限 max_chats 必须是 0–{MAX_CHATS_LIMIT} 的整数")
    return value


async def list_agents(request: web.Request) -> web.Response:
    """GET /admin/api/agents — agents with presence and load, and the configured groups."""
    await require_admin(request)
    rows = await request.app[HANDOFF].db.list_agents()
    return _json(
        {
            "groups": list(_configured_groups(request)),
            "roles": ROLES_ZH,
            "agents": [{**_agent_json(r.info), "presence": r.presence.value, "load": r.load} for r in rows],
        },
    )


async def add_agent(request: web.Request) -> web.Response:
    """POST /admin/api/agents — create an agent; 201 with the token (shown this once), 409 if the name is taken."""
    caller = await require_admin(request)
    data = await _body(request)
    try:
        name = validate_agent_name(data.get("name"))
    except ValueError:
        raise _bad("姓名 name 必填，不超过 32 个字符，不能含换行等控制字符") from None
    role = _role(data.get("role", Role.AGENT.value))
    groups = _groups(request, data.get("groups", []))
    max_chats = _max_chats(data.get("max_chats", 5))
    plain, hashed = new_token()
    try:
        agent = await request.app[HANDOFF].db.add_agent(
            name, role=role, groups=groups, max_chats=max_chats, token_hash=hashed
        )
    except Conflict:
        raise http_error(web.HTTPConflict, f"已经有名为 “{name}” 的客服") from None
    except ValueError as exc:
        raise _bad(str(exc)) from None
    await _audit(request, caller, "agent.add", agent)
    return _json({"agent": _agent_json(agent), "token": plain}, status=201)


async def update_agent(request: web.Request) -> web.Response:
    """PATCH /admin/api/agents/{id} — role, groups, capacity, enabled."""
    caller = await require_admin(request)
    agent_id = str(path_id(request, "agent"))
    data = await _body(request)
    unknown = sorted(set(data) - {"role", "groups", "max_chats", "enabled"})
    if unknown:
        raise _bad(f"不能修改 {', '.join(unknown)}；可修改：role, groups, max_chats, enabled")
    enabled = data.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise _bad("enabled 只能是 true 或 false")
    if caller.agent is not None and caller.agent.id == agent_id and (enabled is False or "role" in data):
        raise http_error(web.HTTPUnprocessableEntity, "不能停用自己或修改自己的角色")
    try:
        agent = await request.app[HANDOFF].db.update_agent(
            agent_id,
            role=_role(data["role"]) if "role" in data else None,
            groups=_groups(request, data["groups"]) if "groups" in data else None,
            max_chats=_max_chats(data["max_chats"]) if "max_chats" in data else None,
            enabled=enabled,
        )
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if agent is None:
        raise http_error(web.HTTPNotFound, f"没有编号为 {agent_id} 的客服")
    await _audit(request, caller, "agent.update", agent, changed=sorted(data))
    return _json({"agent": _agent_json(agent)})


async def reset_token(request: web.Request) -> web.Response:
    """POST /admin/api/agents/{id}/token — issue a new token; the old one stops working."""
    caller = await require_admin(request)
    agent_id = str(path_id(request, "agent"))
    plain, hashed = new_token()
    agent = await request.app[HANDOFF].db.update_agent(agent_id, token_hash=hashed)
    if agent is None:
        raise http_error(web.HTTPNotFound, f"没有编号为 {agent_id} 的客服")
    await _audit(request, caller, "agent.token", agent)
    return _json({"agent": _agent_json(agent), "token": plain})


async def _audit(request: web.Request, caller: Caller, what: str, agent: AgentInfo, **extra: Any) -> None:
    details = {**_agent_json(agent), **extra}  # never the token
    await request.app[RUNTIME].store.audit(what, caller.who, details)
