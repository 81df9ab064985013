"""Staff login throttling: attempts are counted before the password check, per account and
address together and per address alone; lock-outs are recorded and shown to admins."""

import subprocess
import sys
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from app.accounts import throttle
from app.accounts.models import LoginLockout
from app.extensions import db
from app.logs import pseudonym
from app.types import utcnow
from tests.conftest import CSRF_INPUT, ROOT, STAFF_PASSWORD, csrf_token
from tests.stack import Stack, fetch, stack_environment, wait_until

ATTACKER = "203.0.113.7"
COLLEAGUE = "198.51.100.9"
WRONG_PASSWORD = "not-the-password-42"
# A password typed in the address field.
TYPED_PASSWORD = "Tr0ub4dor&3-staff-secret"
REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "LOGIN_ACCOUNT_RATE_LIMIT": "3 per minute",
        "LOGIN_RATE_LIMIT": "100 per minute",
    }


def client_at(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def log_in(client, email, password=STAFF_PASSWORD):
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)}
    return client.post("/staff/login", data=data)


def statuses(client, email, attempts, password=WRONG_PASSWORD):
    return [log_in(client, email, password).status_code for _ in range(attempts)]


def lock_outs():
    return db.session.scalars(select(LoginLockout).order_by(LoginLockout.id)).all()


def stored_text():
    """Every value of every lock-out row, as the database holds it."""
    rows = db.session.execute(select(LoginLockout.__table__)).all()
    return " ".join(str(value) for row in rows for value in row)


def test_an_account_is_locked_only_for_the_address_that_guessed(app, make_user):
    user = make_user()
    attacker = client_at(app, ATTACKER)

    assert statuses(attacker, user.email, 4) == [401, 401, 401, 429]
    assert log_in(attacker, user.email).status_code == 429
    assert log_in(client_at(app, COLLEAGUE), user.email).status_code == 303


def test_an_attacker_moving_through_an_ipv6_64_is_one_address(app, make_user):
    user = make_user()
    guesses = [
        log_in(client_at(app, f"2001:db8:7:7::{number:x}"), user.email, WRONG_PASSWORD)
        for number in range(1, 5)
    ]

    assert [guess.status_code for guess in guesses] == [401, 401, 401, 429]
    assert log_in(client_at(app, "2001:db8:7:8::1"), user.email).status_code == 303
    [lock_out] = lock_outs()
    assert lock_out.address == "2001:db8:7:7::"


def test_the_refusal_keeps_the_email_says_how_long_to_wait_and_sets_retry_after(app, make_user):
    user = make_user()
    attacker = client_at(app, ATTACKER)
    statuses(attacker, user.email, 3)

    response = log_in(attacker, user.email.upper(), password=WRONG_PASSWORD)

    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert "too many attempts to log in. Wait 1 minute, then try again." in response.text
    assert f'value="{user.email.upper()}"' in response.text
    assert WRONG_PASSWORD not in response.text
    assert CSRF_INPUT.search(response.text)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 minute"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (7200, "120 minutes"),
        (7201, "3 hours"),
    ],
)
def test_the_wait_is_said_in_words_rounded_up(seconds, words):
    assert throttle.Refusal("account", seconds).wait == words


def test_every_account_from_one_address_shares_the_wider_limit(make_app, make_user):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_ACCOUNT_RATE_LIMIT="100 per minute")
    with app.app_context():
        users = [make_user() for _ in range(4)]
        attacker = client_at(app, ATTACKER)

        tried = [log_in(attacker, user.email, WRONG_PASSWORD).status_code for user in users]

        assert tried == [401, 401, 401, 429]
        assert log_in(client_at(app, COLLEAGUE), users[3].email).status_code == 303
        assert [lock_out.scope for lock_out in lock_outs()] == ["address"]


