"""The stack `make serve` runs, started for tests and benchmarks: each Procfile line as its
own process, on free ports, against a migrated SQLite file of the demo content."""

import gzip
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT, free_port


def procfile_commands():
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.partition(":") for line in lines if line and not line.startswith("#"))
    return {name.strip(): command.strip() for name, _, command in entries}


@dataclass
class Stack:
    directory: Path
    environment: dict
    processes: dict = field(default_factory=dict)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.environment['SERVE_PORT']}"

    @property
    def app_url(self):
        """gunicorn's own address, behind nginx."""
        return f"http://127.0.0.1:{self.environment['APP_PORT']}"

    def start(self, *names, **own_commands):
        """Start Procfile lines by name, and commands given by keyword (name=command); wait
        until the site answers through nginx."""
        self.launch(*names, **own_commands)
        wait_until(lambda: fetch(self.url + "/healthz").status == 200, self.logs)

    def launch(self, *names, **own_commands):
        """Start them without waiting for anything."""
        commands = {**procfile_commands(), **own_commands}
        for name in [*names, *own_commands]:
            with (self.directory / f"{name}.log").open("w") as log:
                self.processes[name] = subprocess.Popen(
                    ["sh", "-c", commands[name]],
                    cwd=ROOT,
                    env=self.environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def kill(self, name):
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self):
        for name in list(self.processes):
            self.kill(name)

    def logs(self):
        return "\n".join(path.read_text() for path in sorted(self.directory.glob("*.log")))


def fetch(url, data=None, headers=None):
    """One request with urllib; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310 - loopback http
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            body = response.read()
            if response.headers["Content-Encoding"] == "gzip":
                body = gzip.decompress(body)
            response.text = body.decode()
            return response
    except urllib.error.HTTPError as error:
        error.text = error.read().decode()
        return error
    except OSError as error:
        return Unanswered(str(error))


@dataclass
class Unanswered:
    reason: str
    status: int = 0
    headers: dict = field(default_factory=dict)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wait_until(condition, explain, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting:\n{explain()}")
        time.sleep(0.1)


def stack_environment(directory, mail_server, **settings):
    """The processes' environment, with the database migrated and the demo posts loaded."""
    database = directory / "site.db"
    serve_port = free_port()
    environment = {
        **os.environ,
        "FLASK_SKIP_DOTENV": "1",
        "APP_ENV": "development",
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": f"sqlite:///{database}",
        "SITE_URL": f"http://127.0.0.1:{serve_port}",
        "UPLOAD_FOLDER": str(directory / "uploads"),
        "LEAD_SPOOL_DIR": str(directory / "spool"),
        "MAIL_SERVER": mail_server.host,
        "MAIL_PORT": str(mail_server.port),
        "LEADS_NOTIFY_TO": "sales@agency.test",
        "CONTACT_RATE_LIMIT": "1000 per minute",
        "CONTACT_ATTEMPT_RATE_LIMIT": "1000 per minute",
        "SERVE_PORT": str(serve_port),
        "APP_PORT": str(free_port()),
        "SERVE_DIR": str(directory / "serve"),
        "WEB_CONCURRENCY": "2",
        **settings,
    }
    for command in (["db", "upgrade"], ["content", "import"]):
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *command],
            cwd=ROOT,
            env=environment,
            check=True,
            capture_output=True,
        )
    return environment


def a_post_path():
    post = next((ROOT / "content" / "posts").glob("*.md"))
    return f"/posts/{post.stem}"


def group_alive(group):
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
