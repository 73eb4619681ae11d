"""Browser-test fixtures: Debian's Chromium for pytest-playwright, a live server on demo data, screenshots.

Loaded by conftest.py as a plugin. A test that uses `page` (or `context`, `browser`) is marked
`browser`; without Chromium such tests are skipped on a developer's machine and fail under CI.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from decision_server import create_app
from decision_server.auth import service as auth_service
from decision_server.auth.roles import Role
from decision_server.config import Config
from decision_server.db import Database

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = REPO / "var" / "screenshots"
# Small enough to prepare in ~25 s (once per test run, for every worker), big enough for every chart to have data.
DEMO_CUSTOMERS = 2_000
# The pytest-playwright fixtures that start a browser.
BROWSER_FIXTURES = {"page", "context", "new_context", "browser", "browser_type", "launch_browser"}


def chromium_available() -> bool:
    """Tell whether the Chromium the browser tests drive is installed."""
    return os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)


def pytest_collection_modifyitems(items):
    """Mark every test that starts a browser, so `-m "not browser"` leaves them out."""
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


def pytest_runtest_setup(item):
    """Without Chromium: skip a browser test on a developer's machine, fail it in CI (a skip would hide it)."""
    if item.get_closest_marker("browser") is None or chromium_available():
        return
    message = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Launch Debian's Chromium (Playwright cannot download its own here), with no background DNS look-ups."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """Pages prefer reduced motion: charts draw at once, without animation, so screenshots show the final state."""
    return {**browser_context_args, "reduced_motion": "reduce", "locale": "en-US"}


@dataclasses.dataclass(frozen=True)
class LiveServer:
    """A server on a demo database: its base URL, one raw API key per role name, the app and its configuration."""

    base_url: str
    keys: dict[str, str]
    app: object
    config: Config

    def url(self, path: str) -> str:
        """Return the absolute URL of a path on this server ("/console/")."""
        return self.base_url + path


def _shared_folder(tmp_path_factory) -> Path:
    """Return a folder all xdist workers of this run share (the run's base folder; its own one without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _prepare_demo(folder: Path) -> dict[str, str]:
    """Make the demo base once per test run with `decision-server quickstart` (as `make run` does); return the keys."""
    keys_file = folder / "keys.json"
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait, then reuse it
        if not keys_file.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            database_url = f"sqlite:///{folder / 'demo.db'}"
            command = [sys.executable, "-c", "from decision_server.cli import main; main()"]
            options = [
                "--database-url",
                database_url,
                "--rules-dir",
                str(folder / "rules"),
                "--models-dir",
                str(folder / "models"),
            ]
            done = subprocess.run(
                [*command, *options, "quickstart", "--no-serve", "--customers", str(DEMO_CUSTOMERS)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            database = Database(database_url)
            with database.session(write=True) as session:
                keys = {
                    role.value: auth_service.create_key(session, name=f"browser-{role.value}", role=role.value).secret
                    for role in Role
                }
            database.dispose()
            keys_file.write_text(json.dumps(keys))
    return json.loads(keys_file.read_text())


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """Serve the app over HTTP on a copy of the demo base (2,000 customers, analysed, loyalty, offers, trained models).

    One demo base per test run; each xdist worker serves its own copy, which its tests share (and may change).
    """
    template = _shared_folder(tmp_path_factory) / "live-demo"
    keys = _prepare_demo(template)
    folder = tmp_path_factory.mktemp("live")
    for name in ("rules", "models"):
        shutil.copytree(template / name, folder / name)
    shutil.copy2(template / "demo.db", folder / "demo.db")
    config = Config(
        database_url=f"sqlite:///{folder / 'demo.db'}",
        rules_dir=folder / "rules",
        models_dir=folder / "models",
        rules_poll_seconds=0,
        models_poll_seconds=0,
        catalog_poll_seconds=0,
        learning_poll_seconds=0,
        key_cache_seconds=0,
    )
    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(base_url=f"http://127.0.0.1:{server.server_port}", keys=keys, app=app, config=config)
    finally:
        server.shutdown()
        thread.join(10)
        for name in ("rulebook", "models", "catalog"):
            app.extensions[name].stop()
        app.extensions["decider"].learning.stop()
        app.extensions["database"].dispose()


@pytest.fixture(scope="session")
def screenshot() -> Callable[..., tuple[Path, Path]]:
    """Return shoot(page, name): save var/screenshots/NAME-narrow.png (420×900) and NAME-wide.png (1440×900), full page."""

    def shoot(page, name: str) -> tuple[Path, Path]:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        before = page.viewport_size
        paths = []
        for suffix, width in (("narrow", 420), ("wide", 1440)):
            page.set_viewport_size({"width": width, "height": 900})
            # Two frames: the charts' ResizeObserver runs, then they draw at the new size.
            page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
            path = SCREENSHOTS / f"{name}-{suffix}.png"
            page.screenshot(path=str(path), full_page=True)
            paths.append(path)
        if before:
            page.set_viewport_size(before)
        return paths[0], paths[1]

    shoot.folder = SCREENSHOTS  # for a test's own extra screenshots
    return shoot
