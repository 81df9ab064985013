"""Requests per second through the served stack, as ratios measured in one run.

    .venv/bin/python bench/web.py [SECONDS]

Starts `make serve`'s processes (gunicorn with WEB_CONCURRENCY workers, nginx with the
shipped cache configuration) on free ports against a SQLite copy of the demo content, then
loads each URL with wrk (Debian's package; `make bench-tools`) for SECONDS (default 2), all
of them in turn five times over, and prints the median of each figure:

1. a post page through gunicorn ÷ /robots.txt through gunicorn;
2. a 304 revalidation of that post through gunicorn ÷ /robots.txt;
3. the post through the nginx cache ÷ nginx serving the same bytes as a static file,
   beside what the same cache does at best here: the same bytes through a second nginx
   with the shipped configuration, in front of an upstream that sends only the page and
   its Cache-Control;
4. form POST p95 with a hung SMTP server ÷ with a working one, while wrk loads the post;
5. the p95 time from a form POST until its notification is in the SMTP sink.

Results, with the machine they ran on, go to bench/results/web.json.
"""

import contextlib
import http.server
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app
from tests.conftest import (
    LEAD_FIELDS,
    SMTPServer,
    free_port,
    make_config,
    render_token,
    serving,
)
from tests.stack import (
    Stack,
    a_post_path,
    fetch,
    procfile_commands,
    stack_environment,
    wait_until,
)

WRK = shutil.which("wrk") or "/usr/bin/wrk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONNECTIONS = 32
WARM_UP_SECONDS = 3
FORM_POSTS = 40
ROUNDS = 5


class NoMail:
    host, port = "127.0.0.1", 9  # the worker is not started: nothing is sent


def requests_per_second(url, seconds, headers=()):
    command = [WRK, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s"]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise SystemExit(f"{url}: {non_2xx[1]} failed responses\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])


def host():
    """The machine a benchmark ran on, for its results file (shared by bench/*.py)."""
    model = re.search(r"model name\s*: (.*)", Path("/proc/cpuinfo").read_text())
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "cpu": model[1] if model else platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "nginx": nginx.removeprefix("nginx version: "),
    }


def run(seconds):
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        static = directory / "static"
        shutil.copytree(ROOT / "static", static)
        environment = stack_environment(
            directory, NoMail, WEB_CONCURRENCY=str(os.cpu_count() * 2 + 1)
        )
        stack = Stack(directory, environment)
        proxy = procfile_commands()["proxy"].replace(
            "--dir $SERVE_DIR", f"--dir $SERVE_DIR --static {static}"
        )
        stack.start("web", proxy=proxy)
        try:
            page = fetch(stack.app_url + a_post_path())
            (static / "post.html").write_bytes(page.text.encode())
            with trivial_upstream(static / "post.html") as upstream:
                reference = start_reference_cache(stack, proxy, upstream)
                figures, ratios, rounds = measure(stack, page.headers["ETag"], reference, seconds)
            form_figures, form_ratios = measure_form(stack)
            return {**figures, **form_figures}, {**ratios, **form_ratios}, rounds
        finally:
            stack.stop()


class PageOnly(http.server.BaseHTTPRequestHandler):
    """Answers every GET with one page and nothing but its type, length and Cache-Control
    (and the Server and Date lines http.server always sends)."""

    page = b""

    def do_GET(self):  # http.server's handler hook
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.send_header("Cache-Control", "public, max-age=300")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *arguments):
        pass


