import re

import pytest
import redis
from flask import Flask, request

from app import create_app
from app.config import ENVIRONMENT, ConfigurationError, from_environment, load
from tests.conftest import ROOT

REDIS_URL = "redis://127.0.0.1:6379/12"
STRONG_SECRET = "s" * 32
# The least production starts with, beside what app_config sets.
PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": STRONG_SECRET,
    "REDIS_URL": REDIS_URL,
    "TRUSTED_PROXIES": 1,
}


def test_environment_variables_map_to_settings():
    settings = from_environment(
        {
            "DATABASE_URL": "postgresql+psycopg://db/site",
            "MAIL_PORT": "587",
            "MAIL_USE_TLS": "yes",
            "LEADS_NOTIFY_TO": "a@example.com, b@example.com,",
            "SITE_NAME": "",
        }
    )
    assert settings == {
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/site",
        "MAIL_PORT": 587,
        "MAIL_USE_TLS": True,
        "LEADS_NOTIFY_TO": ["a@example.com", "b@example.com"],
    }


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAIL_USE_TLS": "maybe"}, "MAIL_USE_TLS must be true or false"),
        ({"MAIL_PORT": "smtp"}, "MAIL_PORT is malformed"),
    ],
)
def test_malformed_values_name_the_variable(environ, message):
    with pytest.raises(ConfigurationError, match=message):
        from_environment(environ)


def test_production_without_secret_key_refuses_to_start(app_config):
    config = {**app_config, "APP_ENV": "production", "SECRET_KEY": None}
    with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
        create_app(config)


def test_production_needs_https_site_url(app_config):
    config = {**app_config, **PRODUCTION, "SITE_URL": "http://agency.test"}
    with pytest.raises(ConfigurationError, match="SITE_URL must be an https"):
        create_app(config)


def test_production_session_cookie_is_secure(make_app):
    app = make_app(**PRODUCTION)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_development_gets_a_default_database_and_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app({"TESTING": True})
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("instance/site.db")
    assert app.config["SECRET_KEY"]


@pytest.mark.parametrize(("proxies", "expected"), [(1, "203.0.113.9 https"), (0, "127.0.0.1 http")])
def test_proxy_headers_are_trusted_only_when_configured(make_app, proxies, expected):
    app = make_app(TRUSTED_PROXIES=proxies)
    app.add_url_rule("/whoami", "whoami", lambda: f"{request.remote_addr} {request.scheme}")

    response = app.test_client().get(
        "/whoami", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    )

    assert response.text == expected


@pytest.mark.parametrize(
    ("proxies", "peer", "forwarded_for", "warning"),
    [
        (0, "127.0.0.1", "203.0.113.9", "every visitor seems to come from the proxy"),
        (0, "10.0.0.5", "203.0.113.9", "every visitor seems to come from the proxy"),
        (2, "127.0.0.1", "203.0.113.9", "a visitor can choose their own address"),
        # A visitor reaching the app directly may send anything.
        (0, "93.184.216.34", "203.0.113.9", None),
        (1, "127.0.0.1", "203.0.113.9", None),
        (1, "127.0.0.1", "198.51.100.7, 203.0.113.9", None),
        (2, "127.0.0.1", "", None),
    ],
)
def test_a_wrong_trusted_proxies_is_logged_once(
    make_app, caplog, proxies, peer, forwarded_for, warning
):
    client = make_app(TRUSTED_PROXIES=proxies).test_client()
    client.environ_base["REMOTE_ADDR"] = peer
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}

    for _ in range(3):
        client.get("/robots.txt", headers=headers)

    said = [
        record.getMessage() for record in caplog.records if "TRUSTED_PROXIES" in record.getMessage()
    ]
    if warning:
        assert len(said) == 1
        assert warning in said[0]
        assert (
            f"TRUSTED_PROXIES is {proxies}, but a request from {peer} had 1 X-Forwarded" in said[0]
        )
    else:
        assert said == []


def test_in_development_links_follow_port(make_app, make_post):
    app = make_app(SITE_URL=None, PORT=8080)
    client = app.test_client()

    assert app.config["SITE_URL"] == "http://127.0.0.1:8080"
    assert '<link rel="canonical" href="http://127.0.0.1:8080/">' in client.get("/").text
    post = make_post()
    page = client.get(f"/posts/{post.slug}").text
    assert f'href="http://127.0.0.1:8080/posts/{post.slug}" data-copy-link' in page
    assert from_environment({"PORT": "8080"}) == {"PORT": 8080}


def test_an_explicit_site_url_wins_over_port(make_app):
    app = make_app(SITE_URL="http://localhost:9000/", PORT=8080)
    assert app.config["SITE_URL"] == "http://localhost:9000"


def test_production_needs_a_site_url(app_config):
    config = {**app_config, **PRODUCTION, "SITE_URL": None}
    with pytest.raises(ConfigurationError, match="SITE_URL is not set"):
        create_app(config)


