"""Several real `kefu serve` processes on one PostgreSQL database and one Redis, and a WeChat that talks to them.

`Cluster` starts N processes (separate ports, one config each, `KEFU_PROCESSES=N`), kills (-9), stops
and restarts them; `ThreadedFake` serves one of our fake platform APIs from a thread of its own, so it
outlives each test's event loop; `WeChat` posts signed messages the way WeChat's servers do: a request
that gets no answer in time, a connection error or a 5xx is retried (three tries in all), here on the
next process, as a load balancer would send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.fakes import FakeUpstream
from tests.fakes.wechat_api import sha1_sign, xml_dict

ADMIN_TOKEN = "mp-admin-token"
WECHAT_TOKEN = "mp-wechat-token"
# What WeChat waits for an answer before it retries (5 s), and the same shortened for the scenario that
# waits it out on purpose (`channels.wechat[].retry_interval_s` is set to the shortened one).
WECHAT_WAIT_S = 5.0
SHORT_WAIT_S = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedFake:
    """A fake platform API (tests/fakes) served on 127.0.0.1 by an event loop in its own thread."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> FakeUpstream:
        self._thread.start()
        port = free_port()

        async def serve() -> None:
            self._runner = web.AppRunner(self.fake.app(), access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", port).start()

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        self.fake.url = f"http://127.0.0.1:{port}"
        return self.fake

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclass
class Process:
    """One `kefu serve`."""

    index: int
    port: int
    config: Path
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """N `kefu serve` processes sharing `database_url` and `redis`, each with its own port and log."""

    workdir: Path
    database_url: str
    redis: dict[str, Any]
    faq_dir: Path
    wechat_api: str
    token_api: str
    size: int = 3
    processes: list[Process] = field(default_factory=list)
    agent_token: str = ""

    def config(self, port: int) -> dict[str, Any]:
        account = {
            "token": WECHAT_TOKEN,
            "secret": "fake-app-secret-0123456789",
            "retry_interval_s": SHORT_WAIT_S,
        }
        return {
            "server": {"host": "127.0.0.1", "port": port},
            "database": {"url": self.database_url},
            "redis": self.redis,
            "kb": {"paths": [str(self.faq_dir)], "watch": False},
            "matcher": {"semantic": {"model": "none"}},
            "qa": {"enabled": False},
            "admin": {"token": ADMIN_TOKEN},
            "logging": {"level": "INFO"},
            # Leases short enough that a killed process's sends are resumed within the test.
            "outbox": {"poll_interval_s": 0.2, "base_delay_s": 0.1, "max_delay_s": 1.0, "lease_s": 3},
            "pipeline": {"wechat_reply_deadline_s": 1.0},
            "handoff": {
                "groups": [{"name": "售前"}, {"name": "售后", "intents": ["complaint"]}],
                "default_group": "售前",
                "assignment": "manual",
            },
            "channels": {
                "web": {"enabled": True},
                "wechat": [
                    {"name": "shop", "appid": "wx49f0ab532d5d035a", "api_base": self.wechat_api, **account},
                    {"name": "tok", "appid": "wx0000000000tok001", "api_base": self.token_api, **account},
                ],
            },
        }

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        return env | {"KEFU_PROCESSES": str(self.size)}

    def cli(self, *args: str) -> str:
        """`kefu …` against the shared config (the first process's file)."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--config", str(self.processes[0].config)],
            cwd=self.workdir,
            env=self._env(),
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kefu {' '.join(args)}: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    def prepare(self) -> None:
        for index in range(self.size):
            port = free_port()
            config = self.workdir / f"gateway-{index}.yaml"
            config.write_text(yaml.safe_dump(self.config(port), allow_unicode=True), encoding="utf-8")
            self.processes.append(Process(index, port, config, self.workdir / f"kefu-{index}.log"))
        out = self.cli("agent", "add", "甲", "--groups", "售前,售后", "--role", "admin")
        self.agent_token = out.strip().splitlines()[-1]

    def launch(self, process: Process) -> None:
        log = process.log.open("ab")
        process.popen = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(process.config)],
            cwd=self.workdir,
            env=self._env(),
            stdout=log,
            stderr=log,
        )
        log.close()

    def wait_ready(self, process: Process, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert process.popen is not None
            if process.popen.poll() is not None:
                raise RuntimeError(f"kefu {process.index} exited: {process.log.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(process.url + "/healthz", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"kefu {process.index} not ready within {within:.0f}s: {process.log.read_text()[-3000:]}"
        )

    def start(self) -> None:
        # The first one alone: start-up creates missing tables, and two processes creating the same table at
        # once collide in PostgreSQL's catalog (migrations under an advisory lock are the migrate work's).
        first, *others = self.processes
        self.launch(first)
        self.wait_ready(first)
        for process in others:
            self.launch(process)
        for process in others:
            self.wait_ready(process)

    def kill(self, index: int) -> None:
        """kill -9: no shutdown, no cleanup, whatever it held is left as it was."""
        popen = self.processes[index].popen
        assert popen is not None
        popen.send_signal(signal.SIGKILL)
        popen.wait(10)

    def pause(self, index: int) -> None:
        """SIGSTOP: the process accepts connections (the kernel's backlog) but answers nothing."""
        popen = self.processes[index].popen
        assert popen is not None
        popen.send_signal(signal.SIGSTOP)

    def resume(self, index: int) -> None:
        popen = self.processes[index].popen
        assert popen is not None
        popen.send_signal(signal.SIGCONT)

    def stop(self, index: int) -> None:
        """SIGTERM (a deploy): in-flight requests finish, then the process exits."""
        popen = self.processes[index].popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)

    def restart(self, index: int) -> None:
        self.stop(index)
        self.launch(self.processes[index])
        self.wait_ready(self.processes[index])

    def running(self, index: int) -> bool:
        popen = self.processes[index].popen
        return popen is not None and popen.poll() is None

    def shutdown(self) -> None:
        for process in self.processes:
            if process.popen is not None and process.popen.poll() is None:
                self.resume(process.index)
                self.stop(process.index)

    def tracebacks(self) -> list[str]:
        found = []
        for process in self.processes:
            text = process.log.read_text(encoding="utf-8", errors="replace") if process.log.exists() else ""
            found += [f"kefu-{process.index}: {line}" for line in text.splitlines() if "Traceback" in line]
        return found


def text_xml(openid: str, msg_id: int, content: str, to: str = "gh_3f2a9c1b7e64") -> str:
    """A WeChat text message as WeChat pushes it."""
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


@dataclass
class Delivery:
    """What WeChat got for one message: the passive answer (None: `success` or nothing) and whether any
    try was acknowledged (a 200)."""

    acknowledged: bool = False
    passive: list[str] = field(default_factory=list)
    tries: int = 0


class WeChat:
    """WeChat's servers as kefu sees them: signed POSTs, `WECHAT_WAIT_S` to answer, three tries."""

    def __init__(self, http: aiohttp.ClientSession, cluster: Cluster, account: str = "shop") -> None:
        self.http = http
        self.cluster = cluster
        self.account = account

    def _query(self) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), str(time.monotonic_ns())
        return {
            "signature": sha1_sign(WECHAT_TOKEN, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
        }

    async def post(self, index: int, xml: str, *, wait_s: float = WECHAT_WAIT_S) -> tuple[int, str] | None:
        """One try at one process: (status, body), or None when no answer came in time (or no connection)."""
        url = f"{self.cluster.processes[index].url}/wechat/{self.account}"
        try:
            async with self.http.post(
                url, params=self._query(), data=xml.encode(), timeout=aiohttp.ClientTimeout(total=wait_s)
            ) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def deliver(
        self, xml: str, first: int, *, tries: int = 3, into: Delivery | None = None
    ) -> Delivery:
        """Try the processes from `first` on until one answers 200; at most `tries` (WeChat's three)."""
        result = into or Delivery()
        for attempt in range(tries):
            index = (first + attempt) % len(self.cluster.processes)
            result.tries += 1
            got = await self.post(index, xml)
            if got is None or got[0] != 200:
                continue
            result.acknowledged = True
            record(result, got[1])
            return result
        return result


def record(result: Delivery, body: str) -> None:
    """Count a passive answer WeChat received (`success` and an empty body are none)."""
    if body and body != "success":
        result.passive.append(xml_dict(body)["Content"])