@contextlib.contextmanager
def trivial_upstream(page_file):
    """The cheapest upstream a cache can have: it is asked once, on the first miss."""
    handler = type("Page", (PageOnly,), {"page": page_file.read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def start_reference_cache(stack, proxy, upstream_port):
    """A second nginx, from the Procfile's own line, with the trivial upstream behind it."""
    port = free_port()
    command = (
        proxy.replace("$SERVE_PORT", str(port))
        .replace("$APP_PORT", str(upstream_port))
        .replace("$SERVE_DIR", str(stack.directory / "reference"))
    )
    stack.launch(reference=command)
    url = f"http://127.0.0.1:{port}" + a_post_path()
    wait_until(lambda: fetch(url).headers.get("X-Cache-Status") == "HIT", stack.logs)
    return url


def measure(stack, etag, reference, seconds):
    """Each URL in turn, ROUNDS times over: a passing disturbance on a shared machine then
    shows as one odd round, and the median of the rounds leaves it out."""
    app = stack.app_url
    post_path = a_post_path()
    # Every worker booted and holding the page: the health check only waits for the first.
    requests_per_second(app + post_path, WARM_UP_SECONDS)
    loads = {
        "post via gunicorn": (app + post_path, ()),
        "robots.txt via gunicorn": (app + "/robots.txt", ()),
        "304 via gunicorn": (app + post_path, [f"If-None-Match: {etag}"]),
        "post via nginx cache": (stack.url + post_path, ()),
        "same bytes as nginx static file": (stack.url + "/static/post.html", ()),
        "same bytes, trivial upstream, via nginx cache": (reference, ()),
    }
    rounds = [
        {name: requests_per_second(url, seconds, headers) for name, (url, headers) in loads.items()}
        for _ in range(ROUNDS)
    ]
    figures = {name: statistics.median(rates[name] for rates in rounds) for name in loads}
    ratios = {
        name: statistics.median(numerator(rates) / denominator(rates) for rates in rounds)
        for name, (numerator, denominator) in RATIOS.items()
    }
    return figures, ratios, rounds


def rate(name):
    return lambda rates: rates[name]


RATIOS = {
    "post ÷ robots.txt (target ≥ 0.5)": (
        rate("post via gunicorn"),
        rate("robots.txt via gunicorn"),
    ),
    "304 ÷ robots.txt (target ≥ 0.8)": (
        rate("304 via gunicorn"),
        rate("robots.txt via gunicorn"),
    ),
    "nginx cache ÷ nginx static (target ≥ 0.9)": (
        rate("post via nginx cache"),
        rate("same bytes as nginx static file"),
    ),
    "nginx cache at best ÷ nginx static": (
        rate("same bytes, trivial upstream, via nginx cache"),
        rate("same bytes as nginx static file"),
    ),
    "nginx cache ÷ nginx cache at best": (
        rate("post via nginx cache"),
        rate("same bytes, trivial upstream, via nginx cache"),
    ),
}


class TimedSink(SMTPServer):
    """The SMTP sink, noting when each lead's notification arrived."""

    def __init__(self, host, port):
        super().__init__(host, port)
        self.arrived = {}

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        answer = await super().handle_DATA(server, session, envelope)
        self.arrived[self.messages[-1].message["X-Lead-Reference"]] = time.monotonic()
        return answer


def p95(values):
    return statistics.quantiles(values, n=20)[-1]


def post_forms(stack, signer_app):
    """FORM_POSTS form posts through nginx, one after another: {reference: when posted},
    and each post's duration."""
    posted, durations = {}, []
    fields = {f"contact-{name}": value for name, value in LEAD_FIELDS.items()}
    headers = {"Origin": stack.url, "Referer": stack.url + "/contact"}
    for _ in range(FORM_POSTS):
        form = {**fields, "contact-consent": "y", "contact-rendered_at": render_token(signer_app)}
        started = time.monotonic()
        answer = fetch(stack.url + "/contact", urllib.parse.urlencode(form).encode(), headers)
        durations.append(time.monotonic() - started)
        if answer.status != 303:
            raise SystemExit(f"a form post was answered {answer.status}:\n{stack.logs()}")
        posted[answer.headers["Location"].rsplit("/", 1)[-1]] = started
    return posted, durations


def start_worker(stack, host, port):
    stack.environment |= {"MAIL_SERVER": host, "MAIL_PORT": str(port), "MAIL_TIMEOUT": "10"}
    stack.start("worker")


def measure_form(stack):
    signer_app = create_app(make_config("sqlite://", LOG_LEVEL="WARNING"))
    readers = subprocess.Popen(
        [WRK, "-t1", "-c8", "-d600s", stack.url + a_post_path()], stdout=subprocess.DEVNULL
    )
    try:
        with serving(TimedSink("127.0.0.1", free_port())) as sink:
            start_worker(stack, sink.host, sink.port)
            posted, working = post_forms(stack, signer_app)
            wait_until(lambda: posted.keys() <= sink.arrived.keys(), stack.logs, timeout=120)
            to_sink = [sink.arrived[reference] - moment for reference, moment in posted.items()]
            stack.kill("worker")
        with socket.create_server(("127.0.0.1", 0), backlog=64) as silent:
            start_worker(stack, *silent.getsockname())
            hung_posts, hung = post_forms(stack, signer_app)
            stack.kill("worker")
    finally:
        readers.kill()
        readers.wait()
    stored = stored_references(stack)
    if not (posted.keys() | hung_posts.keys()) <= stored:
        raise SystemExit("a form post that was answered 303 is not in the database")
    figures = {
        "form POST p95, working SMTP (ms)": p95(working) * 1000,
        "form POST p95, hung SMTP (ms)": p95(hung) * 1000,
        "form POST to SMTP sink p95 (ms)": p95(to_sink) * 1000,
    }
    ratios = {
        "POST p95 hung ÷ working SMTP (target ≤ 1.2)": p95(hung) / p95(working),
        "POST to notification p95, s (target ≤ 5)": p95(to_sink),
    }
    return figures, ratios


def stored_references(stack):
    database = stack.environment["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        return {row[0] for row in connection.execute("SELECT reference FROM leads")}


def main(seconds):
    figures, ratios, rounds = run(seconds)
    for number, rates in enumerate(rounds, 1):
        shown = ", ".join(
            f"{numerator(rates) / denominator(rates):.2f}"
            for numerator, denominator in RATIOS.values()
        )
        print(f"round {number}: {shown}")
    for name, value in figures.items():
        unit = "" if "(ms)" in name else " requests/s"
        print(f"{name:46} {value:10.0f}{unit}")
    for name, value in ratios.items():
        print(f"{name:46} {value:5.2f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    report = {
        "machine": {**host(), "wrk connections": CONNECTIONS},
        "requests_per_second": figures,
        "ratios": ratios,
        "rounds": rounds,
    }
    (results / "web.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
