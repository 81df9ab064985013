"""Two app instances behind one nginx, sharing PostgreSQL and Redis, with two mail workers.

    .venv/bin/python bench/scale.py [POSTS]

Starts on loopback the processes of `make serve`, twice over: two gunicorn instances (each
WEB_CONCURRENCY=2, the same SECRET_KEY) on their own ports behind one nginx whose upstream
lists both, and two `flask leads deliver` workers sending to an aiosmtpd sink. All share a
scratch PostgreSQL database (created beside BENCH_DATABASE_URL, dropped afterwards) and one
Redis database for the rate limits. Then it checks, and exits non-zero if a check fails:

1. a staff login made through instance A is accepted by instance B;
2. form posts alternating between two instances are refused after CONTACT_RATE_LIMIT in
   total (a second pair of instances, with a small limit, for this check alone);
3. POSTS (500) form posts through nginx, 32 at a time, while one worker is killed (SIGKILL)
   as it holds claimed messages: every post is answered 303, and each gives exactly one
   lead and one notification email; the killed worker's messages go out from the other
   once its claim (the default DELIVERY_CLAIM_SECONDS) ends. Delivery is at least once: the
   one message the killed worker may have handed to the SMTP server without recording it
   is sent again; that copy is counted and shown, and any other duplicate fails the run.

Results, with the machine they ran on, go to bench/results/scale.json.
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from email.utils import parseaddr
from pathlib import Path

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app
from app.config import DEFAULTS
from bench.web import host
from tests.conftest import (
    CSRF_INPUT,
    LEAD_FIELDS,
    SMTPServer,
    free_port,
    make_config,
    render_token,
    serving,
)
from tests.stack import Stack, fetch, procfile_commands, stack_environment, wait_until

ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# The test suite flushes database 15 (tests/test_contact.py).
REDIS_URL = "redis://127.0.0.1:6379/14"
PGREP = shutil.which("pgrep") or "/usr/bin/pgrep"
FLASK = [sys.executable, "-m", "flask", "--app", "app"]
INSTANCES = ("a", "b")
CONCURRENCY = 32
SMALL_LIMIT = 6
STAFF_EMAIL = "scale@example.org"
STAFF_PASSWORD = "scale benchmark password"
# The killed worker's messages wait for its claim to end: the default DELIVERY_CLAIM_SECONDS.
CLAIM_SECONDS = DEFAULTS["DELIVERY_CLAIM_SECONDS"]
MESSAGE_ID = re.compile(r"<outbox-(\d+)\.")
CHECKS = ("staff login", "contact rate limit", "scale-out")


@contextmanager
def scratch_database():
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"scale_bench_{os.getpid()}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def smtp_sink():
    return serving(SMTPServer("127.0.0.1", free_port()))


def machine(engine):
    with engine.connect() as connection:
        postgresql = connection.exec_driver_sql("SHOW server_version").scalar()
    with redis.Redis.from_url(REDIS_URL) as connection:
        redis_version = connection.info("server")["redis_version"]
    return {**host(), "postgresql": postgresql, "redis": redis_version}


def app_url(port):
    return f"http://127.0.0.1:{port}"


def start_instances(stack, prefix, **settings):
    """Two gunicorn instances, each as the Procfile starts one, on its own free port;
    returns {instance: port} once both answer."""
    assignments = "".join(f"{name}='{value}' " for name, value in settings.items())
    web = procfile_commands()["web"].replace("env ", f"env {assignments}", 1)
    ports = {name: free_port() for name in INSTANCES}
    stack.launch(
        **{f"{prefix}_{name}": web.replace("$APP_PORT", str(port)) for name, port in ports.items()}
    )
    for port in ports.values():
        wait_until(lambda port=port: fetch(f"{app_url(port)}/healthz").status == 200, stack.logs)
    return ports


def proxy_command(ports):
    upstreams = " ".join(f"--upstream 127.0.0.1:{port}" for port in ports.values())
    return procfile_commands()["proxy"].replace("--upstream 127.0.0.1:$APP_PORT", upstreams)


def create_staff(environment):
    subprocess.run(
        [*FLASK, "staff", "create", STAFF_EMAIL, "--password-stdin"],
        input=STAFF_PASSWORD + "\n",
        cwd=ROOT,
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    )


def session_cookie(response):
    return response.headers["Set-Cookie"].split(";", 1)[0]


def check_login(ports):
    """Log in through A; B must accept the cookie (and send a request without it to log in)."""
    a, b = app_url(ports["a"]), app_url(ports["b"])
    page = fetch(a + "/staff/login")
    token = next(group for group in CSRF_INPUT.search(page.text).groups() if group)
    credentials = {"email": STAFF_EMAIL, "password": STAFF_PASSWORD, "csrf_token": token}
    login = fetch(
        a + "/staff/login",
        urllib.parse.urlencode(credentials).encode(),
        {"Cookie": session_cookie(page)},
    )
    on_b = fetch(b + "/staff/", headers={"Cookie": session_cookie(login)})
    statuses = {
        "login through A": login.status,
        "staff page on B with its cookie": on_b.status,
        "staff page on B without it": fetch(b + "/staff/").status,
    }
    return {"statuses": statuses, "passed": list(statuses.values()) == [303, 200, 302]}


def contact_form(token, email):
    fields = {f"contact-{name}": value for name, value in {**LEAD_FIELDS, "email": email}.items()}
    fields |= {"contact-consent": "y", "contact-rendered_at": token}
    return urllib.parse.urlencode(fields).encode()


def post_form(site_url, url, form):
    return fetch(url, form, {"Origin": site_url, "Referer": site_url + "/contact"})


def check_limit(stack, signer):
    """Twice the limit's posts, alternately to the two instances: half in, half refused."""
    ports = start_instances(stack, "limited", CONTACT_RATE_LIMIT=f"{SMALL_LIMIT} per minute")
    urls = [f"{app_url(ports[name])}/contact" for name in INSTANCES]
    statuses = []
    for number in range(2 * SMALL_LIMIT):
        form = contact_form(render_token(signer), f"limit-{number}@example.org")
        statuses.append(post_form(stack.url, urls[number % 2], form).status)
    for name in INSTANCES:
        stack.kill(f"limited_{name}")
    return {
        "limit": f"{SMALL_LIMIT} per minute",
        "statuses": statuses,
        "passed": statuses == [303] * SMALL_LIMIT + [429] * SMALL_LIMIT,
    }


