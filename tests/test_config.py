import pytest
from flask import request

from app import create_app
from app.config import ConfigurationError, from_environment


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
    config = {**app_config, "APP_ENV": "production", "SITE_URL": "http://agency.test"}
    with pytest.raises(ConfigurationError, match="SITE_URL must be an https"):
        create_app(config)


def test_production_session_cookie_is_secure(make_app):
    app = make_app(APP_ENV="production")
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
    config = {**app_config, "APP_ENV": "production", "SECRET_KEY": "x" * 64, "SITE_URL": None}
    with pytest.raises(ConfigurationError, match="SITE_URL is not set"):
        create_app(config)


def test_postgresql_connections_wait_at_most_the_connect_timeout(app_config):
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    default = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
    chosen = create_app(
        {**app_config, "SQLALCHEMY_DATABASE_URI": url, "DATABASE_CONNECT_TIMEOUT": 2}
    )
    in_url = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url + "?connect_timeout=9"})

    assert default.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] == {"connect_timeout": 5}
    assert chosen.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] == {"connect_timeout": 2}
    assert in_url.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] == {}
