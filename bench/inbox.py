"""Staff inbox latency with 1,000 and 100,000 leads on PostgreSQL.

Creates a scratch database next to the one BENCH_DATABASE_URL names, migrates it, loads
leads in bulk, then times the inbox and its filters through the real views (in-process
test client: the numbers are server time, without network). CSV export is timed too,
with the peak Python memory it used, to show that it streams.

    .venv/bin/python bench/inbox.py            # 1,000 and 100,000 leads
    .venv/bin/python bench/inbox.py 1000 20000 # other sizes
"""

import json
import os
import random
import secrets
import statistics
import sys
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask_migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app
from app.accounts.services import create_user
from app.extensions import db
from app.leads.models import REFERENCE_ALPHABET, Lead
from app.types import utcnow

ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REPEATS = 15
CHUNK = 5_000
PASSWORD = "benchmark-password"
WORDS = [
    "battery",
    "solid",
    "state",
    "lithium",
    "sodium",
    "chip",
    "wafer",
    "quantum",
    "qubit",
    "enzyme",
    "assay",
    "reactor",
    "hydrogen",
    "catalyst",
    "sensor",
    "lidar",
    "robot",
    "vaccine",
    "antibody",
    "polymer",
    "graphene",
    "launch",
    "campaign",
    "pricing",
    "website",
    "brand",
    "content",
    "webinar",
    "trade",
    "show",
    "investor",
]
STATUSES = (
    ["new"] * 40 + ["contacted"] * 25 + ["qualified"] * 10 + ["won", "lost"] * 5 + ["spam"] * 15
)
SOURCES = ["/", "/contact", "/about"] + [f"/posts/demo-post-{number}" for number in range(17)]
UTM_SOURCES = ["", "", "", "linkedin", "google", "newsletter", "x", "partner"]
QUERIES = {
    "inbox, first page": {},
    "inbox, status=new": {"status": "new"},
    "inbox, last 30 days": {"from": (utcnow() - timedelta(days=30)).date().isoformat()},
    "search, common word": {"q": "battery"},
    "search, rare name": {"q": "zyxwvut"},
    "search + status + source": {"q": "quantum", "status": "contacted", "source": "/contact"},
}


def random_reference():
    code = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
    return f"LC-{code[:4]}-{code[4:]}"


def fake_lead(number, now):
    words = random.sample(WORDS, 12)
    return {
        "reference": random_reference(),
        "status": random.choice(STATUSES),
        "name": f"{words[0].title()} {words[1].title()} {number}",
        "email": f"person{number}@{words[2]}.example",
        "company": f"{words[3].title()} {words[4].title()} Ltd",
        "phone": "",
        "message": " ".join(words) + ". We would like to talk about marketing.",
        "consent_text": "I agree.",
        "consent_version": "bench",
        "source_url": "",
        "source_path": random.choice(SOURCES),
        "page_referrer": "",
        "utm_source": random.choice(UTM_SOURCES),
        "utm_medium": "",
        "utm_campaign": "",
        "utm_term": "",
        "utm_content": "",
        "user_agent": "bench",
        "created_at": now - timedelta(seconds=random.randrange(365 * 24 * 3600)),
        "updated_at": now,
    }


def load_leads(count):
    now = utcnow()
    table = Lead.__table__
    for start in range(0, count, CHUNK):
        rows = [fake_lead(number, now) for number in range(start, min(count, start + CHUNK))]
        db.session.execute(sa.insert(table), rows)
        db.session.commit()
    db.session.execute(sa.text("ANALYZE leads"))
    db.session.commit()


def log_in(client):
    page = client.get("/staff/login").text
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/staff/login",
        data={"email": "bench@example.com", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 303, response.status_code


def time_get(client, path, params):
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path, query_string=params)
        response.get_data()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, params, response.status_code)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def time_export(client):
    tracemalloc.start()
    started = time.perf_counter()
    response = client.get("/staff/leads/export.csv")
    rows = sum(chunk.count(b"\n") for chunk in response.response)
    elapsed = (time.perf_counter() - started) * 1000
    peak = tracemalloc.get_traced_memory()[1] / 1024 / 1024
    tracemalloc.stop()
    response.close()
    return elapsed, peak, rows


def measure(size):
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"agency_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "TESTING": True})
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            create_user("bench@example.com", PASSWORD, role="admin")
            started = time.perf_counter()
            load_leads(size)
            load_seconds = time.perf_counter() - started
            client = app.test_client()
            log_in(client)
            results = {
                label: time_get(client, "/staff/leads/", params)
                for label, params in QUERIES.items()
            }
            results["export CSV"] = time_export(client)
            db.session.remove()
            db.engine.dispose()
        return load_seconds, results
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def main(sizes):
    random.seed(2026)
    report = {}
    for size in sizes:
        load_seconds, results = measure(size)
        report[size] = results
        print(f"\n{size:,} leads (loaded in {load_seconds:.1f} s), {REPEATS} requests each")
        for label, values in results.items():
            if label == "export CSV":
                elapsed, peak, rows = values
                print(
                    f"  {label:28} {elapsed:9.0f} ms total, {rows - 1:,} rows, peak {peak:.1f} MiB"
                )
            else:
                print(f"  {label:28} median {values[0]:7.1f} ms   p95 {values[1]:7.1f} ms")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "inbox.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main([int(size) for size in sys.argv[1:]] or [1_000, 100_000])
