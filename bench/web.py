"""Requests per second through the served stack, as ratios measured in one run.

    .venv/bin/python bench/web.py [SECONDS]

Starts `make serve`'s processes (gunicorn with WEB_CONCURRENCY workers, nginx with the
shipped cache configuration) on free ports against a SQLite copy of the demo content, then
loads each URL with wrk (Debian's package; `make bench-tools`) and prints:

1. a post page through gunicorn ÷ /robots.txt through gunicorn;
2. a 304 revalidation of that post through gunicorn ÷ /robots.txt;
3. the post through the nginx cache ÷ nginx serving the same bytes as a static file.

Results, with the machine they ran on, go to bench/results/web.json.
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stack import (
    Stack,
    a_post_path,
    fetch,
    procfile_commands,
    stack_environment,
)

WRK = shutil.which("wrk") or "/usr/bin/wrk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONNECTIONS = 32
WARM_UP_SECONDS = 3


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


def machine():
    model = re.search(r"model name\s*: (.*)", Path("/proc/cpuinfo").read_text())
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "cpu": model[1] if model else platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "nginx": nginx.removeprefix("nginx version: "),
        "wrk connections": CONNECTIONS,
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
            return measure(stack, static, seconds)
        finally:
            stack.stop()


def measure(stack, static, seconds):
    app = f"http://127.0.0.1:{stack.environment['APP_PORT']}"
    post_path = a_post_path()
    page = fetch(app + post_path)
    (static / "post.html").write_bytes(page.text.encode())
    etag = page.headers["ETag"]
    # Every worker booted and holding the page: the health check only waits for the first.
    requests_per_second(app + post_path, WARM_UP_SECONDS)
    figures = {
        "post via gunicorn": requests_per_second(app + post_path, seconds),
        "robots.txt via gunicorn": requests_per_second(app + "/robots.txt", seconds),
        "304 via gunicorn": requests_per_second(
            app + post_path, seconds, [f"If-None-Match: {etag}"]
        ),
        "post via nginx cache": requests_per_second(stack.url + post_path, seconds),
        "same bytes as nginx static file": requests_per_second(
            stack.url + "/static/post.html", seconds
        ),
    }
    ratios = {
        "post ÷ robots.txt (target ≥ 0.5)": figures["post via gunicorn"]
        / figures["robots.txt via gunicorn"],
        "304 ÷ robots.txt (target ≥ 0.8)": figures["304 via gunicorn"]
        / figures["robots.txt via gunicorn"],
        "nginx cache ÷ nginx static (target ≥ 0.9)": figures["post via nginx cache"]
        / figures["same bytes as nginx static file"],
    }
    return figures, ratios


def main(seconds):
    figures, ratios = run(seconds)
    for name, value in figures.items():
        print(f"{name:36} {value:10.0f} requests/s")
    for name, value in ratios.items():
        print(f"{name:44} {value:5.2f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    report = {"machine": machine(), "requests_per_second": figures, "ratios": ratios}
    (results / "web.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
