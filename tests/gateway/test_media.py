"""Images and files over real HTTP (SQLite and PostgreSQL): a visitor uploads and sends one, the agent sees
it and sends one back; limits by sniffed content (413, 415), signed URLs (forged or expired → 403), and
the headers that keep a stored file from ever running as a page."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.media.sweep import sweep_unsent
from tests.gateway.test_agent_api import make_agent
from tests.gateway.test_handoff_flow import handoff_section
from tests.gateway.test_web_ws import frame_where

VISITOR = "vmedia0123456789abcdef"
OTHER = "vother0123456789abcdef"
KEY = f"web:default:{VISITOR}"


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (22, 119, 255)) -> bytes:
    """A real PNG (what a phone's screenshot starts with), built without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def form(data: bytes, filename: str, content_type: str = "image/png", **fields: str) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type=content_type)
    for name, value in fields.items():
        body.add_field(name, value)
    return body


@pytest.fixture
async def gateway(aiohttp_client: Any, settings_factory: Any, tmp_path: Path) -> Any:
    settings = settings_factory(
        handoff=handoff_section(assignment="manual"),
        uploads={"dir": str(tmp_path / "uploads"), "max_bytes": 64 * 1024},
        channels={"web": {"enabled": True, "rate_limit_burst": 50}},
    )
    return await aiohttp_client(create_app(settings))


async def upload(client: Any, data: bytes, filename: str, visitor: str = VISITOR, **kw: Any) -> Any:
    return await client.post(f"/web/uploads?visitor={visitor}", data=form(data, filename, **kw))


async def open_tab(client: Any, visitor: str = VISITOR) -> tuple[Any, dict[str, Any]]:
    ws = await client.ws_connect(f"/web/ws?visitor={visitor}")
    history = await ws.receive_json(timeout=5)
    assert history["type"] == "history"
    return ws, history


async def send(ws: Any, client_id: str, **fields: Any) -> dict[str, Any]:
    await ws.send_json({"type": "message", "client_id": client_id, **fields})
    return await frame_where(ws, lambda f: f["type"] in ("ack", "error") and f.get("client_id") == client_id)


async def test_a_visitor_sends_an_image_the_agent_sees_it_and_sends_one_back(gateway: Any) -> None:
    picture = png()
    resp = await upload(gateway, picture, "破损照片.png")
    assert resp.status == 201
    uploaded = await resp.json()
    assert (uploaded["kind"], uploaded["mime"], uploaded["name"], uploaded["size"]) == (
        "image", "image/png", "破损照片.png", len(picture),
    )  # fmt: skip

    ws, _ = await open_tab(gateway)
    assert (await send(ws, "c1", text="我要投诉，商品坏了"))["type"] == "ack"
    await ws.send_json({"type": "message", "client_id": "c2", "attachment": uploaded["key"]})
    seen: dict[
        str, Any
    ] = {}  # the ack and the pushed row may come in either order (the outbox wakes the tab)
    while len(seen) < 2:
        frame = await frame_where(ws, lambda f: f.get("client_id") == "c2" or f.get("type") == "message")
        if frame["type"] == "ack":
            seen["ack"] = frame
        elif frame["type"] == "message" and frame["message"].get("client_id") == "c2":
            seen["message"] = frame
    pushed = seen["message"]
    assert pushed["message"]["attachment"]["kind"] == "image"
    assert pushed["message"]["text"] == "[图片]"
    # An app backend polling the web channel sees the same picture.
    polled = await (await gateway.get(f"/web/conversations/{VISITOR}/messages")).json()
    [with_picture] = [m for m in polled["messages"] if m["attachment"]]
    assert await (await gateway.get(with_picture["attachment"]["url"])).read() == picture

    agent = await make_agent(gateway, "小王")
    queued = await agent.call("GET", "/queue")
    cid = queued["queue"][0]["conversation_id"]
    await agent.call("POST", f"/conversations/{cid}/claim")
    conversation = await agent.call("GET", f"/conversations/{cid}")
    image = next(m for m in conversation["messages"] if m["attachment"])
    assert (image["kind"], image["attachment"]["name"]) == ("image", "破损照片.png")
    served = await gateway.get(image["attachment"]["url"])
    assert served.status == 200
    assert await served.read() == picture
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Disposition"].startswith("inline;")

    # The agent answers with a picture of their own; the visitor's tab shows it.
    reply_picture = png(rgb=(0, 160, 80))
    sent = await gateway.post(
        f"/api/v1/conversations/{cid}/attachments",
        data=form(reply_picture, "正确包装.png"),
        headers=agent.headers,
    )
    assert sent.status == 201, await sent.text()
    echoed = await frame_where(
        ws, lambda f: f["type"] == "message" and f["message"]["sender"] == "agent", within=10
    )
    attachment = echoed["message"]["attachment"]
    assert (attachment["kind"], attachment["name"]) == ("image", "正确包装.png")
    assert await (await gateway.get(attachment["url"])).read() == reply_picture
    await ws.close()


async def test_a_pdf_is_a_download_and_never_shown_inline(gateway: Any) -> None:
    resp = await upload(gateway, PDF, "发票.pdf", content_type="application/pdf")
    assert resp.status == 201
    body = await resp.json()
    assert (body["kind"], body["mime"]) == ("file", "application/pdf")
    served = await gateway.get(body["url"])
    assert served.headers["Content-Type"] == "application/pdf"
    assert served.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in served.headers["Content-Security-Policy"]


async def test_limits_come_from_the_bytes_not_the_claimed_type(gateway: Any) -> None:
    too_big = png() + b"\x00" * (64 * 1024)
    resp = await upload(gateway, too_big, "大图.png")
    assert resp.status == 413
    assert "文件太大" in (await resp.json())["error"]

    # A page dressed as a PNG, an SVG (script-capable) and an executable: refused whatever they claim.
    for data, name in [
        (b"<html><script>alert(1)</script></html>", "x.png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "x.svg"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "setup.exe"),
    ]:
        resp = await upload(gateway, data, name)
        assert resp.status == 415, name
        assert "不支持这种文件类型" in (await resp.json())["error"]

    # The name follows the real type: a PNG called .html is kept as .png.
    resp = await upload(gateway, png(), "../../index.html")
    assert (await resp.json())["name"] == "index.png"
    # Not multipart, or no file: 400, never a 5xx.
    plain = await gateway.post(
        f"/web/uploads?visitor={VISITOR}", data=b"\x89PNG", headers={"Content-Type": "image/png"}
    )
    assert plain.status == 400
    empty = await gateway.post(f"/web/uploads?visitor={VISITOR}", data=aiohttp.FormData({"text": "hi"}))
    assert empty.status == 400
    assert (await gateway.post("/web/uploads?visitor=short", data=form(png(), "a.png"))).status == 400


async def test_forged_expired_and_borrowed_references_are_refused(gateway: Any) -> None:
    body = await (await upload(gateway, png(), "a.png")).json()
    url = body["url"]
    assert (await gateway.get(url)).status == 200
    path, query = url.split("?")
    params = dict(p.split("=") for p in query.split("&"))
    forged_sig = f"{path}?exp={params['exp']}&sig={'0' * 64}"
    assert (await gateway.get(forged_sig)).status == 403
    later = f"{path}?exp={int(params['exp']) + 3600}&sig={params['sig']}"
    assert (await gateway.get(later)).status == 403
    other_key = f"/media/{'a' * 32}?exp={params['exp']}&sig={params['sig']}"
    assert (await gateway.get(other_key)).status == 403
    assert (await gateway.get(path)).status == 403

    media = gateway.app[RUNTIME].media
    media.clock = lambda: int(params["exp"]) + 1  # past its expiry, without waiting
    assert (await gateway.get(url)).status == 403

    # Another visitor cannot send this visitor's upload as theirs.
    ws, _ = await open_tab(gateway, OTHER)
    refused = await send(ws, "x1", attachment=body["key"])
    assert refused["type"] == "error" and "附件不存在" in refused["error"]
    stored = await gateway.app[RUNTIME].store.messages_for_key(f"web:default:{OTHER}")
    assert stored == []
    await ws.close()


async def test_uploads_and_the_history_survive_a_new_app_on_the_same_database(
    aiohttp_client: Any, settings_factory: Any, tmp_path: Path
) -> None:
    settings = settings_factory(uploads={"dir": str(tmp_path / "uploads")})
    first = await aiohttp_client(create_app(settings))
    body = await (await upload(first, png(), "a.png")).json()
    ws, _ = await open_tab(first)
    assert (await send(ws, "c1", attachment=body["key"]))["type"] == "ack"
    await ws.close()
    await first.close()
    # A restart keeps the signing key (uploads.dir/.url-key): the history's URLs still open.
    second = await aiohttp_client(create_app(settings))
    ws, history = await open_tab(second)
    image = next(m for m in history["messages"] if m.get("attachment"))
    assert (await second.get(image["attachment"]["url"])).status == 200
    assert (await second.get(body["url"])).status == 200
    await ws.close()
    await asyncio.sleep(0)


async def test_a_broken_upload_is_a_400_never_a_500(gateway: Any) -> None:
    agent = await make_agent(gateway, "小王")
    ws, _ = await open_tab(gateway)
    assert (await send(ws, "c1", text="我要投诉"))["type"] == "ack"
    cid = (await agent.call("GET", "/queue"))["queue"][0]["conversation_id"]
    await agent.call("POST", f"/conversations/{cid}/claim")
    url = f"/api/v1/conversations/{cid}/attachments"
    boundary = "b0undary"
    bad_header = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="\U0001f5a9L\x0e"\r\n\r\nx\r\n--{boundary}--\r\n'
    ).encode()
    headers = {**agent.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert (await gateway.post(url, data=bad_header, headers=headers)).status == 400
    for caption in ("", "   ", "a\x0fb", "字" * 2001):
        resp = await gateway.post(url, data=form(png(), "a.png", text=caption), headers=agent.headers)
        assert resp.status == 400, caption
    ok = await gateway.post(url, data=form(png(), "a.png", text="这是包装示意"), headers=agent.headers)
    assert ok.status == 201
    detail = await agent.call("GET", f"/conversations/{cid}")
    assert detail["messages"][-1]["text"] == "这是包装示意" and detail["messages"][-1]["kind"] == "image"
    await ws.close()


def test_the_retention_purge_removes_the_customers_pictures_too(db_url: str, tmp_path: Path) -> None:
    from gateway.cli import main
    from gateway.media.store import LocalMediaStore
    from gateway.storage import Store

    files = LocalMediaStore(tmp_path / "uploads")

    async def prepare() -> str:
        stored = await files.put(png(), mime="image/png", name="a.png", owner=KEY)
        store = Store.from_url(db_url)
        await store.create_all()
        when = datetime(2026, 11, 1, tzinfo=UTC)

        def work(unit: Any) -> None:
            customer = unit.upsert_customer("web", "default", VISITOR, None, when)
            conversation = unit.create_conversation(
                customer_id=customer,
                channel="web",
                account="default",
                conversation_key=KEY,
                now=when,
                kb_version=None,
            )
            unit.add_message(
                conversation_id=conversation.id, conversation_key=KEY, channel="web", account="default",
                direction="in", sender="customer", text="[图片]", created_at=when, kind="image",
                attachment={"kind": "image", "mime": "image/png", "name": "a.png", "key": stored.key},
            )  # fmt: skip

        await store.run(work)
        await store.dispose()
        return stored.key

    key = asyncio.run(prepare())
    # And a picture picked two days ago and never sent: no message uses it, so the purge takes it too.
    unsent = asyncio.run(files.put(png(), mime="image/png", name="b.png", owner=KEY)).key
    _age(tmp_path / "uploads", unsent, hours=48)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"database": {"url": db_url}, "uploads": {"dir": str(tmp_path / "uploads")}}),
        encoding="utf-8",
    )
    assert asyncio.run(files.info(key)) is not None
    assert main(["purge", "--config", str(config), "--before", "2026-11-20"]) == 0
    assert asyncio.run(files.info(key)) is None and asyncio.run(files.read(key)) is None
    assert asyncio.run(files.info(unsent)) is None