def test_postgresql_connections_wait_at_most_the_connect_timeout(app_config):
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    default = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
    chosen = create_app(
        {**app_config, "SQLALCHEMY_DATABASE_URI": url, "DATABASE_CONNECT_TIMEOUT": 2}
    )
    in_url = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url + "?connect_timeout=9"})

    assert default.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["connect_timeout"] == 5
    assert chosen.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["connect_timeout"] == 2
    assert "connect_timeout" not in in_url.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]


@pytest.mark.parametrize("secret", ["s" * 32, "é" * 16])
def test_production_accepts_a_secret_key_of_32_bytes(make_app, secret):
    assert make_app(**PRODUCTION | {"SECRET_KEY": secret}).config["SECRET_KEY"] == secret


@pytest.mark.parametrize("secret", ["s" * 31, "é" * 15 + "s"])
def test_production_refuses_a_secret_key_shorter_than_32_bytes(make_app, secret):
    with pytest.raises(ConfigurationError, match=r"SECRET_KEY is too short \(31 bytes\)") as error:
        make_app(**PRODUCTION | {"SECRET_KEY": secret})
    assert 'python -c "import secrets; print(secrets.token_hex(32))"' in str(error.value)


@pytest.mark.parametrize("name", ["Production", " PRODUCTION\n", "production"])
def test_app_env_ignores_case_and_surrounding_space(make_app, name):
    app = make_app(**PRODUCTION | {"APP_ENV": name})
    assert app.config["APP_ENV"] == "production"
    assert app.config["PRODUCTION"] is True
    assert app.config["SESSION_COOKIE_SECURE"] is True


@pytest.fixture
def production_environment(monkeypatch, app_config):
    """The least production starts with, in environment variables: set_environment(**more)."""

    def set_environment(**variables):
        for variable, value in {
            "FLASK_SKIP_DOTENV": "1",
            "APP_ENV": "production",
            "SECRET_KEY": STRONG_SECRET,
            "REDIS_URL": REDIS_URL,
            "TRUSTED_PROXIES": "1",
            "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
            "SITE_URL": "https://agency.test",
            "LEAD_SPOOL_DIR": app_config["LEAD_SPOOL_DIR"],
            "UPLOAD_FOLDER": app_config["UPLOAD_FOLDER"],
            **variables,
        }.items():
            monkeypatch.setenv(variable, value)

    return set_environment


def test_app_env_from_the_environment_is_normalised(production_environment):
    production_environment(APP_ENV="Production")
    assert create_app().config["APP_ENV"] == "production"


def test_production_without_trusted_proxies_refuses_to_start_and_explains(app_config):
    config = {**app_config, **PRODUCTION, "TRUSTED_PROXIES": None}

    with pytest.raises(ConfigurationError) as error:
        create_app(config)

    message = str(error.value)
    assert message.startswith("TRUSTED_PROXIES is not set.")
    assert "1 behind one reverse proxy such as the shipped nginx" in message
    assert "one more for each CDN or load balancer" in message
    assert "0 only when visitors reach the app directly" in message
    assert "one stranger's wrong logins lock every member of staff out" in message
    assert "the whole site shares one contact limit" in message
    assert "a visitor can choose their own address" in message


def test_production_reads_an_empty_or_missing_trusted_proxies_as_unset(
    production_environment, monkeypatch
):
    production_environment(TRUSTED_PROXIES="")
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES is not set"):
        create_app()
    monkeypatch.delenv("TRUSTED_PROXIES")
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES is not set"):
        create_app()


@pytest.mark.parametrize("written", ["0", "1", "2"])
def test_production_starts_with_any_trusted_proxies_written(production_environment, written):
    production_environment(TRUSTED_PROXIES=written)
    assert create_app().config["TRUSTED_PROXIES"] == int(written)


def test_production_refuses_a_negative_trusted_proxies(make_app):
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES must be 0 or more, not -1"):
        make_app(**PRODUCTION | {"TRUSTED_PROXIES": -1})


def test_development_trusts_no_proxy_unless_told(make_app):
    assert make_app(TRUSTED_PROXIES=None).config["TRUSTED_PROXIES"] == 0


@pytest.mark.parametrize("name", ["prod", "staging", ""])
def test_an_unknown_app_env_is_refused_with_the_allowed_values(make_app, name):
    with pytest.raises(ConfigurationError) as error:
        make_app(APP_ENV=name)
    assert str(error.value) == (
        f"APP_ENV must be one of development, production (in any case), not {name!r}."
    )


@pytest.mark.parametrize("store", [{}, {"RATELIMIT_STORAGE_URI": "memory://"}])
def test_production_refuses_rate_limits_counted_per_process(app_config, store):
    config = {**app_config, **PRODUCTION, "REDIS_URL": None, **store}
    with pytest.raises(ConfigurationError) as error:
        create_app(config)
    assert "counted in memory, separately by each process" in str(error.value)
    assert "set REDIS_URL (or RATELIMIT_STORAGE_URI) to a Redis" in str(error.value)


