"""A visitor of the app that speaks Streamlit's own websocket protocol instead of driving a browser: what the
server does for it (script runs, the job registry, the run cache, the messages) is what it does for a browser;
what it saves is the browser's own rendering, which on a 2-core machine took the cores the server needed
(thirty Chromium pages: 78 % of the CPU against the server's 33 %). Used by bench/bench_class.py --clients
protocol; the browser flow it follows is bench/demo_session.py's.

    v = Visitor(base_url, "ws=...")
    await v.open(); await v.goto("train"); await v.click("Start training")
    await v.wait_text("Next: attack this model", timeout_s)      # polls as the page's own timer asks
    await v.follow("Next: attack this model")

Only what the demo needs: buttons (a click is the button's trigger), page links (their page and query string),
the page's fragments that rerun on a timer (``st.fragment(run_every=...)``: the browser reruns them, so the
visitor does too), and the text of what is drawn. Widgets not clicked keep their defaults, as in the demo.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

if __package__:          # python -m bench.bench_class, or imported as bench.protocol_session
    from .demo_session import REUSED, VERDICT_TEXTS, BenchError
else:                    # python bench/bench_class.py: bench/ is on sys.path
    from demo_session import REUSED, VERDICT_TEXTS, BenchError

FRAGMENT_DONE = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY)


@dataclass
class Element:
    kind: str
    text: str = ""
    button_id: str = ""
    page_hash: str = ""
    query: str = ""


def _element(el) -> Element:
    kind = el.WhichOneof("type") or ""
    inner = getattr(el, kind, None)
    if kind == "button":
        return Element(kind, inner.label, button_id=inner.id)
    if kind == "page_link":
        return Element(kind, inner.label, page_hash=inner.page_script_hash, query=inner.query_string)
    text = " ".join(str(getattr(inner, f)) for f in ("label", "body", "value") if inner is not None
                    and f in {d.name for d in inner.DESCRIPTOR.fields} and getattr(inner, f))
    return Element(kind, text)


@dataclass
class Visitor:
    base_url: str
    query: str                        # the link's query string; the app adds to it (page_info_changed)
    elements: dict = field(default_factory=dict)      # delta path -> Element, as last drawn
    pages: dict = field(default_factory=dict)         # url path ("train") -> page script hash
    page_hash: str = ""
    timers: dict = field(default_factory=dict)        # fragment id -> (interval s, next due)
    runs_finished: int = 0
    bytes_received: int = 0
    messages_received: int = 0

    async def open(self) -> None:
        import websockets
        url = self.base_url.replace("http", "ws", 1) + "/_stcore/stream"
        self.ws = await websockets.connect(url, subprotocols=["streamlit"], max_size=None, open_timeout=120)
        self._running = False
        self._finished = asyncio.Event()
        self._drawn: set = set()
        self.reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        async for data in self.ws:
            self.bytes_received += len(data)
            self.messages_received += 1
            msg = ForwardMsg()
            msg.ParseFromString(data)
            kind = msg.WhichOneof("type")
            if kind == "new_session" and not msg.metadata.run.fragment_ids:
                self._drawn = set()
                self.timers.clear()                  # a whole run: its fragments register again
            elif kind == "navigation":
                self.pages = {p.url_pathname or "": p.page_script_hash for p in msg.navigation.app_pages}
                self.page_hash = msg.navigation.page_script_hash or self.page_hash
            elif kind == "page_info_changed":
                self.query = msg.page_info_changed.query_string
            elif kind == "auto_rerun":
                every = msg.auto_rerun.interval
                self.timers[msg.auto_rerun.fragment_id] = (every, time.perf_counter() + every)
            elif kind == "stop_auto_rerun":
                self.timers.pop(msg.stop_auto_rerun.fragment_id, None)
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                path = tuple(msg.metadata.delta_path)
                self.elements[path] = _element(msg.delta.new_element)
                self._drawn.add(path)
            elif kind == "script_finished":
                if msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                    # a whole run draws everything that is on the page; the rest is gone
                    self.elements = {p: e for p, e in self.elements.items() if p in self._drawn}
                if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    self.runs_finished += 1
                    self._running = False
                    self._finished.set()

    async def _rerun(self, *, page_hash: str | None = None, page_name: str = "", query: str | None = None,
                     widgets: list[WidgetState] = (), fragment_id: str = "", timeout_s: float = 600) -> float:
        """One script run as the browser asks for it; seconds until it finished."""
        back = BackMsg()
        state = back.rerun_script
        state.query_string = self.query if query is None else query
        state.page_script_hash = self.page_hash if page_hash is None else page_hash
        state.page_name = page_name
        state.fragment_id = fragment_id
        state.is_auto_rerun = bool(fragment_id)
        state.widget_states.widgets.extend(widgets)
        self._finished.clear()
        self._running = True
        t0 = time.perf_counter()
        await self.ws.send(back.SerializeToString())
        finished = asyncio.create_task(self._finished.wait())
        await asyncio.wait({finished, self.reader}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        self._check_reader()
        if not finished.done():
            finished.cancel()
            raise BenchError(f"a script run did not finish within {timeout_s:.0f} s")
        return time.perf_counter() - t0

    def _check_reader(self) -> None:
        """The connection's reader ended (the server closed it, or a message it could not read): say so."""
        if self.reader.done():
            exc = None if self.reader.cancelled() else self.reader.exception()
            raise BenchError(f"the connection to the app ended ({type(exc).__name__ if exc else 'closed'}: {exc})")

    async def goto(self, page: str, timeout_s: float = 600) -> float:
        """Open a page by its url path ("train", "" for the default page), as a link typed in the address bar."""
        if page in self.pages:
            return await self._rerun(page_hash=self.pages[page], timeout_s=timeout_s)
        return await self._rerun(page_hash="", page_name=page, timeout_s=timeout_s)

    def texts(self) -> list[str]:
        return [e.text for e in self.elements.values() if e.text]

    def shows(self, *needles: str) -> bool:
        return any(n in t for t in self.texts() for n in needles)

    def _find(self, kind: str, label: str) -> Element | None:
        return next((e for e in self.elements.values() if e.kind == kind and label in e.text), None)

    async def click(self, label: str, timeout_s: float = 600) -> float:
        button = self._find("button", label)
        if button is None:
            raise BenchError(f"no button {label!r} on the page")
        return await self._rerun(widgets=[WidgetState(id=button.button_id, trigger_value=True)], timeout_s=timeout_s)

    async def follow(self, label: str, timeout_s: float = 600) -> float:
        link = self._find("page_link", label)
        if link is None:
            raise BenchError(f"no link {label!r} on the page")
        self.page_hash = link.page_hash
        return await self._rerun(page_hash=link.page_hash, query=link.query or self.query, timeout_s=timeout_s)

    async def wait_text(self, needles: tuple[str, ...] | str, what: str, timeout_s: float) -> None:
        """Until the page shows one of ``needles``, rerunning its timed fragments when they are due (the
        browser's polling)."""
        needles = (needles,) if isinstance(needles, str) else needles
        end = time.perf_counter() + timeout_s
        while not self.shows(*needles):
            self._check_reader()
            errors = [e.text for e in self.elements.values() if e.kind == "exception"]
            if errors:
                raise BenchError(f"the app showed an error while waiting for {what}: {errors[0][:200]}")
            if time.perf_counter() > end:
                raise BenchError(f"{what} did not show within {timeout_s:.0f} s")
            now = time.perf_counter()
            due = [(fid, every) for fid, (every, at) in self.timers.items() if at <= now]
            if due:
                fid, every = due[0]
                self.timers[fid] = (every, now + every)
                await self._rerun(fragment_id=fid, timeout_s=max(1.0, end - now))
            else:
                await asyncio.sleep(0.05)


