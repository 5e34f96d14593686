"""A page opened in a real headless Chromium (Debian's ``chromium``), read over the DevTools protocol.

Why the protocol and not ``chromium --dump-dom``: the DOM alone says nothing of console errors,
uncaught exceptions or requests the page tried to make, and ``--enable-logging`` output changes with
Chromium's versions. Over the protocol (a websocket, with aiohttp, which rightsizer already depends on)
the test gets each of them as an event, evaluates JavaScript in the page once it has loaded, and waits
for a condition with a deadline instead of sleeping. Chromium runs with a new empty profile and the
flags this machine needs (no sandbox as root, no GPU, no background networking:
/work/.library/env/machines/polyglot.md), and is stopped whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
)
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome", "devtools:")


@dataclass
class PageReport:
    """What happened while a page was open."""

    errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions and failed loads."""
    requests: list[str] = field(default_factory=list)
    """Every request the page made to anything but itself (``LOCAL_SCHEMES`` left out)."""
    value: Any = None
    """What the ``ready`` expression returned once true."""


def open_page(
    path: Path, ready: str, *, timeout: float = 120.0, screenshot: Path | None = None
) -> PageReport:
    """Open ``path`` and wait until the JavaScript expression ``ready`` is truthy (its value is kept)."""
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed: hack/setup.sh installs Debian's chromium"
    with tempfile.TemporaryDirectory(prefix="rightsizer-chromium-") as profile:
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            endpoint = _devtools_endpoint(process, deadline=time.monotonic() + timeout)
            return asyncio.run(_visit(endpoint, path.resolve().as_uri(), ready, timeout, screenshot))
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _devtools_endpoint(process: subprocess.Popen[str], deadline: float) -> str:
    """The browser's ``ws://`` endpoint, from the line Chromium prints when it listens."""
    assert process.stderr is not None
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"chromium exited ({process.poll()}): {''.join(lines)[-2000:]}")
        lines.append(line)
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("chromium did not open its DevTools endpoint in time")


async def _visit(
    browser_url: str, url: str, ready: str, timeout: float, screenshot: Path | None
) -> PageReport:
    report = PageReport()
    async with aiohttp.ClientSession() as session, session.ws_connect(browser_url, max_msg_size=0) as ws:
        client = _Client(ws, report)
        target = await client.call("Target.createTarget", {"url": "about:blank"})
        attached = await client.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        client.session_id = attached["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            await client.call(f"{domain}.enable")
        await client.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while True:
            answer = await client.call(
                "Runtime.evaluate",
                {"expression": f"document.readyState === 'complete' && ({ready})", "returnByValue": True},
            )
            value = answer.get("result", {}).get("value")
            if value:
                report.value = value
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the page was not ready in {timeout:.0f}s: {ready}; errors: {report.errors}"
                )
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # late errors (a plot drawn after the check) still count
        await client.call("Runtime.evaluate", {"expression": "0"})
        if screenshot is not None:
            shot = await client.call("Page.captureScreenshot", {"format": "png"})
            import base64

            screenshot.write_bytes(base64.b64decode(shot["data"]))
    return report


class _Client:
    """Requests and events over one DevTools websocket (flattened sessions)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, report: PageReport) -> None:
        self.ws, self.report = ws, report
        self.session_id: str | None = None
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session_id is not None and not method.startswith("Target."):
            message["sessionId"] = self.session_id
        await self.ws.send_str(json.dumps(message))
        while True:
            raw = await asyncio.wait_for(self.ws.receive(), timeout=60)
            if raw.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"the DevTools connection closed: {raw.type}")
            data = json.loads(raw.data)
            if data.get("id") == self.next_id:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                result: dict[str, Any] = data.get("result", {})
                return result
            self._event(data.get("method", ""), data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.report.errors.append(
                f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])
            )
            self.report.errors.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.report.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(LOCAL_SCHEMES):
                self.report.requests.append(url)
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.report.errors.append(f"load failed: {params.get('errorText')}")
