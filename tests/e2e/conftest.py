"""Browser tests: headless Debian Chromium driven by Playwright against a live server.

Every test in this folder is marked `e2e` (deselect with `-m "not e2e"`). Without
/usr/bin/chromium the tests are skipped, unless REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(config, items):
    """Mark the tests of this folder e2e; they run on SQLite only (the browser does not care
    which database the server uses, and PostgreSQL has its own pass over every other test)."""
    # The hook sees the whole session's items: look only at the ones collected from here.
    browser_tests = [item for item in items if Path(str(item.path)).resolve().is_relative_to(HERE)]
    other_databases = [item for item in browser_tests if database_of(item) not in {None, "sqlite"}]
    for item in browser_tests:
        item.add_marker(pytest.mark.e2e)
    if other_databases:
        config.hook.pytest_deselected(items=other_databases)
        items[:] = [item for item in items if item not in other_databases]


def database_of(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("database_uri") if callspec else None


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)  # the machine may be busy; failures still fail

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


def closed_after_sending(wsgi_app):
    """The app with every response closed once it has been sent, or abandoned.

    Werkzeug's development server skips the response's close() when the client resets the
    connection (as a browser does when a context closes while an image is still loading):
    the file behind the response then stays open until garbage collection, and its
    ResourceWarning fails whichever test happens to run then. A generator's `finally` runs
    when the server drops it, so the file is closed in the request thread, at once.
    """

    def serve(environ, start_response):
        return closing(wsgi_app(environ, start_response))

    return serve


def closing(iterable):
    try:
        yield from iterable
    finally:
        if hasattr(iterable, "close"):
            iterable.close()


@pytest.fixture
def live_server(app, demo_content):
    """Base URL (no trailing slash) of the test app, with the demo posts, served in a thread."""
    server = make_server("127.0.0.1", 0, closed_after_sending(app), threaded=True)
    thread = threading.Thread(
        # A short poll interval keeps shutdown() quick: it waits for the loop to notice.
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="e2e-live-server",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def request_log():
    """Every URL the browser requested during the test, from any context or page, in order."""
    return []


@pytest.fixture
def new_context(browser, live_server, request_log):
    """Factory for browser contexts (base_url set to the live server); all closed after the test.

    Keyword arguments go to `browser.new_context`, e.g. java_script_enabled=False,
    bypass_csp=True, viewport={...}.
    """
    contexts = []

    def make(**options):
        options.setdefault("base_url", live_server)
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        context.on("request", lambda request: request_log.append(request.url))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context):
    """A fresh page in its own context; its requests land in `request_log`."""
    return new_context().new_page()