def test_development_counts_rate_limits_in_memory_by_default(make_app):
    assert make_app().config["RATELIMIT_STORAGE_URI"] == "memory://"


def posts_counted_in_redis(make_app, post_lead, prefix, **settings):
    """Post the form twice under a limit of one a minute; the answers, and whether Redis
    holds the counter."""
    app = make_app(
        RATELIMIT_ENABLED=True,
        CONTACT_RATE_LIMIT="1 per minute",
        RATELIMIT_KEY_PREFIX=prefix,
        **settings,
    )
    client = app.test_client()
    answers = [post_lead(client, message=f"Question {n}").status_code for n in range(2)]
    with redis.Redis.from_url(REDIS_URL) as connection:
        return answers, bool(list(connection.scan_iter(f"*{prefix}*")))


def test_redis_url_is_where_rate_limits_are_counted(make_app, post_lead, redis_prefix):
    counted = posts_counted_in_redis(make_app, post_lead, redis_prefix, REDIS_URL=REDIS_URL)
    assert counted == ([303, 429], True)


def test_an_explicit_rate_limit_store_wins_over_redis_url(make_app, post_lead, redis_prefix):
    settings = {"REDIS_URL": REDIS_URL, "RATELIMIT_STORAGE_URI": "memory://"}
    counted = posts_counted_in_redis(make_app, post_lead, redis_prefix, **settings)
    assert counted == ([303, 429], False)


@pytest.mark.parametrize(
    "name",
    [
        "CONTACT_RATE_LIMIT",
        "CONTACT_ATTEMPT_RATE_LIMIT",
        "LOGIN_RATE_LIMIT",
        "LOGIN_ACCOUNT_RATE_LIMIT",
    ],
)
def test_a_rate_limit_that_is_not_one_is_refused_at_start(make_app, name):
    with pytest.raises(ConfigurationError, match=f"{name} must be rate limits such as"):
        make_app(**{name: "5 per fortnight"})


def test_a_redis_url_that_is_not_one_is_refused(make_app):
    with pytest.raises(ConfigurationError, match="REDIS_URL must be a Redis URL such as redis://"):
        make_app(REDIS_URL="127.0.0.1:6379")


def test_the_default_delivery_claim_is_a_minute_and_starts_with_the_default_mail_timeout(
    make_app,
):
    config = make_app().config
    assert (config["DELIVERY_CLAIM_SECONDS"], config["MAIL_TIMEOUT"]) == (60, 10)


@pytest.mark.parametrize("environment", [{}, PRODUCTION], ids=["development", "production"])
def test_a_delivery_claim_shorter_than_five_mail_timeouts_refuses_to_start(make_app, environment):
    make_app(**environment, DELIVERY_CLAIM_SECONDS=50, MAIL_TIMEOUT=10)
    with pytest.raises(ConfigurationError) as error:
        make_app(**environment, DELIVERY_CLAIM_SECONDS=60, MAIL_TIMEOUT=12.5)
    assert str(error.value) == (
        "DELIVERY_CLAIM_SECONDS (60) must be at least 5 times MAIL_TIMEOUT (12.5), so at least "
        "62.5: sending one message waits for up to four SMTP replies, each for up to "
        "MAIL_TIMEOUT, and a claim that ends during a send lets another worker send the "
        "message again. Raise DELIVERY_CLAIM_SECONDS or lower MAIL_TIMEOUT."
    )


def test_a_mail_timeout_of_zero_refuses_to_start(make_app):
    with pytest.raises(ConfigurationError, match="MAIL_TIMEOUT must be more than 0 seconds"):
        make_app(MAIL_TIMEOUT=0)


def test_flask_skip_dotenv_leaves_the_env_file_unread(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("SITE_NAME=From the env file\n")
    # Registered for undo, so a value the file sets is removed again after the test.
    monkeypatch.setenv("SITE_NAME", "")
    monkeypatch.delenv("SITE_NAME")

    def loaded_site_name():
        app = Flask("site", root_path=str(tmp_path / "app"), instance_path=str(tmp_path / "i"))
        load(app)
        return app.config["SITE_NAME"]

    monkeypatch.setenv("FLASK_SKIP_DOTENV", "1")
    assert loaded_site_name() == "Catalyst Science Marketing"
    monkeypatch.delenv("FLASK_SKIP_DOTENV")
    assert loaded_site_name() == "From the env file"


def test_every_setting_is_documented_in_the_readme_and_env_example():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)?", readme, re.MULTILINE))
    in_readme = {name for row in documented for name in row if name}
    example = (ROOT / ".env.example").read_text()
    in_example = set(re.findall(r"^#? ?([A-Z_]+)=", example, re.MULTILINE))

    assert set(ENVIRONMENT) - in_readme == set()
    assert set(ENVIRONMENT) - in_example == set()
