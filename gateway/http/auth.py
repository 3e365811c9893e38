"""The one bearer-token resolver of kefu's HTTP APIs: agents, admin agents and `admin.token`.

Every API outside the channel adapters authenticates here, so the answers agree everywhere:
- 401 (with `WWW-Authenticate: Bearer realm="kefu"`) when no token is given or nobody has the token;
- 403 when the token is known but its owner may not do this (an agent on the admin API, the admin
  token on the agent API, an agent without the supervisor role on the reports).
Admin agents (role `admin`) may use every admin endpoint, as `admin.token` may. Agent tokens are stored
hashed (`handoff.agents.hash_token`); the admin token is compared in constant time.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.http.bodies import http_error
from gateway.keys import HANDOFF, RUNTIME
from gateway.signing import signature_matches
from handoff.agents import AgentInfo, Role, hash_token

__all__ = [
    "Caller",
    "bearer_token",
    "require_admin",
    "require_agent",
    "require_supervisor",
    "resolve",
    "unauthorized",
]

ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the admin token (`agent` None) or an enabled agent."""

    agent: AgentInfo | None

    @property
    def who(self) -> str:
        """For the audit log: `admin` or `agent:<name>`."""
        return ADMIN if self.agent is None else f"agent:{self.agent.name}"

    @property
    def is_admin(self) -> bool:
        return self.agent is None or self.agent.role is Role.ADMIN


def unauthorized(message: str) -> web.HTTPException:
    """401 with the challenge header clients expect."""
    return http_error(web.HTTPUnauthorized, message, headers={"WWW-Authenticate": 'Bearer realm="kefu"'})


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


async def resolve(request: web.Request, *, token: str | None = None) -> Caller:
    """The caller whose bearer token this request carries; else 401.

    Without an Authorization header, `token` is used: one the agent WebSocket found elsewhere in its
    handshake (the `token.<token>` subprotocol).
    """
    given = bearer_token(request) or (token or "").strip()
    if not given:
        raise unauthorized("missing bearer token (Authorization: Bearer <token> from `kefu agent add`)")
    if not given.isascii():
        try:
            given.encode()
        except UnicodeEncodeError:
            # Header bytes that are not UTF-8 arrive as lone surrogates: no token has them, and neither the
            # hash nor the comparison below could encode them.
            raise unauthorized("invalid or disabled token") from None
    admin_token = request.app[RUNTIME].settings.admin.token
    if admin_token and signature_matches(admin_token, given):
        return Caller(None)
    agent = await request.app[HANDOFF].db.agent_by_token_hash(hash_token(given))
    if agent is None:
        raise unauthorized("invalid or disabled token")
    return Caller(agent)


async def require_agent(request: web.Request, *, token: str | None = None) -> AgentInfo:
    """An enabled agent (any role); the admin token is not an agent (403)."""
    caller = await resolve(request, token=token)
    if caller.agent is None:
        raise http_error(
            web.HTTPForbidden, "the admin token is not an agent's; use a token from `kefu agent add`"
        )
    return caller.agent


async def require_admin(request: web.Request) -> Caller:
    """`admin.token` or an agent whose role is admin; other agents get 403."""
    caller = await resolve(request)
    if not caller.is_admin:
        assert caller.agent is not None
        raise http_error(
            web.HTTPForbidden, f"agent {caller.agent.name} is not an admin (role {caller.agent.role.value})"
        )
    return caller


async def require_supervisor(request: web.Request) -> Caller:
    """`admin.token`, a supervisor or an admin agent; other agents get 403."""
    caller = await resolve(request)
    if caller.agent is not None and not caller.agent.role.sees_everything:
        raise http_error(
            web.HTTPForbidden, f"reports are for supervisors and admins; {caller.agent.name} is an agent"
        )
    return caller