def test_a_successful_login_starts_the_account_count_again(app, make_user):
    user = make_user()
    staff = client_at(app, COLLEAGUE)
    assert statuses(staff, user.email, 2) == [401, 401]
    assert log_in(staff, user.email).status_code == 303
    staff.post("/staff/logout", data={"csrf_token": csrf_token(staff, "/staff/")})

    assert statuses(staff, user.email, 4) == [401, 401, 401, 429]


def test_a_form_that_fails_validation_is_not_counted(app, make_user):
    user = make_user()
    staff = client_at(app, COLLEAGUE)

    assert statuses(staff, user.email, 5, password="") == [401] * 5
    assert log_in(staff, user.email).status_code == 303


def test_a_lock_out_of_an_account_is_recorded_once_by_its_id(app, make_user):
    user = make_user()
    attacker = client_at(app, ATTACKER)

    assert statuses(attacker, f"  {user.email.upper()} ", 6) == [401] * 3 + [429] * 3

    [lock_out] = lock_outs()
    assert (lock_out.account_id, lock_out.email_hash) == (user.id, None)
    assert (lock_out.scope, lock_out.address) == ("account", ATTACKER)
    assert timedelta(0) < lock_out.locked_until - lock_out.locked_at <= timedelta(minutes=1)
    assert user.email not in stored_text().lower()


@pytest.mark.parametrize(
    "typed",
    [
        TYPED_PASSWORD,
        # Lower-cased, "İ" is two characters: longer than the 254 the form allows.
        "İ" * 254,
    ],
)
def test_a_lock_out_of_no_account_keeps_a_keyed_hash_not_the_text(app, typed):
    attacker = client_at(app, ATTACKER)

    assert statuses(attacker, typed, 4) == [401] * 3 + [429]

    [lock_out] = lock_outs()
    assert lock_out.account_id is None
    assert lock_out.email_hash == pseudonym(typed.lower())
    assert typed.lower() not in stored_text().lower()


def test_recording_a_lock_out_deletes_those_older_than_30_days(app, make_user):
    now = utcnow()
    for days in (31, 29):
        db.session.add(
            LoginLockout(
                locked_at=now - timedelta(days=days),
                locked_until=now - timedelta(days=days, minutes=-15),
                email_hash=f"{days} days ago",
                scope="account",
                address=ATTACKER,
            )
        )
    db.session.commit()

    target = make_user()

    statuses(client_at(app, ATTACKER), target.email, 4)

    kept = [(lock_out.email_hash, lock_out.account_id) for lock_out in lock_outs()]
    assert kept == [("29 days ago", None), (None, target.id)]


def lock_outs_section(client):
    page = client.get("/staff/").text
    return page.split('id="lock-outs-heading"')[1].split("</section>")[0]


def test_an_admin_sees_recent_lock_outs_on_the_dashboard(app, client, admin, make_user):
    old = LoginLockout(
        locked_at=utcnow() - timedelta(days=8),
        locked_until=utcnow() - timedelta(days=8),
        account_id=make_user(email="last-week@agency.test").id,
        scope="address",
        address=COLLEAGUE,
    )
    db.session.add(old)
    db.session.commit()
    target = make_user()
    statuses(client_at(app, ATTACKER), target.email, 4)

    section = lock_outs_section(client)

    assert target.email in section and ATTACKER in section
    assert "This account from this address" in section
    assert "last-week@agency.test" not in section


def test_a_lock_out_of_no_account_shows_its_reference_not_the_text(app, client, admin):
    statuses(client_at(app, ATTACKER), TYPED_PASSWORD, 4)

    section = lock_outs_section(client)

    reference = pseudonym(TYPED_PASSWORD.lower())
    assert f"<td>an address with no account (ref {reference})</td>" in section
    assert TYPED_PASSWORD.lower() not in client.get("/staff/").text.lower()