async def protocol_demo(base_url: str, query: str, timeout_s: float = 1800, clock=time.perf_counter) -> dict:
    """bench/demo_session.py's demo (Train -> Start training -> the Attack page by its link -> Start the attack
    -> the Verify page by its link), with the same outcome's keys where they have a meaning without a browser."""
    v = Visitor(base_url, query)
    await v.open()
    try:
        await v.goto("train", timeout_s)
        await v.wait_text("Start training", "the Train page's Start training button", 120)
        await v.click("Start training", timeout_s)
        t0 = clock()
        await v.wait_text("Next: attack this model", "the training to finish", timeout_s)
        trained = clock()
        reused_train = v.shows(REUSED)
        await v.follow("Next: attack this model", timeout_s)
        await v.wait_text("Start the attack", "the Attack page's Start button", 120)
        await v.click("Start the attack", timeout_s)
        t1 = clock()
        await v.wait_text(VERDICT_TEXTS + ("Next: verify ownership",), "the first thief's verdict", timeout_s)
        first_card = clock()
        await v.wait_text("Next: verify ownership", "the attack to finish", timeout_s)
        attacked = clock()
        await v.follow("Next: verify ownership", timeout_s)
        await v.wait_text(VERDICT_TEXTS, "the first verdict card", timeout_s)
        shown = clock()
        verdict = next(t for t in v.texts() if any(n in t for n in VERDICT_TEXTS))
        params = parse_qs(v.query)
        return {"train_s": round(trained - t0, 1), "attack_s": round(attacked - t1, 1),
                "first_card_s": round(first_card - t0, 1), "verdict_s": round(shown - t0, 1),
                "verdict": verdict[:200], "workspace": (params.get("ws") or [None])[0],
                "run": (params.get("run") or [None])[0], "train_reused": reused_train,
                "attack_reused": v.shows(REUSED), "started_at": t0, "shown_at": shown,
                "script_runs": v.runs_finished, "messages": v.messages_received, "bytes": v.bytes_received}
    finally:
        await v.close()


async def protocol_switches(base_url: str, query: str, pages: tuple[str, str], switches: list[float],
                            stop: asyncio.Event) -> None:
    """A visitor who only looks around while the class trains: seconds per page switch (the new page's whole
    script run, as the server serves it)."""
    v = Visitor(base_url, query)
    await v.open()
    try:
        await v.goto("", 120)
        i = 0
        while not stop.is_set():
            switches.append(await v.goto(pages[i % 2], 120))
            i += 1
            await asyncio.sleep(0.5)
    finally:
        await v.close()
