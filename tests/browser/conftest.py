"""Browser-test infrastructure: a real JupyterLab per test and headless Debian Chromium (Playwright).

Adapted from ``shared/recipes/browser/`` (pitfalls noted there are handled here).  Every test gets
its own ``NBJOBS_HOME`` and JupyterLab root (both under ``tmp_path``), a real ``nbjobs worker``
process for that home, and a JupyterLab server started with that ``NBJOBS_HOME`` in its
environment (so its kernels use it) and its root/cwd at the folder holding the test notebook.

Fixtures:
    browser   (session)  Playwright Chromium using the system binary (never ``playwright install``)
    nbhome    (function) the test's NBJOBS_HOME (also set in this process's environment)
    worker    (function) a real worker process for it (stopped, with its job kernels, afterwards)
    lab       (function) the test's JupyterLab server
    page      (function) a fresh browser page; the test's kernels are shut down afterwards
    notebook  (function) notebook(name, cells): write it under the lab root, open it, Run All
    gates     (function) gates(name) -> a path the test touches to let a job go on; all are touched
                         at teardown so nothing waits forever
    shot      (function) shot(name, locator=None): save a screenshot to artifacts/ (or $NBJOBS_ARTIFACTS)

Requires /usr/bin/chromium (``apt-get install chromium``) and ``pip install jupyterlab playwright``;
without them the tests are skipped, unless NBJOBS_REQUIRE_BROWSER=1 (CI), which makes that a failure.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import nbjobs.store
from support.procs import start_worker, stop_worker  # tests/support: real worker processes

from support.browser import write_notebook

CHROMIUM = os.environ.get("NBJOBS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("NBJOBS_ARTIFACTS") or Path(__file__).resolve().parents[2] / "artifacts")
REQUIRED = os.environ.get("NBJOBS_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} (NBJOBS_REQUIRE_BROWSER=1)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright; never `playwright install`)")
    if not os.path.exists(CHROMIUM):
        _missing(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def nbhome(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("NBJOBS_HOME", str(h))
    yield h
    nbjobs.store._local.__dict__.get("stores", {}).clear()


@pytest.fixture
def worker(nbhome):
    proc = start_worker(nbhome, "--concurrency", "2", "--grace", "2")
    yield proc
    stop_worker(proc)


@pytest.fixture
def gates(tmp_path):
    made: list[Path] = []

    def gate(name: str) -> Path:
        p = tmp_path / "gates" / name
        p.parent.mkdir(exist_ok=True)
        made.append(p)
        return p

    yield gate
    for p in made:  # release anything still waiting, before the worker is stopped
        p.touch()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, url: str, token: str, root: Path, log: Path):
        self.url, self.token, self.root, self.log = url, token, root, log

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw else None


@pytest.fixture
def lab(tmp_path, nbhome, worker, browser):
    """A private `jupyter lab` for this test: NBJOBS_HOME in its environment, root/cwd a tmp folder."""
    base = tmp_path / "jlab"
    root = tmp_path / "root"
    root.mkdir()
    notif = base / "settings" / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True)
    (notif / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                       "checkForUpdates": False}))
    env = dict(os.environ, NBJOBS_HOME=str(nbhome), JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_DATA_DIR=str(base / "data"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
               PYTHONUNBUFFERED="1")
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "server.log"
    logf = open(log, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=root)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log)
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early:\n{log.read_text()}")
            try:
                server.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start:\n{log.read_text()}")
                time.sleep(0.1)
        yield server
    finally:
        try:
            server.api("/api/shutdown", method="POST")  # stops its kernels too
        except Exception:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()


@pytest.fixture
def page(browser, lab, request):
    ctx = browser.new_context(viewport={"width": 1600, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    logs: list[str] = []
    pg.on("console", lambda m: logs.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
    yield pg
    if logs:
        print("\nbrowser console:\n" + "\n".join(logs[-30:]))
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"last-{request.node.name}.png"))
    except Exception:
        pass
    ctx.close()
    try:
        for sess in lab.api("/api/sessions") or []:
            lab.api(f"/api/sessions/{sess['id']}", method="DELETE")
    except Exception:
        pass


@pytest.fixture
def notebook(lab, page):
    """notebook(name, cells): write <root>/<name>, open it in JupyterLab and start Run All."""
    def run(name: str, cells: list[str]) -> None:
        write_notebook(lab.root / name, cells)
        page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")  # ?reset: no restored tabs
        page.wait_for_function("() => !!window.jupyterapp")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        page.wait_for_function("""() => {
            const w = window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
            return !!k && k.status === 'idle';
        }""")
        assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").inner_text()
        # do not await: the command resolves only when every cell has finished
        page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    return run


@pytest.fixture
def shot(page, request):
    def take(name: str, locator=None) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        (locator or page).screenshot(path=str(path))
        return path
    return take
