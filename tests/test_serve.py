"""The nginx configuration of `make serve` and of a real host, and the stack it runs."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse

import pytest

from tests.conftest import LEAD_FIELDS, ROOT, render_token
from tests.stack import (
    Stack,
    Unanswered,
    a_post_path,
    fetch,
    group_alive,
    stack_environment,
    wait_until,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render_production():
    return subprocess.run(
        [sys.executable, ROOT / "deploy" / "nginx.py", "production"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_the_shipped_site_file_is_the_template_rendered_for_a_real_host():
    assert (ROOT / "deploy" / "nginx.conf").read_text() == render_production()


@pytest.mark.parametrize(
    "upstreams", [["127.0.0.1:8001"], ["127.0.0.1:8001", "127.0.0.1:8002"]], ids=["one", "two"]
)
def test_the_local_configuration_is_one_nginx_accepts(tmp_path, upstreams):
    if not shutil.which(NGINX):
        pytest.skip("nginx is not installed (make nginx)")
    upstream_options = [option for upstream in upstreams for option in ("--upstream", upstream)]
    subprocess.run(
        [
            sys.executable,
            ROOT / "deploy" / "nginx.py",
            "local",
            "--port",
            "8000",
            *upstream_options,
            "--dir",
            tmp_path,
        ],
        check=True,
        capture_output=True,
    )

    checked = subprocess.run(
        [NGINX, "-t", "-e", "stderr", "-p", tmp_path, "-c", tmp_path / "nginx.conf"],
        capture_output=True,
        text=True,
    )

    assert checked.returncode == 0, checked.stderr
    site = (tmp_path / "site.conf").read_text()
    assert "listen 127.0.0.1:8000;" in site and "ssl_certificate" not in site
    servers = re.search(r"upstream agency_app \{(.*?)\}", site, re.DOTALL)[1]
    assert re.findall(r"server (\S+);", servers) == upstreams


@pytest.fixture
def make_stack(tmp_path, smtp_server):
    if not shutil.which(NGINX):
        pytest.skip("nginx is not installed (make nginx)")
    stacks = []

    def make(*names, **settings):
        stacks.append(Stack(tmp_path, stack_environment(tmp_path, smtp_server, **settings)))
        stacks[-1].start(*names)
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.stop()


def cache_status(response):
    return response.headers["X-Cache-Status"]


def contact_form(app, **values):
    fields = {f"contact-{name}": value for name, value in {**LEAD_FIELDS, **values}.items()}
    fields |= {"contact-consent": "y", "contact-rendered_at": render_token(app)}
    return urllib.parse.urlencode(fields).encode()


def test_nginx_caches_public_pages_and_never_staff_pages_or_posts(
    make_stack, make_app, smtp_server
):
    stack = make_stack("web", "proxy", "worker")
    post = stack.url + a_post_path()

    first, second = fetch(post), fetch(post)
    assert (first.status, first.headers["X-Cache-Status"]) == (200, "MISS")
    assert (second.status, second.headers["X-Cache-Status"]) == (200, "HIT")
    assert second.text == first.text
    # The id of the request the app rendered and logged; a copy from the cache has none.
    assert first.headers["X-Request-ID"] in stack.logs()
    assert second.headers["X-Request-ID"] is None
    compressed = fetch(post, headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["Content-Encoding"] == "gzip" and compressed.text == first.text
    # One stored copy for every browser, whatever Accept-Encoding it sends.
    for accept_encoding in ("gzip, deflate, br, zstd", "br", "identity"):
        other = fetch(post, headers={"Accept-Encoding": accept_encoding})
        assert cache_status(other) == "HIT", accept_encoding
    assert compressed.headers.get_all("Vary") == ["Accept-Encoding"]
    # Every reader of the cached copy got its form token; the page's script takes its own.
    own_tokens = [fetch(stack.url + "/contact/form-token") for _ in range(2)]
    assert [cache_status(answer) for answer in own_tokens] == ["MISS", "MISS"]
    assert len({json.loads(answer.text)["token"] for answer in own_tokens}) == 2

    for _ in range(2):
        staff = fetch(stack.url + "/staff/login")
        assert staff.status == 200 and staff.headers["X-Cache-Status"] is None
        assert "Set-Cookie" in staff.headers

    app = make_app(SECRET_KEY="test-secret")
    headers = {"Origin": stack.url, "Referer": post}
    posts = [
        fetch(stack.url + "/contact", contact_form(app, message=f"Question {n}"), headers)
        for n in range(2)
    ]
    assert [(p.status, p.headers["X-Cache-Status"]) for p in posts] == [(303, None)] * 2
    references = {p.headers["Location"] for p in posts}
    assert len(references) == 2, stack.logs()
    assert len(smtp_server.wait_for(2, timeout=30)) == 2, stack.logs()

    asset = next(path for path in (ROOT / "static").rglob("*.css"))
    static = fetch(f"{stack.url}/static/{asset.relative_to(ROOT / 'static')}?v=1")
    assert static.status == 200 and "immutable" in static.headers["Cache-Control"]
    ready = fetch(stack.url + "/readyz")
    assert (ready.status, ready.headers["Cache-Control"]) == (200, "no-store")
    # The Procfile's TRUSTED_PROXIES matches the one nginx in front.
    assert "TRUSTED_PROXIES is" not in stack.logs()


def test_readers_get_the_last_good_page_while_gunicorn_is_down(make_stack):
    stack = make_stack("web", "proxy", PUBLIC_CACHE_SECONDS="1")
    post = stack.url + a_post_path()
    assert fetch(post).status == 200

    stack.kill("web")

    # Until the copy is older than its max-age (nginx counts whole seconds) it is a HIT.
    answers = []
    wait_until(
        lambda: answers.append(fetch(post)) or cache_status(answers[-1]) == "STALE",
        lambda: f"cache status of each try: {[cache_status(answer) for answer in answers]}",
    )
    assert {answer.status for answer in answers} == {200}
    assert fetch(stack.url + "/privacy").status == 502  # never cached: nothing to fall back on


def test_ctrl_c_stops_the_whole_stack(tmp_path, smtp_server):
    if not shutil.which(NGINX):
        pytest.skip("nginx is not installed (make nginx)")
    stack = Stack(tmp_path, stack_environment(tmp_path, smtp_server))
    honcho = ROOT / ".venv" / "bin" / "honcho"
    with (tmp_path / "honcho.log").open("w") as log:
        runner = subprocess.Popen(
            [honcho, "--procfile", "Procfile", "start"],
            cwd=ROOT,
            env=stack.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: fetch(stack.url + "/healthz").status == 200, stack.logs)
        os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        runner.wait(timeout=30)
        wait_until(lambda: not group_alive(runner.pid), stack.logs, timeout=10)
    finally:
        if group_alive(runner.pid):
            os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    assert isinstance(fetch(stack.url + "/healthz"), Unanswered)
    assert set(re.findall(r"(\w+)\.1 stopped", stack.logs())) == {"web", "proxy", "worker"}
