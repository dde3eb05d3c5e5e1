"""A lab's load on one dashboard: N browser sessions at once, what-if and paint, against a local server.

Starts ``streamlit run dashboard/app.py`` on 127.0.0.1 with a private cache (pre-filled as the
browser test does), opens ``--whatif`` + ``--paint`` Playwright contexts (one per session, as
separate users' tabs) in one Debian chromium, and drives them all at once (asyncio) for
``--rounds`` edits each:

- a what-if session i uses seed i and alternates two unit sets of its own (A_i, B_i) in ablate
  mode over the whole grid: each round types the units and presses Enter, and the latency is
  Enter -> the eight "after" images loaded (then the app must go idle before the next round);
- a paint session j alternates one stroke of its own with "Clear": latency is mouse-up -> the
  edited image loaded.

After every round the session's images are fetched from the server and decoded. A what-if
image set must equal, pixel for pixel, what ``core.generate`` gives for that session's own
inputs (computed here, independently of the dashboard): any other image is counted as a
cross-session (or wrong) image. Repeated identical edits are compared with each other both by
their URLs and by their pixels, which tells a changed media URL from a changed image.

Reports p50/p95 latency per kind, errors (exceptions shown on a page, failed waits), server
RSS (now and peak, from /proc), and writes docs/reports/load.json::

    python benchmarks/load_dashboard.py                        # 8 what-if + 2 paint sessions, 8 rounds
    python benchmarks/load_dashboard.py --think 2 --out docs/reports/load_think2.json   # users who pause
    python benchmarks/load_dashboard.py --protocol 7 --out docs/reports/load_mixed.json    # 1 what-if tab in chromium
    python benchmarks/load_dashboard.py --whatif 4 --paint 1 --rounds 4 --out /tmp/load.json

``--protocol N`` runs N of the what-if sessions without a browser: each speaks Streamlit's own
websocket protocol (the rerun a tab sends on Enter, the images it fetches), so the server carries
a lab's load while the browsers' rendering -- on a lab server it runs on each user's own machine --
stays off the server's two cores. The remaining browser sessions still measure what a user sees.

Bounded in time: every wait has a guard (``--guard`` seconds) and the whole run ``--limit``.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from core.base import provenance

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reports" / "load.json"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def _browser_flow():
    """The browser test's helpers (tests/test_browser.py), loaded by path: one set of helpers."""
    spec = importlib.util.spec_from_file_location("_browser_flow", ROOT / "tests" / "test_browser.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_flow = _browser_flow()
EDITED, IDLE, _dashboard, _prefill = _flow.EDITED, _flow.IDLE, _flow._dashboard, _flow._prefill

STROKES = [(20, 50, 300, 70), (20, 280, 300, 250), (40, 170, 280, 200), (150, 20, 170, 300)]


def unit_sets(i: int) -> tuple[list[int], list[int]]:
    """Session i's two unit sets (disjoint between sessions, so every session's images differ)."""
    return [8 * i + k for k in range(4)], [8 * i + 4 + k for k in range(4)]


def expected_whatif(seed: int, units: list[int], layer: str = "layer4") -> list[np.ndarray]:
    """What the What-if page must show for these inputs (full-grid ablation), from core directly."""
    import torch

    from core.base.sampling import z_range
    from core.engine.intervention import Edit, generate
    from core.outputs.visualize import to_uint8
    G = _generator()
    # the server computes with one intra-op thread (dashboard/common.py, GANATOMY_TORCH_THREADS): another
    # thread count sums in another order, and 1-ulp differences flip a few uint8 pixels by one level
    torch.set_num_threads(int(os.environ.get("GANATOMY_TORCH_THREADS", 1)))
    with torch.no_grad():
        _, cap = generate(G, z_range(0, 0, 1, G.z_dim), capture=[layer])
        h, w = cap[layer].shape[2:]
        out = to_uint8(generate(G, z_range(seed, 0, 8, G.z_dim),
                                [Edit(layer, units, "ablate", None, torch.ones(h, w))]))
    return list(out)


_G = []


def _generator():
    if not _G:
        import core
        _G.append(core.load_generator("toyworld/town"))
    return _G[0]


def _get(url: str, timeout: float) -> bytes:
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


POLL_MS = 50                  # DOM polling of the waits (every animation frame, in 10 pages, costs the CPU we measure)


FETCH_RETRIES: list[str] = []     # the script's own fetches that had to be retried (not what users see)


async def _fetch(ctx, srcs: list[str]) -> list[np.ndarray]:
    """The images the session shows, fetched again from the server to check their pixels
    (retried on a dropped connection: this is the checker's request, not the page's)."""
    out = []
    for s in srcs:
        for attempt in range(3):
            try:
                out.append(_decode(await (await ctx.request.get(s)).body()))
                break
            except Exception as e:      # noqa: BLE001
                if attempt == 2:
                    raise
                FETCH_RETRIES.append(f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
                await asyncio.sleep(0.2)
    return out


AFTER = '[data-testid="stMain"] [data-testid="stImage"] img'


async def _after_srcs(page) -> list[str]:
    """The srcs of the eight 'after' images of the What-if page (the second image group)."""
    return (await page.eval_on_selector_all(AFTER, "els => els.map(e => e.src)"))[8:16]


async def _exceptions(page) -> int:
    return await page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count()


async def _ready(page, title, extra, timeout):
    await page.get_by_role("heading", name=title, exact=True).wait_for(timeout=timeout)
    await page.wait_for_function(IDLE, timeout=timeout, polling=POLL_MS)
    await page.locator(extra).first.wait_for(timeout=timeout)


async def _canvas_ready(page, timeout_s):
    """As the browser test's: the canvas draws once its cursor is the crosshair."""
    canvas = page.locator("canvas.upper-canvas").first
    await canvas.scroll_into_view_if_needed()
    t0 = time.perf_counter()
    while True:
        box = await canvas.bounding_box()
        await page.mouse.move(box["x"] + 4 + (time.perf_counter() * 10) % 3, box["y"] + 4)
        if await canvas.evaluate("c => c.style.cursor") == "crosshair":
            return box
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("the paint canvas never entered drawing mode")
        await page.wait_for_timeout(50)


async def _stroke(page, box, x0, y0, x1, y1):
    await page.mouse.move(box["x"] + x0, box["y"] + y0)
    await page.mouse.down()
    for t in range(1, 9):
        await page.mouse.move(box["x"] + x0 + (x1 - x0) * t / 8, box["y"] + y0 + (y1 - y0) * t / 8)


class Session:
    """One browser context (a user's tab) doing ``rounds`` edits of its own, all sessions at once."""

    def __init__(self, kind: str, i: int, url: str, rounds: int, guard_s: float, think_s: float = 0.0):
        self.kind, self.i, self.url, self.rounds, self.think_s = kind, i, url, rounds, think_s
        self.guard_s, self.guard_ms = guard_s, int(guard_s * 1000)
        self.latency: list[float] = []
        self.errors: list[str] = []
        self.seen: list[tuple[str, tuple[str, ...], list[np.ndarray]]] = []     # (edit, srcs, images)
        self.done = False

    async def open(self, browser):
        self.ctx = await browser.new_context(viewport={"width": 1000, "height": 700}, reduced_motion="reduce")
        self.ctx.set_default_timeout(self.guard_ms)
        self.page = await self.ctx.new_page()
        self.frames: list[float] = []        # when the server's message with the edited images arrived

        def on_ws(ws):
            def received(payload):
                if isinstance(payload, (bytes, bytearray)) and (b"after #0" in payload or b"paint_edited" in payload):
                    self.frames.append(time.perf_counter())
            ws.on("framereceived", received)
        self.page.on("websocket", on_ws)
        self.server_latency: list[float] = []
        try:
            await (self._open_whatif() if self.kind == "whatif" else self._open_paint())
            return True
        except Exception as e:       # noqa: BLE001  (a failed wait or a crash: counted, reported, the run goes on)
            self._failed(e)
            return False

    async def edit(self):
        try:
            await (self._whatif() if self.kind == "whatif" else self._paint())
        except Exception as e:       # noqa: BLE001
            self._failed(e)
        self.done = True

    async def _think(self, r: int):
        """A user's pause before an edit (``--think``), staggered so sessions do not edit in lockstep."""
        if self.think_s > 0:
            await asyncio.sleep(self.think_s * (0.5 + ((self.i * 7 + r * 3) % 10) / 10))

    def _failed(self, e):
        self.errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")

    async def _open_whatif(self):
        page = self.page
        await page.goto(self.url + "/whatif")
        await _ready(page, "What-if", "[data-testid='stImage'] img", self.guard_ms)
        seed_box = page.get_by_label("Seed")
        await seed_box.fill(str(self.i))
        await seed_box.press("Enter")
        await page.wait_for_timeout(300)
        await page.wait_for_function(IDLE, timeout=self.guard_ms, polling=POLL_MS)

    async def _whatif(self):
        page = self.page
        units_box = page.get_by_label("Units (comma separated)")
        a, b = unit_sets(self.i)
        for r in range(self.rounds):
            await self._think(r)
            units = a if r % 2 == 0 else b
            old = await _after_srcs(page)
            t = time.perf_counter()
            await units_box.fill(", ".join(map(str, units)))
            await units_box.press("Enter")
            await page.wait_for_function(
                """([sel, old]) => { const els = [...document.querySelectorAll(sel)].slice(8, 16);
                                     return els.length === 8 && els.some((e, k) => e.src !== old[k])
                                            && els.every(e => e.complete && e.naturalWidth > 0); }""",
                arg=[AFTER, old], timeout=self.guard_ms, polling=POLL_MS)
            self.latency.append(time.perf_counter() - t)
            got = [f for f in self.frames if f > t]
            if got:
                self.server_latency.append(got[0] - t)
            await page.wait_for_function(IDLE, timeout=self.guard_ms, polling=POLL_MS)
            if await _exceptions(page):
                self.errors.append(f"round {r}: an error is shown on the page")
            srcs = tuple(await _after_srcs(page))
            self.seen.append((",".join(map(str, units)), srcs, await _fetch(self.ctx, list(srcs))))

    async def _open_paint(self):
        page = self.page
        await page.goto(self.url + "/paint")
        await _ready(page, "Paint", EDITED, self.guard_ms)
        await _canvas_ready(page, self.guard_s)
        self.clear = await page.eval_on_selector(EDITED, "i => i.src")

    async def _paint(self):
        page = self.page
        stroke = STROKES[self.i % len(STROKES)]
        for r in range(self.rounds):
            await self._think(r)
            before = await page.eval_on_selector(EDITED, "i => i.src")
            box = await _canvas_ready(page, self.guard_s)
            await _stroke(page, box, *stroke)
            t = time.perf_counter()
            await page.mouse.up()
            await page.wait_for_function(
                "([sel, old]) => { const i = document.querySelector(sel); "
                "return i && i.src !== old && i.complete && i.naturalWidth > 0; }",
                arg=[EDITED, before], timeout=self.guard_ms, polling=POLL_MS)
            self.latency.append(time.perf_counter() - t)
            if await _exceptions(page):
                self.errors.append(f"round {r}: an error is shown on the page")
            src = await page.eval_on_selector(EDITED, "i => i.src")
            self.seen.append((f"stroke{self.i}", (src,), await _fetch(self.ctx, [src])))
            await page.get_by_role("button", name="Clear").click()
            await page.wait_for_function("([s, v]) => document.querySelector(s)?.src === v",
                                         arg=[EDITED, self.clear], timeout=self.guard_ms, polling=POLL_MS)


class ProtocolSession(Session):
    """A what-if session that speaks Streamlit's own websocket protocol (protobuf BackMsg /
    ForwardMsg, ``/_stcore/stream``) instead of running a browser: what a tab sends when its
    units box gets Enter (a rerun with the widget's new value), and what it fetches when the
    answer arrives (the eight "after" images, over HTTP). It puts the server under a lab's load
    without 10 renderers on the server's own cores; its images get the same pixel check."""

    PAGE = "whatif"

    async def open(self, browser=None):
        import websockets
        self.frames, self.server_latency = [], []
        try:
            self.ws = await websockets.connect(self.url.replace("http://", "ws://") + "/_stcore/stream",
                                               subprotocols=["streamlit"], max_size=None,
                                               open_timeout=self.guard_s)
            self.ids: dict[str, str] = {}
            await self._rerun({})                             # the page as a tab first opens it
            if "Seed" not in self.ids or "Units (comma separated)" not in self.ids:
                raise RuntimeError(f"the What-if page has no Seed / Units widgets (got {sorted(self.ids)})")
            self.state = {self.ids["Seed"]: ("int_value", self.i)}
            await self._rerun(self.state)
            return True
        except Exception as e:       # noqa: BLE001
            self._failed(e)
            return False

    async def _rerun(self, widgets: dict, fetch: bool = False):
        """Send one rerun with these widget values; read the answer until the script finishes.
        Returns the "after" image URLs, when their message arrived and (``fetch``) the task
        fetching them, started on arrival: it gives (decoded images, when the last one came)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        msg = BackMsg()
        msg.rerun_script.page_name = self.PAGE
        # the page by its URL name, as a tab opened on .../whatif asks for it (no script hash);
        # a widget inside a fragment asks for that fragment's rerun, as the browser does
        if widgets and getattr(self, "fragment", ""):
            msg.rerun_script.fragment_id = self.fragment
        for wid, (field, value) in widgets.items():
            w = msg.rerun_script.widget_states.widgets.add()
            w.id = wid
            setattr(w, field, value)
        await self.ws.send(msg.SerializeToString())
        after, arrived, fetched = [], None, None
        while True:
            f = ForwardMsg()
            f.ParseFromString(await asyncio.wait_for(self.ws.recv(), self.guard_s))
            kind = f.WhichOneof("type")
            if kind == "delta" and f.delta.WhichOneof("type") == "new_element":
                el = f.delta.new_element
                which = el.WhichOneof("type")
                if which in ("text_input", "number_input"):
                    w = getattr(el, which)
                    self.ids[w.label] = w.id
                    self.fragment = f.delta.fragment_id        # a widget in a fragment reruns only it
                elif which == "imgs" and el.imgs.imgs and el.imgs.imgs[0].caption.startswith("after"):
                    after, arrived = [i.url for i in el.imgs.imgs], time.perf_counter()
                    if fetch:
                        fetched = asyncio.ensure_future(self._get_all(after))
                elif which == "exception" or (which == "alert" and el.alert.format == 1):      # 1: error
                    self.errors.append("an error is shown on the page")
            elif kind == "page_not_found":
                raise RuntimeError(f"the server has no page {self.PAGE!r}")
            elif kind == "script_finished":
                if f.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    return after, arrived, fetched

    async def _get_all(self, urls: list[str]):
        data = await asyncio.gather(*(asyncio.to_thread(_get, self.url + u, self.guard_s) for u in urls))
        done = time.perf_counter()
        return [_decode(x) for x in data], done

    async def _whatif(self):
        a, b = unit_sets(self.i)
        for r in range(self.rounds):
            await self._think(r)
            units = a if r % 2 == 0 else b
            self.state[self.ids["Units (comma separated)"]] = ("string_value", ", ".join(map(str, units)))
            t = time.perf_counter()
            after, arrived, fetched = await self._rerun(self.state, fetch=True)
            if not fetched:
                raise RuntimeError(f"round {r}: the page sent no 'after' images")
            images, done = await fetched            # fetched as soon as their message came, as a browser does
            self.latency.append(done - t)
            self.server_latency.append(arrived - t)
            self.seen.append((",".join(map(str, units)), tuple(after), images))

async def _drive(sessions, limit_s):
    """One browser, one context per browser session (protocol sessions need none): open them one
    after another (a lab's morning), then every session edits at the same time."""
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = None
        if any(not isinstance(s, ProtocolSession) for s in sessions):
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for s in sessions:
                await s.open(browser)
            print(f"{len(sessions)} sessions open; editing at once…", flush=True)
            cpu0 = _cpu_seconds()
            t = time.perf_counter()
            try:
                await asyncio.wait_for(asyncio.gather(*(s.edit() for s in sessions if not s.errors)), limit_s)
            except asyncio.TimeoutError:
                pass
            cpu1 = _cpu_seconds()
            return time.perf_counter() - t, {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0}
        finally:
            for s in sessions:
                if isinstance(s, ProtocolSession) and hasattr(s, "ws"):
                    await s.ws.close()
            if browser is not None:
                await browser.close()


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the processes of this machine, grouped: the dashboard server
    (streamlit), the browser (chromium and Playwright's driver) and everything else."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"server": 0.0, "browser": 0.0, "other": 0.0}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick
        group = ("server" if "streamlit" in cmd else
                 "browser" if ("chromium" in cmd or "playwright" in cmd) else "other")
        out[group] += cpu
    return out


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", float("nan")), vals.get("VmHWM", float("nan"))


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs), q))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--whatif", type=int, default=8, help="what-if sessions (default 8)")
    ap.add_argument("--paint", type=int, default=2, help="paint sessions (default 2)")
    ap.add_argument("--protocol", type=int, default=0,
                    help="how many of the what-if sessions speak Streamlit's websocket protocol themselves "
                         "instead of running in the browser (default 0: all in the browser)")
    ap.add_argument("--rounds", type=int, default=8, help="edits per session (default 8)")
    ap.add_argument("--think", type=float, default=0.0,
                    help="seconds a user pauses before each edit (0.5-1.4x this, staggered); 0: edit continuously")
    ap.add_argument("--pin", action="store_true",
                    help="server on CPU 0 only, the browser (and this script) on the other CPUs: the server's "
                         "latency with one core of its own, apart from the browsers' load")
    ap.add_argument("--guard", type=float, default=180.0, help="seconds before a wait counts as hung")
    ap.add_argument("--limit", type=float, default=1200.0, help="seconds for the whole run")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    for flag in ("whatif", "paint", "rounds"):
        if getattr(a, flag) < 0 or (flag == "rounds" and a.rounds < 1):
            ap.error(f"--{flag} must be {'at least 1' if flag == 'rounds' else '0 or more'}, got {getattr(a, flag)}")
    if not 0 <= a.protocol <= a.whatif:
        ap.error(f"--protocol must be between 0 and --whatif ({a.whatif}), got {a.protocol}")
    if a.whatif > 30:
        ap.error("--whatif: at most 30 sessions (unit sets of 8 per session must fit layer4's 256 units)")
    if not Path(CHROMIUM).exists():
        sys.exit(f"load_dashboard: {CHROMIUM} is missing (Debian: apt-get install chromium)")
    started = provenance.stamp(None if argv is None else [__file__, *argv])
    t_start = time.perf_counter()
    load_editing = None
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        print("pre-filling a private cache (dissections at 50 samples, paint's insertion values)…", flush=True)
        _prefill(cache)
        env = {**os.environ, "GANATOMY_CACHE": str(cache), "GANATOMY_DASHBOARD_SAMPLES": "50"}
        cpus = sorted(os.sched_getaffinity(0))
        if a.pin and len(cpus) < 2:
            ap.error("--pin needs at least 2 CPUs")
        pin_server = (lambda: os.sched_setaffinity(0, {cpus[0]})) if a.pin else None
        with _dashboard(Path(tmp), env, preexec_fn=pin_server) as (url, server, _):
            if a.pin:              # the browser this script launches inherits the rest
                os.sched_setaffinity(0, set(cpus[1:]))
            rss = []
            stop = threading.Event()

            def watch():
                while not stop.is_set() and server.poll() is None:
                    try:
                        rss.append(_rss_mb(server.pid))
                    except OSError:
                        pass
                    stop.wait(0.5)

            threading.Thread(target=watch, daemon=True).start()
            try:
                _wait_server(url, server, a.guard, Path(tmp) / "streamlit.log")
                n_browser = a.whatif - a.protocol
                sessions = ([Session("whatif", i, url, a.rounds, a.guard, a.think) for i in range(n_browser)]
                            + [ProtocolSession("whatif", i, url, a.rounds, a.guard, a.think)
                               for i in range(n_browser, a.whatif)]
                            + [Session("paint", j, url, a.rounds, a.guard, a.think) for j in range(a.paint)])
                load_editing = provenance.load_1min()
                edit_s, cpu = asyncio.run(_drive(sessions, max(1.0, t_start + a.limit - time.perf_counter())))
                hung = [f"{s.kind}{s.i}" for s in sessions if not s.done and not s.errors]
            finally:
                stop.set()
                rss_now = _rss_mb(server.pid) if server.poll() is None else (float("nan"), float("nan"))

    # the images every session saw, checked against its own inputs
    wrong, url_changes, pixel_changes, compared = [], 0, 0, 0
    expected = {}
    for s in sessions:
        by_edit: dict[str, list] = {}
        for edit, srcs, images in s.seen:
            by_edit.setdefault(edit, []).append((srcs, images))
            if s.kind == "whatif":
                key = (s.i, edit)
                if key not in expected:
                    expected[key] = expected_whatif(s.i, [int(u) for u in edit.split(",")])
                compared += 1
                if len(images) != 8 or any(not np.array_equal(x, y) for x, y in zip(images, expected[key])):
                    diff = max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(images, expected[key]))
                    wrong.append(f"whatif{s.i} units {edit}: {len(images)} images, max pixel difference {diff}")
        for edit, seen in by_edit.items():
            first_srcs, first_images = seen[0]
            for srcs, images in seen[1:]:
                url_changes += srcs != first_srcs
                pixel_changes += any(not np.array_equal(x, y) for x, y in zip(images, first_images))
    # paint: the two paint sessions' strokes differ, so their images must differ too
    paint_imgs = {s.i: s.seen[0][2][0] for s in sessions if s.kind == "paint" and s.seen}
    paint_distinct = len({v.tobytes() for v in paint_imgs.values()}) == len(paint_imgs)

    lat = {k: [x for s in sessions if s.kind == k for x in s.latency] for k in ("whatif", "paint")}
    lat["whatif_server"] = [x for s in sessions if s.kind == "whatif" for x in s.server_latency]
    lat["whatif_browser"] = [x for s in sessions if type(s) is Session and s.kind == "whatif" for x in s.latency]
    lat["whatif_protocol"] = [x for s in sessions if isinstance(s, ProtocolSession) for x in s.latency]
    report = {
        "sessions": {"whatif": a.whatif, "whatif_protocol_clients": a.protocol, "paint": a.paint,
                     "rounds": a.rounds, "think_s": a.think,
                     "pinned": "server on CPU 0, browser on the others" if a.pin else False},
        "latency_s": {k: {"n": len(v), "p50": _pct(v, 50), "p95": _pct(v, 95), "max": max(v) if v else None,
                          "mean": statistics.fmean(v) if v else None} for k, v in lat.items()},
        "errors": ([f"{s.kind}{s.i}: {e}" for s in sessions for e in s.errors]
                   + [f"{h}: hung past --limit" for h in hung]),
        "whatif_image_sets_checked": compared,
        "checker_fetch_retries": FETCH_RETRIES,
        "whatif_wrong_or_cross_session_image_sets": wrong,
        "paint_sessions_distinct": paint_distinct,
        "repeated_identical_edits": {"url_changed": url_changes, "pixels_changed": pixel_changes,
                                     "pairs": sum(max(0, len([x for x in s.seen if x[0] == e]) - 1)
                                                  for s in sessions for e in {x[0] for x in s.seen})},
        "server_rss_mb": {"peak": max((h for _, h in rss), default=None),
                          "max_sampled": max((r for r, _ in rss), default=None), "end": rss_now[0]},
        "editing_seconds": edit_s,
        "cpu_seconds_while_editing": cpu,
        "total_seconds": time.perf_counter() - t_start,
        "load_1min_editing": load_editing,
        "note": "latency: what-if = Enter in the units box -> all eight 'after' images loaded; whatif_server = "
                "Enter -> the websocket message carrying the edited images received by the browser's network "
                "stack (the server's answer, before the page renders it); "
                "paint = mouse-up -> the edited image loaded (includes the canvas component's 200 ms send debounce). "
                "whatif_browser / whatif_protocol = the same, for sessions in chromium / for sessions speaking "
                "Streamlit's websocket protocol themselves (--protocol; they fetch their images over HTTP when "
                "the message arrives, and render nothing). "
                "The sessions were opened one after another, then all edit at once (with --think 0, continuously). "
                "The browser runs on the same machine as the server: cpu_seconds_while_editing says how the CPU "
                "was shared between them.",
    }
    provenance.write_report(a.out, report, started=started)
    for k, v in report["latency_s"].items():
        if v["n"]:
            print(f"{k:7s} n={v['n']:3d}  p50 {v['p50']:.2f} s  p95 {v['p95']:.2f} s  max {v['max']:.2f} s")
    print(f"errors: {len(report['errors'])}; wrong/cross-session what-if image sets: {len(wrong)} of {compared}; "
          f"repeated identical edits: {report['repeated_identical_edits']}; server RSS peak "
          f"{report['server_rss_mb']['peak']} MB; CPU seconds while editing {cpu} over {edit_s:.0f} s; "
          f"written to {a.out}")
    for e in report["errors"][:10]:
        print("  ", e)


def _wait_server(url, server, guard, logfile):
    import urllib.request
    t0 = time.perf_counter()
    while True:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2).read()
            return
        except Exception:
            if server.poll() is not None:
                sys.exit("load_dashboard: the server exited:\n" + Path(logfile).read_text()[-3000:])
            if time.perf_counter() - t0 > guard:
                sys.exit(f"load_dashboard: the server did not answer within {guard:.0f} s")
            time.sleep(0.2)


if __name__ == "__main__":
    main()
