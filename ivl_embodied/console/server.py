"""The console's web server (aiohttp): the page, a websocket for live updates, the camera as JPEG.

Runs its own asyncio loop on a thread, so the node's spinning thread only calls :meth:`ConsoleServer.broadcast`
(thread-safe). Who may drive the robot from a browser:

* It listens on loopback unless told otherwise (``host``).
* With a ``token`` every request needs it: once in the URL (``/?token=...``, which sets a cookie and
  redirects to ``/``), then the cookie. A wrong or missing token gets 401 and nothing else. Without a token,
  only a loopback address may be served (:func:`check_exposure`).
* The websocket refuses a page from another origin (a browser sends the page's ``Origin``), so a web site
  the operator visits cannot drive the robot through the operator's browser.

Over the websocket the browser gets JSON events (:mod:`ivl_embodied.console.state`) and binary messages,
each one JPEG of the newest camera frame (at most ``frame_hz`` a second, only when there is a new one).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from ivl_embodied.console.state import CommandError, Console

log = logging.getLogger(__name__)
COOKIE = "ivl_console_token"
STATIC = resources.files("ivl_embodied.console") / "static"
PAGES = {"/": ("index.html", "text/html"), "/console.js": ("console.js", "text/javascript"),
         "/console.css": ("console.css", "text/css")}
MAX_COMMAND_BYTES = 4096

FrameSource = Callable[[], "tuple[Any, Any] | None"]  # () -> (key, HxWx3 uint8 RGB) or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str) -> None:
    """Refuse to serve a console anyone on the network could open without a token."""
    if not token and not is_loopback(host):
        raise ValueError(f"the console would serve {host!r} without a token: anyone who can reach it could drive "
                         "the robot; give it a token (token:=auto) or listen on 127.0.0.1")


def encode_jpeg(rgb, quality: int = 80) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class ConsoleServer:
    def __init__(self, console: Console, host: str = "127.0.0.1", port: int = 8080, token: str = "",
                 frames: FrameSource | None = None, frame_hz: float = 5.0, jpeg_quality: int = 80):
        check_exposure(host, token)
        if not 0 < frame_hz <= 30:
            raise ValueError(f"frame_hz must be in (0, 30], got {frame_hz!r}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {jpeg_quality!r}")
        self.console, self.host, self.port, self.token = console, host, int(port), token
        self.frames, self.frame_hz, self.jpeg_quality = frames, frame_hz, jpeg_quality
        self.clients: set[web.WebSocketResponse] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> str:
        """Start serving on a thread; returns the URL to open (with the token)."""
        self._thread = threading.Thread(target=self._run, name="console-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the console's web server did not start within {timeout:.0f} s")
        if self._error is not None:
            raise OSError(f"cannot serve the console on {self.host}:{self.port}: {self._error}") from self._error
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and self._stop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as e:  # a port in use, say: start() raises it
            self._error = e
            self._ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/ws", self._websocket)
        for path in PAGES:
            app.router.add_get(path, self._page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = runner.addresses[0][1]  # port 0: the one the system chose
        self._ready.set()
        tasks = [asyncio.ensure_future(self._push_frames()), asyncio.ensure_future(self._push_health())]
        try:
            await self._stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            for ws in list(self.clients):
                await ws.close()
            await runner.cleanup()

    # -- requests -------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if not self.token:
            return await handler(request)
        given = request.query.get("token")
        if given is not None:
            if not hmac.compare_digest(given, self.token):
                raise web.HTTPUnauthorized(text="wrong token: open the URL the console node printed")
            response = web.HTTPFound(request.path)  # the token leaves the address bar
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
            raise response
        if not hmac.compare_digest(request.cookies.get(COOKIE, ""), self.token):
            raise web.HTTPUnauthorized(text="this console needs its token: open the URL the console node printed")
        return await handler(request)

    async def _page(self, request: web.Request) -> web.Response:
        name, content_type = PAGES[request.path]
        return web.Response(body=(STATIC / name).read_bytes(), content_type=content_type,
                            headers={"Cache-Control": "no-store"})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text=f"websocket from another origin ({origin}) refused")
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_COMMAND_BYTES)
        await ws.prepare(request)
        await ws.send_str(json.dumps(self.console.snapshot(time.monotonic())))
        self.clients.add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    events = self.console.command(json.loads(msg.data), time.monotonic())
                except (CommandError, json.JSONDecodeError) as e:
                    await ws.send_str(json.dumps({"type": "error", "message": str(e)}))
                    continue
                self._send(events)
        finally:
            self.clients.discard(ws)
        return ws

    # -- to the browsers ------------------------------------------------------------------------

    def broadcast(self, events: list[dict]) -> None:
        """Send ``events`` to every connected browser (from any thread)."""
        if events and self.loop is not None and self._ready.is_set() and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._send, events)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _send(self, events: list[dict]) -> None:
        for event in events:
            text = json.dumps(event)
            for ws in list(self.clients):
                if not ws.closed:
                    asyncio.ensure_future(ws.send_str(text))

    async def _push_health(self) -> None:
        """Asks again the tasks that are due, four times a second; the stack's health once a second."""
        n = 0
        while True:
            await asyncio.sleep(0.25)
            self.console.tick(time.monotonic())
            n += 1
            if n % 4 == 0 and self.clients:
                self._send([self.console.health(time.monotonic())])

    async def _push_frames(self) -> None:
        last = None
        while True:
            await asyncio.sleep(1.0 / self.frame_hz)
            frame = self.frames() if self.frames is not None and self.clients else None
            if frame is None or frame[0] == last:
                continue
            last = frame[0]
            try:
                data = await asyncio.get_running_loop().run_in_executor(None, encode_jpeg, frame[1],
                                                                         self.jpeg_quality)
            except Exception as e:  # a frame the encoder cannot take: say so once per frame, keep serving
                log.warning("console: cannot encode camera frame %s: %s", last, e)
                continue
            for ws in list(self.clients):
                if not ws.closed:
                    await ws.send_bytes(data)
