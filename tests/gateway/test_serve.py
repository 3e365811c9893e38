"""`kefu serve` as an operator runs it: prints the URLs to configure, serves, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.serve import GC_THRESHOLDS, access_logger, settle_gc
from gateway.settings import load_settings
from tests.conftest import TEST_FAQ

KEFU = Path(sys.executable).with_name("kefu")


async def refused_start(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int | None, str]:
    """`kefu serve --config config *args` run to its exit (a start it refuses): exit code and stderr.
    The test's own KEFU_* variables are left out; `env` adds to what is kept."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")} | (env or {})
    proc = await asyncio.create_subprocess_exec(
        str(KEFU),
        *("serve", "--config", str(config), *args),
        cwd=config.parent,
        env=kept,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, err.decode()


async def test_kefu_serve_runs_prints_urls_and_stops_on_sigterm(tmp_path: Path, unused_tcp_port: int) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
server: {{port: 1}}
database: {{url: "sqlite+aiosqlite:///state/kefu.db"}}
kb: {{paths: ["{TEST_FAQ}"], watch: false}}
channels:
  wechat:
    - {{name: shop, token: tok, appid: wx0000000000000001, secret: "${{SHOP_SECRET}}"}}
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_") and k != "SHOP_SECRET"}
    proc = await asyncio.create_subprocess_exec(
        str(KEFU),
        "serve",
        "--config",
        str(config),
        "--port",
        str(unused_tcp_port),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or "wechat shop" not in lines[-1]:  # the account URL comes last
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
            lines.append(line.decode().rstrip())
        base = f"http://127.0.0.1:{unused_tcp_port}"
        assert lines[0] == f"kefu gateway listening on 127.0.0.1:{unused_tcp_port}"
        printed = "\n".join(lines)
        assert f"{base}/healthz" in printed and f"{base}/metrics" in printed
        assert f"{base}/web/messages" in printed and f"{base}/api/v1/" in printed
        assert "wechat shop" in printed  # the URL to paste into the WeChat admin console
        for page in ("/chat", "/agent", "/admin"):  # what a newcomer opens first
            assert f"{base}{page}\n" in printed + "\n"

        async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        assert (tmp_path / "state" / "kefu.db").exists()  # relative to the working directory, created
        # A client hanging up mid-body (a cancelled upload) is not a server fault: it was logged at ERROR
        # as a database error, with a traceback (on uvloop, what `kefu serve` runs).
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
            writer.write(b"POST /web/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            writer.write(b'Content-Length: 100\r\n\r\n{"user_id": ')
            await writer.drain()
            with pytest.raises(TimeoutError):  # the server waits for the rest of the body
                await asyncio.wait_for(reader.read(1), 0.3)
            writer.close()
        async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as resp:
            assert resp.status == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert code == 0
    err = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert "Traceback" not in err and "database error" not in err
    # The unset secret is said once, at start-up, where sending would need it.
    assert err.count("SHOP_SECRET is not set") == 1
    # server.access_log is off by default: no per-request line (it cost ~8% of the bot path's CPU).
    assert "GET /healthz" not in err
    assert "event loop: uvloop" in err  # server.event_loop "auto", and uvloop is a dependency


def test_the_access_log_is_off_unless_configured() -> None:
    assert access_logger(load_settings(None, env={})) is None
    on = load_settings(None, env={}, overrides={"server.access_log": True})
    logger = access_logger(on)
    assert logger is not None and logger.name == "aiohttp.access"


async def test_kefu_serve_refuses_an_unsigned_web_channel_on_a_public_address(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f'database: {{url: "sqlite+aiosqlite:///state/kefu.db"}}\nkb: {{paths: ["{TEST_FAQ}"], watch: false}}\n',
        encoding="utf-8",
    )
    code, err = await refused_start(config, "--host", "0.0.0.0", "--port", str(unused_tcp_port))
    assert code == 1, err
    assert "channels.web.secret is empty" in err and "Traceback" not in err


def test_the_event_loop_is_uvloop_where_installed_unless_asyncio_is_asked_for(monkeypatch: Any) -> None:
    import uvloop

    from gateway.serve import StartupFailed, event_loop_factory
    from gateway.settings import SettingsError, settings_from_mapping

    assert event_loop_factory("auto") is uvloop.new_event_loop
    assert event_loop_factory("uvloop") is uvloop.new_event_loop
    assert event_loop_factory("asyncio") is None
    try:
        settings_from_mapping({"server": {"event_loop": "uvlop"}})
    except SettingsError as exc:  # a typo is refused with the key and the allowed values
        assert "server.event_loop" in str(exc) and "'uvloop'" in str(exc)
    else:
        raise AssertionError("server.event_loop: uvlop was accepted")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on a platform without its wheel
    assert event_loop_factory("auto") is None
    try:
        event_loop_factory("uvloop")
    except StartupFailed as exc:
        assert "uvloop is not installed" in str(exc)
    else:
        raise AssertionError("server.event_loop: uvloop started without uvloop")


async def test_kefu_serve_can_run_on_asyncios_own_loop(tmp_path: Path, unused_tcp_port: int) -> None:
    """`server.event_loop: asyncio`: the loop is asyncio's (a refused start still says which loop ran)."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f'server: {{event_loop: asyncio}}\ndatabase: {{url: "sqlite+aiosqlite:///state/kefu.db"}}\n'
        f'kb: {{paths: ["{TEST_FAQ}"], watch: false}}\n',
        encoding="utf-8",
    )
    code, err = await refused_start(config, "--host", "0.0.0.0", "--port", str(unused_tcp_port))
    assert code == 1 and "channels.web.secret is empty" in err, err
    assert "event loop: asyncio" in err


def test_only_loopback_or_a_secret_or_public_history_pass_the_exposure_check() -> None:
    from gateway.serve import StartupFailed, check_exposure
    from gateway.settings import settings_from_mapping

    def settings(host: str, **web: object) -> object:
        return settings_from_mapping({"server": {"host": host}, "channels": {"web": web}})

    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(settings(host))  # type: ignore[arg-type]
    check_exposure(settings("0.0.0.0", secret="s"))  # type: ignore[arg-type]
    check_exposure(settings("0.0.0.0", public_history=True))  # type: ignore[arg-type]
    check_exposure(settings("0.0.0.0", enabled=False))  # type: ignore[arg-type]
    for host in ("0.0.0.0", "10.0.0.5", "kefu.example.com"):
        try:
            check_exposure(settings(host))  # type: ignore[arg-type]
        except StartupFailed:
            continue
        raise AssertionError(f"{host} was accepted without a secret")


def test_serving_freezes_startup_objects_and_makes_collections_rare() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's default
        kept = [object() for _ in range(10)], {"cycle": None}
        settle_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > frozen + len(kept[0])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
