"""The console's web server: who may open it, the websocket's events and commands, the camera frames."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from aiohttp import ClientSession, CookieJar, WSMsgType, WSServerHandshakeError

from ivl_embodied.console.server import ConsoleServer, check_exposure
from ivl_embodied.console.state import Console

from .test_console_state import Sink

TOKEN = "s3cret-token"


@pytest.fixture
def served():
    sink = Sink()
    frame = {"value": None}
    server = ConsoleServer(Console(sink), "127.0.0.1", 0, TOKEN, frames=lambda: frame["value"], frame_hz=20)
    server.start()
    yield server, sink, frame
    server.stop()


def session() -> ClientSession:
    return ClientSession(cookie_jar=CookieJar(unsafe=True))  # as a browser, keep cookies of an IP address


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _logged_in(session: ClientSession, server) -> None:
    async with session.get(server.url) as r:  # ?token=... sets the cookie, then redirects to /
        assert r.status == 200 and str(r.url).endswith("/") and "token" not in str(r.url)
        assert "operator console" in await r.text()


def test_nothing_is_served_without_the_token(served):
    server, _, _ = served
    base = f"http://127.0.0.1:{server.port}"

    async def go():
        async with session() as s:
            for path in ("/", "/console.js", "/ws", "/?token=wrong"):
                async with s.get(base + path) as r:
                    assert r.status == 401, path
                    assert "token" in await r.text()
            with pytest.raises(WSServerHandshakeError):
                await s.ws_connect(base + "/ws")

    run(go())


def test_the_websocket_gives_a_snapshot_and_events_and_takes_commands(served):
    server, sink, _ = served

    async def go():
        async with session() as s:
            await _logged_in(s, server)
            ws = await s.ws_connect(f"http://127.0.0.1:{server.port}/ws")
            snap = json.loads((await ws.receive()).data)
            assert snap["type"] == "snapshot" and snap["tasks"] == [] and "vocabulary" in snap
            await ws.send_str(json.dumps({"op": "task", "instruction": "put the red cube in the green bowl"}))
            event = json.loads((await ws.receive()).data)
            assert event["type"] == "task" and event["task"]["instruction"] == "put the red cube in the green bowl"
            task_id = event["task"]["task_id"]
            # a status heard from the graph (another thread) reaches the browser
            server.broadcast(server.console.on_status(task_id, "PLANNING", "planning", "", 1, 0, 0.0))
            while (m := json.loads((await ws.receive()).data))["type"] != "task":
                pass
            assert m["task"]["states"][-1]["state"] == "PLANNING"
            await ws.send_str(json.dumps({"op": "estop", "engage": True}))
            await ws.send_str("not json")
            while (m := json.loads((await ws.receive()).data))["type"] != "error":
                pass
            assert "Expecting value" in m["message"]
            await ws.send_str(json.dumps({"op": "cancel", "task_id": "nope"}))
            while (m := json.loads((await ws.receive()).data))["type"] != "error":
                pass
            assert "no task 'nope'" in m["message"]
            await ws.close()
        return task_id

    task_id = run(go())
    assert sink.sent == [("task", task_id, "put the red cube in the green bowl"), ("estop", True)]


def test_a_page_of_another_origin_cannot_open_the_websocket(served):
    server, sink, _ = served

    async def go():
        async with session() as s:
            await _logged_in(s, server)
            with pytest.raises(WSServerHandshakeError) as e:
                await s.ws_connect(f"http://127.0.0.1:{server.port}/ws", headers={"Origin": "http://evil.example"})
            assert e.value.status == 403
            ws = await s.ws_connect(f"http://127.0.0.1:{server.port}/ws",
                                    headers={"Origin": f"http://127.0.0.1:{server.port}"})
            await ws.close()

    run(go())


def test_camera_frames_arrive_as_jpeg_only_when_new(served):
    from PIL import Image

    server, _, frame = served
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (255, 0, 0)

    async def go():
        async with session() as s:
            await _logged_in(s, server)
            ws = await s.ws_connect(f"http://127.0.0.1:{server.port}/ws")
            frame["value"] = (1, rgb)
            frames = []
            deadline = asyncio.get_running_loop().time() + 2.0
            while asyncio.get_running_loop().time() < deadline:
                try:
                    m = await ws.receive(timeout=0.3)
                except asyncio.TimeoutError:
                    continue
                if m.type == WSMsgType.BINARY:
                    frames.append(m.data)
            await ws.close()
            return frames

    frames = run(go())
    assert len(frames) == 1  # 2 s at 20 Hz, one frame: sent once
    image = np.asarray(Image.open(io.BytesIO(frames[0])))
    assert image.shape == (48, 64, 3) and image[24, 10, 0] > 200 and image[24, 50, 0] < 60


def test_only_loopback_may_go_without_a_token():
    check_exposure("127.0.0.1", "")
    check_exposure("::1", "")
    check_exposure("0.0.0.0", "tok")
    with pytest.raises(ValueError, match="'0.0.0.0' without a token"):
        check_exposure("0.0.0.0", "")
    with pytest.raises(ValueError, match="without a token"):
        ConsoleServer(Console(Sink()), "192.168.1.5", 0, "")


def test_a_port_in_use_is_a_clear_error(served):
    server, _, _ = served
    other = ConsoleServer(Console(Sink()), "127.0.0.1", server.port, TOKEN)
    with pytest.raises(OSError, match=f"cannot serve the console on 127.0.0.1:{server.port}"):
        other.start()