def timed_post(stack, form):
    started = time.monotonic()
    status = post_form(stack.url, stack.url + "/contact", form).status
    return status, time.monotonic() - started


def claim_patterns(stack, name):
    """What the worker's claims are named by: host:pid of each of its processes."""
    group = stack.processes[name].pid
    pids = subprocess.run([PGREP, "-g", str(group)], capture_output=True, text=True).stdout
    return [f"{socket.gethostname()}:{pid}:%" for pid in pids.split()]


def claimed_ids(engine, patterns):
    query = sa.text(
        "SELECT id FROM outbox_messages WHERE status = 'pending' AND claimed_by LIKE ANY(:patterns)"
    )
    with engine.connect() as connection:
        return set(connection.execute(query, {"patterns": patterns}).scalars())


def kill_while_sending(engine, stack, name):
    """SIGKILL the worker once it holds claimed messages; return the ids it left claimed
    and when it was killed."""
    patterns = claim_patterns(stack, name)
    wait_until(lambda: claimed_ids(engine, patterns), stack.logs)
    stack.kill(name)
    killed = time.monotonic()
    return claimed_ids(engine, patterns), killed


def post_concurrently(engine, stack, forms):
    """Post the forms through nginx, CONCURRENCY at a time; halfway through, kill worker A."""
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(timed_post, stack, form) for form in forms]
        for done, _ in enumerate(as_completed(futures), 1):
            if done == len(forms) // 2:
                held, killed = kill_while_sending(engine, stack, "worker_a")
    return [future.result() for future in futures], held, killed


def outbox_pending(engine):
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT count(*) FROM outbox_messages WHERE status = 'pending'"
        ).scalar()