def test_the_lock_outs_of_many_accounts_take_one_query(
    app, client, admin, make_user, query_recorder
):
    statuses(client_at(app, ATTACKER), make_user().email, 4)
    with query_recorder:
        client.get("/staff/")
    one_lock_out = query_recorder.count
    for number in range(3):
        statuses(client_at(app, f"192.0.2.{number}"), make_user().email, 4)

    with query_recorder:
        client.get("/staff/")

    assert query_recorder.count == one_lock_out


def test_an_editor_does_not_see_lock_outs(app, client, editor, make_user):
    statuses(client_at(app, ATTACKER), make_user().email, 4)

    response = client.get("/staff/")

    assert response.status_code == 200
    assert "lock-outs-heading" not in response.text and ATTACKER not in response.text


@pytest.mark.parametrize("store", ["refusing", "silent"])
def test_when_the_store_is_unreachable_logins_are_still_throttled(
    make_app, make_user, refusing_smtp_port, silent_smtp_server, store
):
    """Refused connections, or a Redis that accepts them and never answers."""
    port = refusing_smtp_port if store == "refusing" else silent_smtp_server.port
    app = make_app(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/11")
    with app.app_context():
        user = make_user()
        attacker = client_at(app, ATTACKER)

        assert statuses(attacker, user.email, 4) == [401, 401, 401, 429]
        assert log_in(client_at(app, COLLEAGUE), user.email).status_code == 303


# The served stack: gunicorn's workers share the counts in Redis.


@pytest.fixture
def gunicorn(tmp_path, smtp_server, redis_prefix):
    """The Procfile's web process with four workers, counting in Redis, on its own port."""
    environment = stack_environment(
        tmp_path,
        smtp_server,
        RATELIMIT_STORAGE_URI=REDIS_URL,
        RATELIMIT_KEY_PREFIX=redis_prefix,
        WEB_CONCURRENCY="4",
    )
    stack = Stack(tmp_path, environment)
    stack.launch("web")
    url = stack.app_url
    try:
        wait_until(lambda: fetch(url + "/healthz").status == 200, stack.logs)
        yield stack, url
    finally:
        stack.stop()


def create_staff(environment, email):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "app",
            "staff",
            "create",
            "--password-stdin",
            email,
        ],
        cwd=ROOT,
        env=environment,
        input=f"{STAFF_PASSWORD}\n",
        text=True,
        check=True,
        capture_output=True,
    )


class LoginPage:
    """One session's cookie and CSRF token, from an address the proxy vouches for."""

    def __init__(self, url, address):
        self.url, self.address = url + "/staff/login", address
        page = fetch(self.url, headers=self.headers())
        self.cookie = page.headers["Set-Cookie"].split(";")[0]
        self.token = CSRF_INPUT.search(page.text).group(1)

    def headers(self, **more):
        return {"X-Forwarded-For": self.address, **more}

    def post(self, email, password):
        fields = {"email": email, "password": password, "csrf_token": self.token}
        headers = self.headers(Cookie=self.cookie)
        return fetch(self.url, data=urllib.parse.urlencode(fields).encode(), headers=headers)


def test_forty_parallel_guesses_let_at_most_the_limit_reach_the_password_check(gunicorn, tmp_path):
    stack, url = gunicorn
    email = "target@agency.example"
    create_staff(stack.environment, email)
    attacker = LoginPage(url, ATTACKER)

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(lambda _: attacker.post(email, WRONG_PASSWORD), range(40)))

    counted = Counter(answer.status for answer in answers)
    assert set(counted) <= {401, 429}, counted
    assert 1 <= counted[401] <= 5, counted
    assert stack.logs().count("login failed") == counted[401]
    assert all(int(answer.headers["Retry-After"]) > 0 for answer in answers if answer.status == 429)
    assert LoginPage(url, COLLEAGUE).post(email, STAFF_PASSWORD).status == 303
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'site.db'}")
    with engine.connect() as connection:
        recorded = connection.execute(select(LoginLockout.scope, LoginLockout.address)).all()
    engine.dispose()
    assert recorded == [("account", ATTACKER)]
