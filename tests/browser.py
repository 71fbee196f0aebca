"""Headless Chromium with every network access blocked, driven over the Chrome DevTools protocol.

Debian's `chromium` package (no browser download, no driver binary): started with a fresh profile, a proxy
on which nothing listens and a host resolver that resolves nothing, so a page can load file:// URLs only.
The protocol's websocket is spoken with aiohttp (already a DVC dependency). Used by
tests/e2e/test_plots_offline.py to check that `dvc plots show` draws every plot with no network.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "chromium"
START_TIMEOUT_S = 60
# The flags the issue asks for, and what blocks the network: a refused proxy for every scheme, and a host
# resolver that answers no name (so even a proxy-less path cannot resolve a CDN).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-port=0",  # the port it picks is written to DevToolsActivePort in the profile
)


def refused_proxy() -> str:
    """A loopback address on which nothing listens (a port just bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@dataclass
class PageLog:
    """What a page did while it loaded: the URLs it requested, and its console errors and exceptions."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
            if params["type"] in ("error", "assert"):
                self.errors.append(f"console.{params['type']}: {text}")
            elif params["type"] == "warning":
                self.warnings.append(text)
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())


class Page:
    """One browser tab: commands go out with ids, answers come back by id, events go to the log."""

    def __init__(self, socket_: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket_
        self.log = PageLog()
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    async def send(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        command_id = self._next_id
        await self.socket.send_str(json.dumps({"id": command_id, "method": method, "params": params}))
        async with asyncio.timeout(timeout):
            while True:
                message = await self._receive()
                if message.get("id") == command_id:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

    async def _receive(self) -> dict[str, Any]:
        raw = await self.socket.receive()
        if raw.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"the DevTools connection closed ({raw.type.name})")
        message = json.loads(raw.data)
        if "method" in message:
            self.events.append(message)
            self.log.record(message)
        return message

    async def wait_for_event(self, method: str, since: int = 0, timeout: float = 30) -> None:
        """Until an event `method` has come, among those from the `since`-th on."""
        async with asyncio.timeout(timeout):
            while not any(event["method"] == method for event in self.events[since:]):
                await self._receive()

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating in the page failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def open(self, url: str, before_scripts: str = "") -> None:
        """Load url, with a fresh log; before_scripts runs in the page before any of its own scripts."""
        self.log = PageLog()
        if before_scripts:
            await self.send("Page.addScriptToEvaluateOnNewDocument", source=before_scripts)
        since = len(self.events)  # the load event may come in before navigate's own answer
        await self.send("Page.navigate", url=url)
        await self.wait_for_event("Page.loadEventFired", since)

    async def set_viewport(self, width: int, height: int) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        await self.send("Emulation.setDeviceMetricsOverride", **metrics)

    async def screenshot(self, path: Path, width: int = 1200) -> None:
        """The whole page as a PNG at path (the viewport stretched to the page's height)."""
        height = await self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        await self.set_viewport(width, min(int(height), 16000))
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))


@contextlib.asynccontextmanager
async def offline_page(profile: Path) -> AsyncIterator[Page]:
    """A page of a fresh headless Chromium (profile: an empty folder) that cannot reach any network."""
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--proxy-server={refused_proxy()}", "about:blank"]
    log_path = profile.with_name(f"{profile.name}.log")  # Chromium's own stderr, for a failed start
    with open(log_path, "wb") as log:
        browser = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = await _devtools_port(profile, browser, log_path)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            address = next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")
            async with session.ws_connect(address, max_msg_size=0) as socket_:
                page = Page(socket_)
                for domain in ("Runtime", "Log", "Network", "Page"):
                    await page.send(f"{domain}.enable")
                await page.set_viewport(1200, 900)
                yield page
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()


async def _devtools_port(profile: Path, browser: subprocess.Popen, log_path: Path) -> int:
    """The DevTools port Chromium picked, from the file it writes into its profile once it listens."""
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            output = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"chromium exited ({browser.returncode}): {output}")
        if active_port.is_file() and (lines := active_port.read_text().split()):
            return int(lines[0])
        await asyncio.sleep(0.1)
    raise TimeoutError(f"chromium did not open its DevTools port in {START_TIMEOUT_S} s")