def stored_leads(engine):
    """{email: how many leads}, and how many leads were stored as spam."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT email, status FROM leads").all()
    return Counter(email for email, _ in rows), sum(status == "spam" for _, status in rows)


def request_log(stack, name):
    return (stack.directory / f"{name}.log").read_text()


def check_scale_out(engine, stack, sink, signer, posts):
    markers = [f"scale-{number:04d}@example.org" for number in range(posts)]
    # Signed before the threads start: render_token changes the signer's clock while it runs.
    forms = [contact_form(render_token(signer), marker) for marker in markers]
    started = time.monotonic()
    answers, held, killed = post_concurrently(engine, stack, forms)
    posted = time.monotonic()
    wait_until(lambda: outbox_pending(engine) == 0, stack.logs, timeout=CLAIM_SECONDS + 60)
    emptied = time.monotonic()
    leads, spam = stored_leads(engine)
    notified = Counter(parseaddr(sent.message["Reply-To"])[1] for sent in sink.messages)
    twice = {marker for marker in markers if notified[marker] > 1}
    resent = {
        int(MESSAGE_ID.match(sent.message["Message-ID"])[1])
        for sent in sink.messages
        if parseaddr(sent.message["Reply-To"])[1] in twice
    }
    durations = [duration for _, duration in answers]
    report = {
        "posts": posts,
        "concurrency": CONCURRENCY,
        "answers": dict(Counter(str(status) for status, _ in answers)),
        "answered by instance": {
            name: request_log(stack, f"web_{name}").count("POST /contact 303") for name in INSTANCES
        },
        "seconds": posted - started,
        "posts per second": posts / (posted - started),
        "POST p50 (ms)": statistics.median(durations) * 1000,
        "POST p95 (ms)": statistics.quantiles(durations, n=20)[-1] * 1000,
        "leads": sum(leads[marker] for marker in markers),
        "posts without exactly one lead": sum(leads[marker] != 1 for marker in markers),
        "leads stored as spam": spam,
        "notifications": sum(notified[marker] for marker in markers),
        "leads not notified": sum(notified[marker] == 0 for marker in markers),
        "leads notified twice or more": sorted(twice),
        "messages the killed worker left claimed": len(held),
        "claim seconds": CLAIM_SECONDS,
        "seconds from the kill to an empty outbox": emptied - killed,
    }
    # At least once: only the message the killed worker was sending may have gone twice.
    resent_as_expected = (
        len(twice) <= 1 and resent <= held and all(notified[marker] == 2 for marker in twice)
    )
    report["passed"] = (
        report["answers"] == {"303": posts}
        and not (report["posts without exactly one lead"] or spam)
        and not report["leads not notified"]
        and resent_as_expected
    )
    return report


def run_checks(directory, url, engine, sink, posts):
    with redis.Redis.from_url(REDIS_URL) as connection:
        connection.flushdb()
    environment = stack_environment(
        directory,
        sink,
        DATABASE_URL=url,
        RATELIMIT_STORAGE_URI=REDIS_URL,
    )
    create_staff(environment)
    signer = create_app(
        make_config("sqlite://", SECRET_KEY=environment["SECRET_KEY"], LOG_LEVEL="WARNING")
    )
    stack = Stack(directory, environment)
    worker = procfile_commands()["worker"]
    try:
        # Both instances answer before nginx starts: nginx takes an upstream it could not
        # reach out of rotation for 10 s (fail_timeout), separately in each of its workers.
        ports = start_instances(stack, "web")
        stack.start(proxy=proxy_command(ports), worker_a=worker, worker_b=worker)
        return {
            "staff login": check_login(ports),
            "contact rate limit": check_limit(stack, signer),
            "scale-out": check_scale_out(engine, stack, sink, signer, posts),
        }
    finally:
        stack.stop()


def run(posts):
    with (
        tempfile.TemporaryDirectory() as scratch,
        scratch_database() as url,
        smtp_sink() as sink,
    ):
        engine = sa.create_engine(url)
        try:
            checks = run_checks(Path(scratch), url, engine, sink, posts)
            return {"machine": machine(engine), **checks}
        finally:
            engine.dispose()


def verdict(check):
    return "passed" if check["passed"] else "FAILED"


def summary(report):
    login, limit, scale = (report[name] for name in CHECKS)
    answers = ", ".join(f"{count} x {status}" for status, count in scale["answers"].items())
    split = " + ".join(str(count) for count in scale["answered by instance"].values())
    twice = scale["leads notified twice or more"]
    lines = {
        "staff login through A, used on B": f"{verdict(login)} {list(login['statuses'].values())}",
        f"contact limit {limit['limit']}, A and B": f"{verdict(limit)} {limit['statuses']}",
        f"{scale['posts']} form posts through nginx": verdict(scale),
        "  answers": f"{answers} (by instance: {split})",
        "  time": f"{scale['seconds']:.1f} s, {scale['posts per second']:.0f} posts/s,"
        f" p95 {scale['POST p95 (ms)']:.0f} ms",
        "  leads": f"{scale['leads']} (not exactly one: {scale['posts without exactly one lead']},"
        f" spam: {scale['leads stored as spam']})",
        "  notifications": f"{scale['notifications']} (missing: {scale['leads not notified']},"
        f" sent twice: {len(twice)}{''.join(f', {marker}' for marker in twice)})",
        "  killed worker": f"left {scale['messages the killed worker left claimed']} claimed;"
        f" outbox empty {scale['seconds from the kill to an empty outbox']:.1f} s after the kill"
        f" (claim {scale['claim seconds']} s)",
        "whole run": f"{report['seconds in all']:.0f} s",
    }
    return [f"{label:38} {text}" for label, text in lines.items()]


def main(posts):
    started = time.monotonic()
    report = run(posts)
    report["seconds in all"] = time.monotonic() - started
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "scale.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print("\n".join(summary(report)))
    if not all(report[name]["passed"] for name in CHECKS):
        raise SystemExit(1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