def _age(directory: Path, key: str, *, hours: float) -> None:
    """Make a stored file look `hours` old (the sweep goes by the files' modification time)."""
    when = time.time() - hours * 3600
    for path in (directory / key[:2] / key, directory / key[:2] / f"{key}.json"):
        os.utime(path, (when, when))


async def test_uploads_no_message_used_are_deleted_after_a_day_and_sent_ones_are_kept(gateway: Any) -> None:
    runtime = gateway.app[RUNTIME]
    directory = Path(runtime.settings.uploads.dir)
    keys = {}
    for name in ("sent", "unsent", "young"):
        resp = await upload(gateway, png(), f"{name}.png")
        assert resp.status == 201
        keys[name] = (await resp.json())["key"]
    ws, _ = await open_tab(gateway)
    assert (await send(ws, "c1", attachment=keys["sent"]))["type"] == "ack"
    await ws.close()
    for name in ("sent", "unsent"):
        _age(directory, keys[name], hours=30)
    _age(
        directory, keys["young"], hours=20
    )  # under uploads.unsent_keep_h (24): the visitor may still send it

    removed = await sweep_unsent(runtime.store, runtime.media.store, keep_s=24 * 3600)
    assert removed == 1
    assert await runtime.media.store.info(keys["unsent"]) is None
    assert not (directory / keys["unsent"][:2] / keys["unsent"]).exists()
    for name in ("sent", "young"):
        assert await runtime.media.store.info(keys[name]) is not None, name
    polled = await (await gateway.get(f"/web/conversations/{VISITOR}/messages")).json()
    [picture] = [m for m in polled["messages"] if m["attachment"]]
    assert (await gateway.get(picture["attachment"]["url"])).status == 200  # the sent one still shows
    assert await sweep_unsent(runtime.store, runtime.media.store, keep_s=24 * 3600) == 0  # nothing twice
