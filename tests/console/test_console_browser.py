"""The operator console in a real headless browser (Debian's Chromium, driven by Playwright), on the whole graph.

``ivl-embodied launch --console 0`` starts the simulator, vision, the shipped planner, the executor and the
console; the browser opens the URL the console printed (with its token), types a task, sees its states arrive
and the plan's boxes and grounded poses drawn on the live camera, cancels it (CANCELLED), latches the e-stop and
sees the next task's motion refused (REJECTED estop), then resets it. ``IVL_CONSOLE_SCREENSHOT=PATH`` also
saves the page, with the plan drawn, there (the README's picture).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("mujoco")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is installed by scripts/test.sh")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium: scripts/test.sh installs Debian's")]

TASK = "build a tower with the green cube above the red cylinder"  # held-out task 1's scene has both


def _url(lines: queue.Queue, seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        m = re.search(r"operator console: open (http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"no console URL within {timeout} s:\n{''.join(seen)[-3000:]}")


def _wait(page, js: str, what: str, seen: list[str], timeout_s: float) -> None:
    try:
        page.wait_for_function(js, timeout=timeout_s * 1000)
    except playwright.TimeoutError:
        raise AssertionError(f"{what} not seen within {timeout_s} s; the task's states:\n"
                             f"{page.inner_text('#states')}\nlaunch output:\n{''.join(seen)[-3000:]}") from None


def test_type_a_task_watch_it_cancel_it_and_estop_in_a_real_browser(loopback_dds, tmp_path):
    env = dict(loopback_dds, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivl_embodied.cli", "launch", "--console", "0", "--grace", "5",
         "-p", "split:=heldout", "-p", "task_index:=1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url = _url(lines, seen, 120)
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            assert "token" not in page.url  # the token went into a cookie
            # the live camera, and the planner and executor heard
            _wait(page, "document.getElementById('frame').naturalWidth > 0", "a camera frame", seen, 90)
            _wait(page, "document.getElementById('health-planner').className.includes('ok')", "the planner", seen, 90)
            assert "pick/place/push" in page.inner_text("#vocabulary")

            page.fill("#task-input", TASK)
            page.click("#task-send")
            _wait(page, "document.querySelector('#states [data-state=EXECUTING]') !== null", "EXECUTING", seen, 120)
            # the plan's boxes with their phrases, and where the executor grounded them
            _wait(page, "document.querySelectorAll('#overlay .pose').length >= 1", "grounded poses", seen, 30)
            labels = page.locator("#overlay .label").all_inner_texts()
            assert len(labels) >= 2 and all(re.match(r"\d+ ", x) for x in labels), labels
            assert any("cube" in x or "cylinder" in x for x in labels), labels
            assert re.search(r"\(-?\d\.\d{3}, -?\d\.\d{3}, -?\d\.\d{3}\) m", page.inner_text("#plan-steps"))
            for s in ("SENT", "RECEIVED", "PLANNING", "PLANNED", "EXECUTING"):
                assert page.locator(f"#states [data-state={s}]").count() >= 1, s
            shot = os.environ.get("IVL_CONSOLE_SCREENSHOT")
            page.screenshot(path=shot or str(tmp_path / "console.png"))

            page.click("#cancel")
            _wait(page, "document.getElementById('current-state').dataset.final === 'CANCELLED'", "CANCELLED", seen, 30)
            assert "held where it was" in page.inner_text("#states")
            assert page.is_disabled("#cancel")

            page.click("#estop")
            _wait(page, "document.getElementById('estop-state').textContent.includes('LATCHED')", "the latch", seen, 15)
            cancelled = page.inner_text("#current-id")
            page.fill("#task-input", "put the green cube on the red cylinder")
            page.click("#task-send")
            # the new task shown (not the cancelled one, whose final state is still on the page), and its end
            _wait(page, f"document.getElementById('current-id').textContent !== {cancelled!r} && "
                        "document.getElementById('current-state').dataset.final", "a final state", seen, 120)
            assert page.get_attribute("#current-state", "data-final") == "REJECTED", page.inner_text("#states")
            refusal = page.inner_text("#refusal")
            assert "(estop)" in refusal and "e-stop latched" in refusal, refusal
            assert page.locator("#states [data-state=EXECUTING]").count() == 0  # nothing moved

            page.click("#estop-reset")
            _wait(page, "document.getElementById('estop-state').textContent.includes('clear')", "the reset", seen, 15)
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
