"""The docs' Temporal UI screenshots, taken again by anyone: ``python -m scripts.screenshots``.

Starts ``worker.py --dev`` (with its UI) in a temporary data dir on free ports, sends a few events
through ``starter.py event`` (the abandoned-cart example for ``ada`` and ``grace``, with its one
hour entry window cut to a few seconds so that ada's journey sends its first push and parks at
the 4 h delay), then has headless Chromium take the workflow list filtered by ``UserId = "ada"``
and ada's abandoned-cart journey (its summary, timeline and current details) into
``docs/ui-list.png`` and ``docs/ui-journey.png``, and stops everything.

Chromium (Debian's ``chromium``) is driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on fds 3 and 4), so nothing
beyond the standard library is needed, and each shot waits until the page shows what it must:
the UI is a JavaScript app that keeps polling, so ``--screenshot`` alone shoots it blank.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe")
#: (user, event, profile, properties): what ``starter.py event`` sends, in order.
EVENTS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("ada", "Added To Cart", {"first_name": "Ada", "email": "ada@example.com"},
     {"product_name": "iPhone 14", "price": 799, "product_image": "https://shop.test/i.png",
      "product_url": "https://shop.test/p"}),
    ("grace", "Added To Cart", {"first_name": "Grace", "email": "grace@example.com"},
     {"product_name": "iPad", "price": 599, "product_url": "https://shop.test/ipad"}),
    ("ada", "Viewed Product", {}, {"product_name": "iPhone 14"}),
]
USER = "ada"
JOURNEY = "abandoned-cart"
PARKED_AT = "wait-followup"  # the node ada's journey waits at when it is shot


# --- the demo's setup (no browser) -----------------------------------------------------------

def free_port_pair() -> int:
    """A port ``p`` free on 127.0.0.1 with ``p + 1000`` free too (the dev server's UI port)."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port + 1000 > 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no pair of free ports (p, p + 1000) on 127.0.0.1")


def write_journeys(folder: Path, window: str) -> Path:
    """The examples in ``folder``, abandoned-cart's entry window (``within: 1h``) set to ``window``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        text = path.read_text()
        if path.stem == JOURNEY:
            text, count = re.subn(r"(?m)^(\s+within: )1h$", rf"\g<1>{window}", text)
            if count != 1:
                raise RuntimeError(f"{path}: no 'within: 1h' to shorten")
        (folder / path.name).write_text(text)
    return folder


def environment(data_dir: Path, journeys: Path, port: int) -> dict[str, str]:
    """The worker's and starter's settings: every one explicit, none of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "JOURNEYS_"))}
    return env | {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "TEMPORAL_NAMESPACE": "default",
                  "JOURNEYS_DATA_DIR": str(data_dir), "JOURNEYS_DIR": str(journeys),
                  "JOURNEYS_DATABASE_URL": f"sqlite:///{data_dir / 'journeys.db'}"}


def event_commands(python: str = sys.executable) -> list[list[str]]:
    return [[python, str(ROOT / "starter.py"), "event", user, name, "--profile", json.dumps(profile),
             "--props", json.dumps(props)] for user, name, profile, props in EVENTS]


def list_url(ui: str, user: str = USER) -> str:
    """The UI's workflow list filtered by the UserId search attribute."""
    return f"{ui}/namespaces/default/workflows?query={quote(f'UserId = {json.dumps(user)}')}"


def journey_url(ui: str, workflow_id: str, run_id: str) -> str:
    return f"{ui}/namespaces/default/workflows/{quote(workflow_id, safe='')}/{run_id}/history"


# --- Chromium over the DevTools protocol ------------------------------------------------------

