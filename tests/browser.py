"""Open a page in headless Chromium, as a person would, and report what they would see: whether
every image loaded, what the console said, and a screenshot. Chromium is driven through its
DevTools protocol over a pipe (`--remote-debugging-pipe`), so no driver package is needed.

Chromium comes from Debian's `chromium` package (`.ci/run` installs it); without it the tests
that use this skip, saying so.
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

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@dataclass
class PageView:
    images: list[dict]  # one per <img>: src (shortened), complete, natural width and height
    console_errors: list[str]
    title: str
    verdict_cells: list[dict] = field(default_factory=list)  # text and background colour
    screenshot: Path | None = None


def high_pipe() -> tuple[int, int]:
    """A pipe whose ends are numbered 100 and up: wiring them to 3 and 4 must not overwrite one with
    the other (a pipe end numbered 3 or 4 would be)."""
    ends = []
    for end in os.pipe():
        ends.append(fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, 100))
        os.close(end)
    return ends[0], ends[1]


class DevTools:
    """One Chromium process and its protocol pipe: fd 3 carries commands in, fd 4 replies out."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="codesift-chromium-")
        commands_read, self.commands = high_pipe()
        self.replies, replies_write = high_pipe()

        # the protocol's fixed descriptors 3 and 4, wired by bash (dash takes one-digit fds only)
        wire = f'exec "$0" "$@" 3<&{commands_read} 4>&{replies_write}'
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                wire,
                binary,
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],  # fmt: skip
            pass_fds=(commands_read, replies_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self.next_id, self.buffer, self.events = 0, b"", []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(index)
            self.events.extend(self._read(deadline))

    def _read(self, deadline: float) -> list[dict]:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.replies], [], [], remaining)[0]:
            raise TimeoutError("Chromium did not answer in time")
        chunk = os.read(self.replies, 1 << 20)
        if not chunk:
            raise RuntimeError("Chromium closed its protocol pipe")
        self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for fd in (self.commands, self.replies):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)


IMAGES = "JSON.stringify([...document.images].map(i => ({src: i.src.slice(0, 60), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))"
VERDICTS = "JSON.stringify([...document.querySelectorAll('td.verdict')].map(c => ({text: c.textContent, background: getComputedStyle(c).backgroundColor})))"


def view_page(page: Path, screenshot: Path | None = None, binary: str | None = None) -> PageView:
    """Load `page` in headless Chromium; what loaded, what the console said, and a screenshot."""
    browser = DevTools(binary or find_chromium())
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": Path(page).resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")

        def evaluate(expression: str):
            result = browser.send(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
            )
            return (
                json.loads(result["result"]["value"])
                if expression.startswith("JSON")
                else result["result"]["value"]
            )

        view = PageView(
            evaluate(IMAGES), console_errors(browser.events), evaluate("document.title"), evaluate(VERDICTS)
        )
        if screenshot is not None:
            shot = browser.send(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session
            )
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            view.screenshot = Path(screenshot)
        return view
    finally:
        browser.close()


def console_errors(events: list[dict]) -> list[str]:
    """Errors a page raised or logged: exceptions, console.error, failed loads."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            found.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            found.append(params["entry"].get("text", "error"))
    return found
