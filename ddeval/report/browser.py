"""Open a report in headless Chromium: take a full-page screenshot, count images that loaded, collect errors.

Talks to Chromium over the DevTools protocol on a pair of pipes (``--remote-debugging-pipe``), so no port is
opened. Used by the browser test of report.html and available to anyone who wants to see a report the way a
reader will. Chromium comes from the system (Debian: ``apt-get install chromium``); :func:`find_chromium`
returns None when there is none.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillers.errors import DDError
from distillers.io import atomic_write_bytes

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
MAX_SCREENSHOT_HEIGHT = 16_000  # CSS pixels; Chromium refuses textures much taller than this

_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  src: i.currentSrc.slice(0, 60), ok: i.complete && i.naturalWidth > 0, width: i.naturalWidth})))"""


@dataclass
class PageCheck:
    """What the browser saw: images (loaded or not), console errors and failed loads, the screenshot."""

    images: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    title: str = ""
    height: int = 0
    screenshot: Path | None = None

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i.get("ok")]


def find_chromium() -> str | None:
    env = os.environ.get("DDEVAL_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_skip_reason() -> str | None:
    """Why a browser check cannot run here, or None when it can. With ``DDEVAL_REQUIRE_CHROMIUM=1`` (set by
    this project's CI) it is always None, so a missing Chromium fails the check instead of skipping it."""
    if find_chromium() or os.environ.get("DDEVAL_REQUIRE_CHROMIUM") == "1":
        return None
    return "Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"


class _Pipe:
    """DevTools messages over Chromium's fds 3 (commands in) and 4 (replies out), NUL-terminated JSON."""

    def __init__(self, binary: str, profile: str, width: int) -> None:
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        # move the child's ends above 10 so the dup2 to 3 and 4 below cannot overwrite one with the other
        child_in, child_out = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(res_w)

        def wire() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
                "--no-sandbox", f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=wire)
        os.close(child_in)
        os.close(child_out)
        self.write_fd, self.read_fd = cmd_w, res_r
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self.receive(timeout)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise DDError(f"Chromium refused {method}: {reply['error'].get('message')}")
                return reply.get("result") or {}
            self.events.append(reply)

    def receive(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise DDError(f"Chromium did not answer within {timeout:.0f} s.")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise DDError("Chromium closed the DevTools pipe (did it start? try `chromium --headless "
                              "--version`).")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def wait_event(self, method: str, timeout: float) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self.receive(max(0.1, deadline - time.monotonic()))
            if event.get("method") == method:
                return event
            self.events.append(event)

    def close(self) -> None:
        try:
            os.write(self.write_fd, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def inspect_page(page: str | Path, screenshot: str | Path | None = None, *, width: int = 1200,
                 binary: str | None = None, timeout: float = 60.0) -> PageCheck:
    """Load ``page`` (a local HTML file) in headless Chromium and report what a reader would see."""
    path = Path(page).resolve()
    if not path.is_file():
        raise DDError(f"No page at {path}.")
    binary = binary or find_chromium()
    if not binary:
        raise DDError("No Chromium found: install it (Debian: apt-get install chromium) or set DDEVAL_CHROMIUM.")
    check = PageCheck()
    with tempfile.TemporaryDirectory(prefix="ddeval-chromium-") as profile:
        pipe = _Pipe(binary, profile, width)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Page.navigate", {"url": path.as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout)
            found = pipe.send("Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True},
                              session=session)
            check.images = json.loads(found["result"]["value"])
            check.title = pipe.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                                    session=session)["result"].get("value", "")
            metrics = pipe.send("Page.getLayoutMetrics", session=session)
            size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            check.height = int(size.get("height", 900))
            if screenshot is not None:
                height = min(check.height, MAX_SCREENSHOT_HEIGHT)
                pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                 "deviceScaleFactor": 1, "mobile": False},
                          session=session)
                shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 session=session, timeout=timeout)
                check.screenshot = atomic_write_bytes(screenshot, base64.b64decode(shot["data"]))
            check.errors = _errors(pipe.events)
        finally:
            pipe.close()
    return check


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and failed resource loads among the collected events."""
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params") or {}
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in
                                               params.get("args") or []))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails") or {}
            out.append("exception: " + str((details.get("exception") or {}).get("description") or
                                           details.get("text")))
        elif method == "Log.entryAdded" and (params.get("entry") or {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}".strip())
    return out
