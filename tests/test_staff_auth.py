from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app import config
from app.accounts import services as accounts
from app.accounts.models import StaffSession
from app.extensions import db
from tests.conftest import STAFF_PASSWORD, csrf_token

STAFF_PATHS_WITHOUT_ARGUMENTS = None


def staff_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("staff.")]


def sample_url(rule):
    """A concrete URL for a rule, with a plausible value for each argument."""
    values = {name: 1 if "id" in name else "x" for name in rule.arguments}
    return rule.build(values, append_unknown=False)[1]


def test_every_staff_url_refuses_an_anonymous_client(app, client):
    rules = staff_rules(app)
    assert len(rules) >= 3
    for rule in rules:
        if rule.endpoint == "staff.auth.login":
            continue
        url = sample_url(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url, method=method)
            assert response.status_code in {302, 400}, (method, url, response.status_code)
            if response.status_code == 302:
                assert response.location.startswith("/staff/login?next="), url
            assert "no-store" in response.headers["Cache-Control"], url


def test_an_anonymous_visitor_is_told_why_they_must_log_in(client):
    response = client.get("/staff/leads/", follow_redirects=True)
    assert "Please log in to see that page." in response.text


def test_passwords_are_hashed_with_scrypt_outside_the_test_suite(make_app):
    app = make_app(PASSWORD_HASH_METHOD=config.DEFAULTS["PASSWORD_HASH_METHOD"])

    with app.app_context():
        user = accounts.create_user("admin@agency.example", STAFF_PASSWORD, role="admin")
        assert user.password_hash.startswith("scrypt:")
        assert accounts.authenticate("admin@agency.example", STAFF_PASSWORD).id == user.id
        assert accounts.authenticate("admin@agency.example", "wrong password!") is None
    assert config.from_environment({"PASSWORD_HASH_METHOD": "plain"}) == {}


def test_a_stored_hash_is_checked_by_its_own_method(app, make_user):
    user = make_user(email="old@agency.test")
    user.password_hash = generate_password_hash(STAFF_PASSWORD, method="scrypt")
    db.session.commit()

    assert accounts.authenticate("old@agency.test", STAFF_PASSWORD).id == user.id


def test_login_redirects_to_a_safe_next(client, make_user):
    user = make_user()
    token = csrf_token(client, "/staff/login?next=/staff/")
    response = client.post(
        "/staff/login",
        data={
            "email": user.email,
            "password": STAFF_PASSWORD,
            "csrf_token": token,
            "next": "/staff/",
        },
    )
    assert response.status_code == 303
    assert response.location == "/staff/"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "staff/",
    ],
)
def test_login_never_redirects_off_site(client, make_user, target):
    user = make_user()
    response = client.post(
        "/staff/login",
        data={
            "email": user.email,
            "password": STAFF_PASSWORD,
            "csrf_token": csrf_token(client),
            "next": target,
        },
    )
    assert response.status_code == 303
    assert response.location == "/staff/"


def test_wrong_password_and_unknown_account_get_the_same_message(client, make_user):
    user = make_user()
    messages = []
    for email, password in [(user.email, "wrong password!"), ("nobody@agency.test", "whatever")]:
        response = client.post(
            "/staff/login",
            data={"email": email, "password": password, "csrf_token": csrf_token(client)},
        )
        assert response.status_code == 401
        messages.append(response.text.split('role="alert"')[1].split("</div>")[0])
    assert messages[0] == messages[1]
    assert "do not match an active account" in messages[0]


def test_disabled_account_cannot_log_in(client, make_user):
    user = make_user(is_active=False)
    response = client.post(
        "/staff/login",
        data={"email": user.email, "password": STAFF_PASSWORD, "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 401


def test_login_without_csrf_token_is_refused(client, make_user):
    user = make_user()
    client.get("/staff/login")
    response = client.post("/staff/login", data={"email": user.email, "password": STAFF_PASSWORD})
    assert response.status_code == 400
    assert "This form expired" in response.text


def test_login_rotates_the_session(client, make_user):
    user = make_user()
    client.get("/staff/login")
    before = client.get_cookie("staff_session", path="/staff").value
    client.post(
        "/staff/login",
        data={"email": user.email, "password": STAFF_PASSWORD, "csrf_token": csrf_token(client)},
    )
    after = client.get_cookie("staff_session", path="/staff").value
    assert before != after
    assert client.get("/staff/").status_code == 200


def replay(app, cookie_value):
    other = app.test_client()
    other.set_cookie("staff_session", cookie_value, path="/staff")
    return other.get("/staff/")


def test_logout_ends_the_session_for_every_copy_of_the_cookie(app, client, editor):
    stolen = client.get_cookie("staff_session", path="/staff").value
    assert replay(app, stolen).status_code == 200

    response = client.post("/staff/logout", data={"csrf_token": csrf_token(client, "/staff/")})

    assert response.status_code == 303
    assert replay(app, stolen).status_code == 302
    assert client.get("/staff/").status_code == 302


def test_logout_is_post_only(client, editor):
    assert client.get("/staff/logout").status_code == 405


def test_staff_list_shows_the_last_login_in_utc(runner, make_user):
    make_user(email="seen@agency.test", last_login_at=datetime(2026, 12, 2, 14, 5, tzinfo=UTC))
    make_user(email="new@agency.test")

    lines = runner.invoke(args=["staff", "list"]).output.splitlines()

    assert [line.split(" last login ")[1] for line in sorted(lines)] == [
        "never",
        "02 Dec 2026, 14:05 UTC",
    ]


@pytest.mark.parametrize(
    "command", [["staff", "disable"], ["staff", "set-password", "--password-stdin"]]
)
def test_disabling_or_a_new_password_ends_sessions(app, client, editor, command):
    stolen = client.get_cookie("staff_session", path="/staff").value
    result = app.test_cli_runner().invoke(
        args=[*command, editor.email], input="a brand new password\n"
    )
    assert result.exit_code == 0, result.output
    assert replay(app, stolen).status_code == 302
    sessions = db.session.scalars(select(StaffSession).where(StaffSession.user_id == editor.id))
    assert all(session.revoked_at for session in sessions)


def test_public_pages_never_receive_the_staff_cookie(client, editor):
    cookie = client.get_cookie("staff_session", path="/staff")
    assert cookie.path == "/staff"
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    response = client.get("/")
    assert "Set-Cookie" not in response.headers


def test_staff_pages_are_never_cacheable(client, editor):
    response = client.get("/staff/")
    assert response.headers["Cache-Control"] == "no-store, private"


def test_login_is_throttled_per_account(client, app, make_user):
    app.config["LOGIN_ACCOUNT_RATE_LIMIT"] = "3 per minute"
    user = make_user()
    statuses = []
    for _ in range(4):
        response = client.post(
            "/staff/login",
            data={"email": user.email, "password": "wrong!", "csrf_token": csrf_token(client)},
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]


@pytest.mark.parametrize("field", ["email", "password"])
@pytest.mark.parametrize("character", ["\x00", "\x01", "\x1f"])
def test_a_control_character_in_the_login_is_a_mismatch_not_a_500(
    client, make_user, field, character
):
    user = make_user()
    data = {"email": user.email, "password": STAFF_PASSWORD, field: f"a{character}@agency.test"}
    response = client.post("/staff/login", data={**data, "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "do not match an active account" in response.text
