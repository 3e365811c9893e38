"""WeCom 微信客服: the callback route, pulling with kf/sync_msg, and every answer sent by kf/send_msg.

One `WeComAdapter` per configured corp serves `GET/POST /wecom/{name}`:
- GET answers the URL verification: the decrypted `echostr` when `msg_signature` matches;
- POST verifies and decrypts the callback (wechatpy's enterprise crypto, the corp id as receive id),
  records durably that a pull is owed, answers `success` at once and pulls in the background;
- every pulled item is handled by origin: 3 (the customer) through the pipeline, 4 (events) as state
  changes, 5 (WeCom's own reception staff) stored as agent messages so the history is whole.
WeCom has no passive reply: every answer is an outbox row, delivered by `send` through kf/send_msg with a
msgid derived from the row (WeCom's idempotency key), the greeting through send_msg_on_event, and
suggestions (猜你想问) as a `msgmenu` whose click comes back as a click on the chosen FAQ entry.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto

from gateway.channels.base import Outgoing, SendError
from gateway.channels.delivery import Delivery
from gateway.channels.wechat.api import clean_text, split_text
from gateway.channels.wecom import events
from gateway.channels.wecom.api import MAX_TEXT_BYTES, WeComAPI, WeComAPIError
from gateway.channels.wecom.events import HUMAN_MENU_ID, CallbackError, Item
from gateway.channels.wecom.settings import WeComAccountSettings
from gateway.channels.wecom.sync import FAIL_TYPES, Puller, outbox_id_of, record, record_unit
from gateway.http.bodies import read_body
from gateway.media.fetch import FetchError
from gateway.message import Attachment, utcnow
from gateway.signing import within_replay_window
from gateway.storage.cursor_store import request_pull
from handoff.state import is_with_human
from handoff.wrapup import CloseReason
from intents.prediction import Decision

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.pipeline import PipelineResult
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

CHANNEL = events.CHANNEL
SUCCESS = "success"
# WeCom's session states (kf/service_state): 2 the 待接入池 queue, 3 a named reception staff member.
STATE_POOL = 2
STATE_SERVICER = 3
STATE_ENDED = 4
# session_status_change change_type 3: the reception staff ended the session.
SESSION_ENDED = 3
# A msgmenu carries at most this many entries, each at most this many bytes.
MENU_MAX_ITEMS = 10
MENU_TEXT_BYTES = 1000  # head_content and each entry: WeCom takes at most 1024 bytes
_PROGRESS_MEMORY = 1024
# The pipeline's 转人工 suggestion (gateway.pipeline.HUMAN_OPTION; channels do not import the pipeline).
HUMAN_OPTION = "转人工"

__all__ = ["WeComAccountSettings", "WeComAdapter"]


class WeComAdapter:
    """One corp's 微信客服 callback, pulls and sends."""

    channel = CHANNEL

    def __init__(
        self, settings: WeComAccountSettings, runtime: Runtime, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.account = settings.name
        self.runtime = runtime
        self.clock = clock
        self.epoch: Callable[[], float] = time.time  # injectable: the replay window's "now"
        self.crypto = WeChatCrypto(settings.token, settings.aes_key, settings.corp_id)
        self._api: WeComAPI | None = None
        self.puller = Puller(self, self._sync, clock=clock)
        # No webhook answer to carry replies and no deadline: a pulled item is handled until stored (the
        # cursor is its acknowledgement), its replies always go through kf/send_msg.
        self.delivery = Delivery(
            runtime, name=f"wecom-{self.account}", mode="held", deadline=lambda: None, repeat_passive=False
        )
        # A long text goes out as several messages; a retry of the row skips the pieces already sent.
        self._progress: OrderedDict[str, int] = OrderedDict()

    @property
    def path(self) -> str:
        return f"/wecom/{self.account}"

    def routes(self) -> list[web.AbstractRouteDef]:
        """GET for the URL verification, POST for callbacks."""
        return [
            web.get(self.path, self.handle_verify, allow_head=False),
            web.post(self.path, self.handle_post),
        ]

    async def startup(self) -> None:
        """Pull wherever a callback's pull never completed before the last shutdown."""
        await self.puller.resume()

    @property
    def api(self) -> WeComAPI:
        if self._api is None:
            s = self.settings
            self._api = WeComAPI(
                self.runtime.http, s.corp_id, s.secret, api_base=s.api_base, shared=self.runtime.coord.tokens
            )
        return self._api

    async def _sync(self, **kwargs: Any) -> Any:
        return await self.api.sync_msg(**kwargs)

    # --- the callback --------------------------------------------------------------------------------

    async def handle_verify(self, request: web.Request) -> web.StreamResponse:
        """URL verification: answer the decrypted echostr, as plain text without quotes or newline."""
        try:
            plain = events.verify_echostr(self.crypto, self.settings.token, request.query)
            self._fresh(request.query)
        except CallbackError as exc:
            return self._refuse(exc)
        return web.Response(text=plain, content_type="text/plain")

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        """A callback: verify, decrypt, record the owed pull (durable before the ack), answer, pull."""
        body = await read_body(request, self.runtime.settings.server.max_body_bytes)
        try:
            callback = events.open_callback(self.crypto, self.settings.token, request.query, body)
            self._fresh(request.query)
        except CallbackError as exc:
            return self._refuse(exc)
        if callback.event != "kf_msg_or_event":
            return web.Response(text=SUCCESS)  # other corp events carry nothing for 微信客服
        scope = callback.open_kfid or self.settings.open_kfid or ""
        if self.settings.open_kfid and scope != self.settings.open_kfid:
            logger.info("wecom callback for another 客服帐号 ignored", extra={"account": self.account})
            return web.Response(text=SUCCESS)
        # If this write fails the error middleware answers 503 and WeCom calls back again.
        await request_pull(self.runtime.store, CHANNEL, self.account, scope, callback.token, self.clock())
        self.puller.kick(scope)
        return web.Response(text=SUCCESS)

    def _fresh(self, query: Mapping[str, str]) -> None:
        """A signed callback replayed later than the window is refused: WeCom signs the timestamp, not a
        nonce we could remember, so the window is what bounds a captured request's replays."""
        if not within_replay_window(query.get("timestamp", ""), self.epoch(), self.settings.max_clock_skew_s):
            raise CallbackError(403, "timestamp outside the replay window")

    def _refuse(self, exc: CallbackError) -> web.Response:
        level = logging.WARNING if exc.status == 403 else logging.INFO
        logger.log(level, "wecom request refused: %s", exc.reason, extra={"account": self.account})
        return web.Response(status=exc.status, text=exc.reason)

    # --- pulled items --------------------------------------------------------------------------------

    async def take(self, item: Item) -> None:
        """Handle one pulled item by its origin; returns once it is stored (and its answer queued)."""
        if item.origin == events.ORIGIN_CUSTOMER and item.external_userid:
            await self._customer(item)
        elif item.origin == events.ORIGIN_EVENT:
            await self._event(item)
        elif item.origin == events.ORIGIN_SERVICER and item.external_userid:
            servicer = item.raw.get("servicer_userid")
            work = record_unit(
                account=self.account,
                item=item,
                direction="out",
                sender="agent",
                sender_name=servicer if isinstance(servicer, str) and servicer else "企业微信接待人员",
                decision=None,
                now=self.clock(),
            )
            await record(self.runtime.store, work)
        else:
            logger.info("wecom item of origin %s skipped", item.origin, extra={"account": self.account})

    def _stale(self, item: Item) -> bool:
        return self.clock() - item.send_time > timedelta(minutes=self.settings.answer_within_minutes)

    async def _customer(self, item: Item) -> None:
        if self._stale(item):
            # A backlog (downtime, the first pull's history): kept, not answered out of context.
            work = record_unit(
                account=self.account,
                item=item,
                direction="in",
                sender="customer",
                sender_name=None,
                decision="stale",
                now=self.clock(),
            )
            await record(self.runtime.store, work)
            return
        message = events.customer_message(self.account, item, self._known_entry)
        # The one delivery policy: held rows written in the message's own unit of work (they come before
        # any notice the handoff raises for it), released with their menus and transfer by `_targets`.
        # WeCom takes no answer from a webhook, so nothing is passive; the cursor moves once this returns.
        await self.delivery.deliver(message, can_carry=_never, targets=self._targets)

    def _known_entry(self, entry_id: str) -> bool:
        snapshot = self.runtime.kb.snapshot()
        entry = snapshot[0].get(entry_id) if snapshot else None
        return entry is not None and entry.enabled

    async def _event(self, item: Item) -> None:
        event = item.event
        kind = str(event.get("event_type") or "")
        if kind == "enter_session" and item.external_userid and not self._stale(item):
            welcome = event.get("welcome_code")
            code = welcome if isinstance(welcome, str) and welcome else None
            # The code lives 20 s; a late send is refused (95007) and the row shows why. Without one the
            # greeting's rows are released as they are (send_msg_on_event needs the code).
            await self.delivery.deliver(
                events.enter_session_message(self.account, item),
                can_carry=_never,
                targets=lambda result: self._targets(result, welcome_code=code),
            )
        elif kind == "msg_send_fail":
            await self._send_failed(event)
        elif kind == "session_status_change":
            await self._session_changed(item)
        else:
            # servicer_status_change and newer events: WeCom's own staff presence, nothing for kefu to do.
            logger.info("wecom event %s", kind or "?", extra={"account": self.account})

    async def _send_failed(self, event: Mapping[str, Any]) -> None:
        """WeCom could not deliver a message it had accepted: the outbox row says so, for the agent to see."""
        outbox_id = outbox_id_of(str(event.get("fail_msgid") or ""))
        row = await self.runtime.store.outbox(outbox_id) if outbox_id is not None else None
        if row is None or (row.channel, row.account) != (CHANNEL, self.account):
            return
        try:
            fail_type = int(event.get("fail_type") or 0)
        except (TypeError, ValueError):
            fail_type = 0
        reason = f"微信客服投递失败 / WeCom could not deliver (fail_type {fail_type}: {FAIL_TYPES.get(fail_type, '其他')})"
        await self.runtime.store.finish_outbox(row.id, status="undeliverable", now=self.clock(), error=reason)

    async def _session_changed(self, item: Item) -> None:
        """WeCom's staff ended the session: kefu's human part of the conversation ends too (back to the bot)."""
        try:
            change = int(item.event.get("change_type") or 0)
        except (TypeError, ValueError):
            return
        handoff = self.runtime.handoff
        if change != SESSION_ENDED or self.settings.handoff_mode != "wecom" or handoff is None:
            return
        key = events.conversation_key(self.account, item.open_kfid, item.external_userid)
        rows = await self.runtime.store.conversations_for_key(key)
        if rows and is_with_human(rows[-1].state):
            try:
                await handoff.close(None, str(rows[-1].id), reason=CloseReason.BACK_TO_BOT)
            except (
                Exception
            ) as exc:  # e.g. an agent closed it meanwhile (HandoffError 409): nothing left to end
                logger.info("wecom session end: conversation %s not closed: %s", rows[-1].id, exc)

    # --- answers into the outbox -------------------------------------------------------------------

    def _targets(
        self, result: PipelineResult, *, welcome_code: str | None = None
    ) -> dict[int, dict[str, Any]]:
        """Each held reply row's final target: menus, the greeting code, the transfer after a handoff."""
        count = len(result.replies)
        rows = [outbox_id for outbox_id, _status in result.outbox]
        targets: dict[int, dict[str, Any]] = {}
        for index, (reply, outbox_id) in enumerate(zip(result.replies, rows, strict=False)):
            target: dict[str, Any] = {k: v for k, v in result.target.items() if k != "channel_msg_id"}
            if reply.suggestions:
                target["menu"] = self._menu(reply.suggestions)
            if welcome_code and index == 0:
                target["welcome_code"] = welcome_code
            # `decision`, not `handoff`: a re-read (duplicate) of the handoff message must transfer as well.
            handoff = result.decision == Decision.HANDOFF.value
            if handoff and self.settings.handoff_mode == "wecom" and index == count - 1:
                # After the handoff message is out: WeCom may not let the API speak in its staff's session.
                target["transfer"] = True
            targets[outbox_id] = target
        return targets

    def _menu(self, suggestions: Sequence[str]) -> list[dict[str, str]]:
        """The click entries of a 猜你想问 menu: the FAQ entry id (or `human`) as id, the question as text."""
        snapshot = self.runtime.kb.snapshot()
        kb = snapshot[0] if snapshot else None
        items: list[dict[str, str]] = []
        for question in suggestions[:MENU_MAX_ITEMS]:
            if question == HUMAN_OPTION:
                items.append({"id": HUMAN_MENU_ID, "content": question})
                continue
            entry = next((e for e in kb.enabled_entries if e.question == question), None) if kb else None
            items.append({"id": entry.id if entry else f"q{len(items) + 1}", "content": question})
        return items

    # --- outbound ----------------------------------------------------------------------------------

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> bytes:
        """A customer's image by its media_id."""
        if not attachment.media_id:
            raise FetchError("the image item had no media_id")
        return await self.api.get_media(attachment.media_id, max_bytes)

    async def send(self, outgoing: Outgoing) -> None:
        """Deliver one outbox row through kf/send_msg (the greeting through send_msg_on_event)."""
        try:
            open_kfid, external = events.parse_conversation_key(outgoing.conversation_key)
        except ValueError as exc:
            raise SendError(str(exc), retryable=False) from None
        target = outgoing.target
        if self.settings.handoff_mode == "wecom" and outgoing.sender == "system":
            # kefu's queue notices (排队第 n 位, 客服正忙…) describe kefu's queue, not WeCom's reception.
            raise SendError(
                f"channels.wecom[{self.account}].handoff_mode is wecom: WeCom's reception staff serve handed-off "
                "customers, kefu's queue notices are not sent",
                retryable=False,
            )
        base = _msgid_base(outgoing)
        payloads = (
            await self._media_payload(outgoing) if outgoing.attachment else self._payloads(outgoing, target)
        )
        done = self._progress.get(base, 0)
        for index in range(done, len(payloads)):
            msgtype, body = payloads[index]
            msgid = f"{base}-{index}"
            welcome = target.get("welcome_code") if index == 0 else None
            if welcome:
                payload = {"code": welcome, "msgid": msgid, "msgtype": msgtype, msgtype: body}
                await self.api.send("/cgi-bin/kf/send_msg_on_event", payload)
            else:
                payload = {"touser": external, "open_kfid": open_kfid, "msgid": msgid, "msgtype": msgtype}
                await self.api.send("/cgi-bin/kf/send_msg", {**payload, msgtype: body})
            self._remember(base, index + 1)
        if target.get("transfer"):
            await self._transfer(open_kfid, external)
        self._progress.pop(base, None)

    async def _media_payload(self, outgoing: Outgoing) -> list[tuple[str, dict[str, Any]]]:
        """An agent's picture or file: uploaded as temporary media, sent as kf/send_msg image / file."""
        attachment, media = outgoing.attachment, self.runtime.media
        assert attachment is not None
        data = await media.store.read(attachment.key) if media is not None and attachment.key else None
        if data is None:
            raise SendError("the file to send is no longer stored (uploads.dir)", retryable=False)
        msgtype = "image" if attachment.kind == "image" else "file"
        media_id = await self.api.upload_media(msgtype, data, attachment.name or msgtype, attachment.mime)
        return [(msgtype, {"media_id": media_id})]

    def _payloads(self, outgoing: Outgoing, target: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        text = clean_text(outgoing.text)
        menu = target.get("menu")
        if isinstance(menu, list) and menu:
            head = _without_numbered(text, [str(m.get("content", "")) for m in menu])
            entries = [
                {
                    "type": "click",
                    "click": {
                        "id": str(m["id"])[:128],
                        "content": split_text(str(m["content"]), MENU_TEXT_BYTES)[0],
                    },
                }
                for m in menu
                if isinstance(m, Mapping) and m.get("id") and m.get("content")
            ]
            body: dict[str, Any] = {"head_content": split_text(head, MENU_TEXT_BYTES)[0], "list": entries}
            return [("msgmenu", body)]
        if not text.strip():
            return []
        return [("text", {"content": piece}) for piece in split_text(text, MAX_TEXT_BYTES)]

    async def _transfer(self, open_kfid: str, external: str) -> None:
        servicer = self.settings.servicer_userid
        state = STATE_SERVICER if servicer else STATE_POOL
        try:
            current, _servicer = await self.api.service_state(open_kfid, external)
        except WeComAPIError as exc:
            raise SendError(
                f"kf/service_state/get: errcode {exc.errcode} {exc.errmsg}", retryable=True
            ) from None
        # WeCom's flow: 0/1 → 2/3, 2 → 3, 3 and 4 (ended) go nowhere else; a repeated 转人工 changes nothing.
        if current >= state or current == STATE_ENDED:
            logger.info(
                "wecom session already with reception (state %s)", current, extra={"account": self.account}
            )
            return
        try:
            await self.api.transfer(open_kfid, external, state, servicer)
        except SendError as exc:
            if exc.retryable:
                raise  # the text pieces are remembered as sent: the retry only transfers
            # The reply is out; a refused transfer (already with staff, ended) is logged, not undelivered.
            logger.error(
                "wecom service_state/trans to %s refused: %s",
                state,
                exc.reason,
                extra={"account": self.account},
            )

    def _remember(self, key: str, sent: int) -> None:
        self._progress[key] = sent
        self._progress.move_to_end(key)
        while len(self._progress) > _PROGRESS_MEMORY:
            self._progress.popitem(last=False)


def _msgid_base(outgoing: Outgoing) -> str:
    """`kf{outbox id}x{hash}`: stable for one outbox row (WeCom dedupes on it), distinct across databases."""
    digest = hashlib.sha1(
        f"{outgoing.conversation_key}\x00{outgoing.text}".encode("utf-8", "surrogatepass")
    ).hexdigest()[:8]
    return f"kf{outgoing.outbox_id or 0}x{digest}"


def _without_numbered(text: str, questions: Sequence[str]) -> str:
    """The reply text without its `1. question` lines (the menu shows them as entries)."""
    numbered = {f"{i}. {q}" for i, q in enumerate(questions, 1)}
    kept = [line for line in text.splitlines() if line.strip() not in numbered]
    return "\n".join(kept).strip() or text


def _never(_result: Any) -> bool:
    """WeCom cannot answer in the callback: every reply is a kf/send_msg."""
    return False