class Browser:
    """Headless Chromium, one page, spoken to over ``--remote-debugging-pipe``."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def fds() -> None:  # the child reads commands on fd 3 and writes answers on fd 4
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"], preexec_fn=fds, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._ids = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events that come first are skipped)."""
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._next()
            if answer.get("id") == self._ids:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))

    def _next(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(line))

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, session=True)
        return answer["result"].get("value")

    def open(self, url: str, shows: list[str], width: int, height: int, timeout: float = 30.0) -> None:
        """Open ``url`` in a ``width`` x ``height`` window; return once its text has each of ``shows``."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False, session=True)
        self.call("Page.navigate", url=url, session=True)
        check = f"{json.dumps(shows)}.every(s => document.body && document.body.innerText.includes(s))"
        deadline = time.monotonic() + timeout
        while not self.evaluate(check):
            if time.monotonic() > deadline:
                text = str(self.evaluate("document.body ? document.body.innerText : ''"))
                raise RuntimeError(f"{url} never showed {shows}; it shows:\n{text[:2000]}")
            time.sleep(0.25)
        time.sleep(1.5)  # fonts, the iframes of the details, the timeline's drawing

    def capture(self, clip: list[float] | None = None) -> str:
        """A PNG (base64) of the window, or of ``clip`` ([x, y, width, height], CSS pixels)."""
        params: dict[str, Any] = {"format": "png"}
        if clip:
            x, y, width, height = clip
            params |= {"clip": {"x": x, "y": y, "width": width, "height": height, "scale": 1},
                       "captureBeyondViewport": True}
        return str(self.call("Page.captureScreenshot", session=True, **params)["data"])

    def stack(self, parts: list[str]) -> str:
        """One PNG (base64) of ``parts`` one above the other: Chromium lays out the page."""
        self.call("Page.navigate", url="about:blank", session=True)
        frame = self.call("Page.getFrameTree", session=True)["frameTree"]["frame"]["id"]
        images = "".join(f'<img style="display:block" src="data:image/png;base64,{part}">' for part in parts)
        self.call("Page.setDocumentContent", frameId=frame, session=True,
                  html=f'<body style="margin:0;background:#f8fafc">{images}</body>')
        while not self.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth)"):
            time.sleep(0.1)
        width, height = self.evaluate("[Math.max(...Array.from(document.images, i => i.naturalWidth)), "
                                      "Array.from(document.images).reduce((h, i) => h + i.naturalHeight, 0)]")
        return self.capture([0, 0, width, height])

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.call("Browser.close")
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


# --- the run ----------------------------------------------------------------------------------

@contextlib.contextmanager
def dev_worker(env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``worker.py --dev`` (with its UI) until the block ends; then SIGTERM, as Ctrl-C would."""
    with (logs / "worker.out").open("wb") as out, (logs / "worker.err").open("wb") as err:
        process = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--dev"], cwd=ROOT,
                                   env=env, stdout=out, stderr=err)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_parked(address: str, timeout: float) -> str:
    """The run id of ada's abandoned-cart journey once it waits at ``PARKED_AT``."""
    from service.runtime import connect
    from workflows.models import JOURNEY_NODE

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):  # the server or the workflow not there yet
            client = await connect(address)
            description = await client.get_workflow_handle(f"journey/{JOURNEY}/{USER}").describe()
            if description.typed_search_attributes.get(JOURNEY_NODE) == PARKED_AT:
                return description.run_id or ""
        if time.monotonic() > deadline:
            raise RuntimeError(f"journey/{JOURNEY}/{USER} did not reach {PARKED_AT} in {timeout:g} s")
        await asyncio.sleep(0.5)


def wait_started(process: subprocess.Popen[bytes], logs: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while '"worker started"' not in (logs / "worker.err").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker.py --dev did not start:\n{(logs / 'worker.err').read_text()}")
        time.sleep(0.2)


#: The page's content (no side bar) down to the end of the summary, details and current details.
METADATA_CLIP = """(() => {
  const main = document.querySelector("main").getBoundingClientRect();
  const frames = Array.from(document.querySelectorAll("iframe"), f => f.getBoundingClientRect());
  const bottom = Math.max(...frames.map(r => r.bottom));
  return [main.left, main.top, main.width, bottom + 16 - main.top];
})()"""
#: The Timeline section, from its heading down to its last label.
TIMELINE_CLIP = """(() => {
  const main = document.querySelector("main").getBoundingClientRect();
  const heading = Array.from(document.querySelectorAll("h2")).find(h => h.textContent.trim() === "Timeline");
  const section = heading.parentElement.parentElement.parentElement;
  const top = heading.getBoundingClientRect().top - 12;
  const box = section.getBoundingClientRect();
  let bottom = top;
  for (const e of section.querySelectorAll("*")) {  // the lowest label drawn (the time axis)
    const r = e.getBoundingClientRect();
    const text = !e.children.length && e.textContent.trim();
    if (text && r.width && r.height) bottom = Math.max(bottom, r.bottom);
  }
  return [main.left, top, main.width, Math.min(bottom + 16, box.bottom) - top];
})()"""


def shoot(browser: Browser, ui: str, run_id: str, out: Path) -> None:
    """The list filtered by UserId, and ada's journey: its user metadata over its timeline."""
    browser.open(list_url(ui), [f"journey/{JOURNEY}/{USER}", "journey/engagement-after-action/ada"],
                 1700, 600)
    (out / "ui-list.png").write_bytes(base64.b64decode(browser.capture()))
    page = journey_url(ui, f"journey/{JOURNEY}/{USER}", run_id)
    browser.open(page.replace("/history", "/user-metadata"), ["Current Details"], 1400, 900)
    details = browser.capture(browser.evaluate(METADATA_CLIP))
    browser.open(page.replace("/history", "/timeline"), ["push: push-reminder",
                                                         "wait 4h before push-followup"], 1400, 1100)
    timeline = browser.capture(browser.evaluate(TIMELINE_CLIP))
    (out / "ui-journey.png").write_bytes(base64.b64decode(browser.stack([details, timeline])))


def run(args: argparse.Namespace) -> None:
    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="journeys-screenshots-") as tmp:
        work, port = Path(tmp), free_port_pair()
        env = environment(work / "data", write_journeys(work / "journeys", args.window), port)
        with dev_worker(env, work) as worker:
            wait_started(worker, work)
            for command in event_commands():
                subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
            run_id = asyncio.run(wait_parked(env["TEMPORAL_ADDRESS"], args.timeout))
            browser = Browser(chromium, work / "chromium")
            try:
                shoot(browser, f"http://127.0.0.1:{port + 1000}", run_id, args.out)
            finally:
                browser.close()
    for name in ("ui-list.png", "ui-journey.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Take the docs' Temporal UI screenshots.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (docs/)")
    parser.add_argument("--chromium", help="the browser (default: chromium on PATH)")
    parser.add_argument("--window", default="5s", help="abandoned-cart's entry window here (5s)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the journey")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
