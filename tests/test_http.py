"""Caching, cookies, compression, security headers and markup rules on every public page."""

import gzip
import io
import re
import time

import brotli
import html5lib
import pytest

from app.caching import CODE_FOLDERS, code_version
from tests.conftest import ROOT

PUBLIC_BLUEPRINTS = ("public.", "posts.", "leads.")
# The contact form's signed render time, different in every render.
RENDER_TOKEN = re.compile(rb'<input id="contact-rendered_at"[^>]*>')


@pytest.fixture
def public_urls(app, demo_content):
    """Every public page: each route without arguments, every post and every tag."""
    urls = [
        str(rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(PUBLIC_BLUEPRINTS)
        and not rule.arguments
        and "GET" in rule.methods
        and rule.endpoint != "leads.form_token"  # each reader's own, never cached
    ]
    urls += [f"/posts/{post.slug}" for post in demo_content]
    urls += sorted({f"/tags/{tag.slug}" for post in demo_content for tag in post.tags})
    return urls


@pytest.fixture
def html_pages(public_urls):
    return [url for url in public_urls if not url.endswith((".xml", ".txt"))]


def test_walk_covers_the_site(public_urls):
    assert {"/", "/posts/", "/about", "/privacy", "/contact", "/feed.xml"} <= set(public_urls)
    assert any(url.startswith("/tags/") for url in public_urls)


def test_public_pages_set_no_cookie_and_are_publicly_cacheable(client, public_urls):
    for url in public_urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert "Set-Cookie" not in response.headers, url
        assert "cookie" not in response.vary, url  # no session is even read
        assert response.cache_control.public, url
        assert response.cache_control.max_age == 300, url
        assert response.headers["ETag"], url
    assert not client._cookies


def test_conditional_get_with_etag_returns_304(client, demo_content):
    url = f"/posts/{demo_content[0].slug}"
    first = client.get(url)

    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})

    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]


def test_an_unpublished_post_never_gets_a_stale_304(client, demo_content):
    """No Last-Modified: once a listed post is unpublished no date moves forward, so only
    the ETag can tell that the list changed."""
    from app.extensions import db

    first = client.get("/posts/")
    assert "Last-Modified" not in first.headers
    demo_content[0].published_at = None
    db.session.commit()

    again = client.get(
        "/posts/",
        headers={
            "If-None-Match": first.headers["ETag"],
            "If-Modified-Since": first.headers["Date"],
        },
    )

    assert again.status_code == 200
    assert demo_content[0].title not in again.text


def test_compressed_response_has_its_own_etag_and_validates(client, demo_content):
    url = f"/posts/{demo_content[0].slug}"
    plain = client.get(url)
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})

    assert zipped.headers["Content-Encoding"] == "gzip"
    # Each render signs a new form timestamp; apart from that the bodies are the same.
    assert RENDER_TOKEN.sub(b"", gzip.decompress(zipped.data)) == RENDER_TOKEN.sub(b"", plain.data)
    assert RENDER_TOKEN.search(plain.data)
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert "Accept-Encoding" in zipped.headers["Vary"]
    revalidated = client.get(
        url, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]}
    )
    assert revalidated.status_code == 304


def test_a_changed_post_changes_the_etag(client, demo_content):
    from app.extensions import db
    from app.posts.services import apply_fields

    url = f"/posts/{demo_content[0].slug}"
    before = client.get(url).headers["ETag"]
    apply_fields(demo_content[0], {"title": "A corrected headline"})
    db.session.commit()

    response = client.get(url, headers={"If-None-Match": before})

    assert response.status_code == 200
    assert "A corrected headline" in response.text


def test_static_assets_are_fingerprinted_immutable_and_compressed(client):
    html = client.get("/").text
    css_url = re.search(r'<link rel="stylesheet" href="([^"]+)"', html).group(1)
    assert re.fullmatch(r"/static/css/site\.css\?v=[0-9a-f]{16}", css_url)

    response = client.get(css_url, headers={"Accept-Encoding": "gzip, deflate, br"}, buffered=True)
    body = response.get_data()

    assert response.status_code == 200
    assert response.cache_control.max_age == 365 * 24 * 3600
    assert response.cache_control.immutable
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Encoding"] == "br"
    assert brotli.decompress(body) == (ROOT / "static/css/site.css").read_bytes()


def test_unversioned_or_stale_asset_urls_are_not_cached_forever(client):
    for url in ("/static/css/site.css", "/static/css/site.css?v=0000000000000000"):
        response = client.get(url, buffered=True)
        assert response.status_code == 200
        assert not response.cache_control.immutable
        assert not response.cache_control.no_cache
        assert response.cache_control.max_age == 3600


def test_security_headers(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in response.headers  # only in production


def test_pages_obey_the_content_security_policy(client, html_pages):
    """No inline script, style attribute, style element or event handler anywhere."""
    for url in [*html_pages, "/does-not-exist"]:
        html = client.get(url).text
        executable = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/ld\+json)", html)
        assert not executable, url
        assert not re.search(r"\sstyle=", html), url
        assert "<style" not in html, url
        assert not re.search(r"\son[a-z]+=", html), url


def test_pages_are_valid_html5_with_one_h1_and_landmarks(client, html_pages):
    parser = html5lib.HTMLParser(strict=True)
    for url in html_pages:
        html = client.get(url).text
        parser.parse(html)  # raises on any parse error
        assert html.count("<h1") == 1, url
        for landmark in ('<main id="main"', "<header", "<footer", 'class="skip-link"'):
            assert landmark in html, (url, landmark)


def test_every_page_has_a_unique_title_description_and_canonical(client, html_pages):
    seen = {"title": {}, "description": {}, "canonical": {}}
    patterns = {
        "title": r"<title>(.+?)</title>",
        "description": r'<meta name="description" content="([^"]+)">',
        "canonical": r'<link rel="canonical" href="([^"]+)">',
    }
    for url in html_pages:
        html = client.get(url).text
        for name, pattern in patterns.items():
            value = re.search(pattern, html).group(1)
            assert value not in seen[name], (name, url, seen[name].get(value))
            seen[name][value] = url
    assert all(link.startswith("https://agency.test/") for link in seen["canonical"])


def test_every_page_links_the_atom_feed(client, html_pages):
    for url in html_pages:
        assert 'type="application/atom+xml"' in client.get(url).text, url


def test_production_adds_hsts(make_app):
    app = make_app(
        APP_ENV="production",
        SECRET_KEY="s" * 32,
        REDIS_URL="redis://127.0.0.1:6379/12",
        TRUSTED_PROXIES=1,
    )
    response = app.test_client().get("/robots.txt")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_a_csrf_error_page_is_not_cached(make_app):
    app = make_app()
    app.add_url_rule("/protected", "protected", lambda: "changed", methods=["POST"])

    response = app.test_client().post("/protected")

    assert response.status_code == 400
    assert "This form expired" in response.text
    assert "no-store" in response.headers.get("Cache-Control", "")


class WatchedBody(io.BytesIO):
    """A request body that records whether anything read it."""

    was_read = False

    def read(self, *args):
        self.was_read = True
        return b""

    def readinto(self, buffer):
        self.was_read = True
        return 0

    read1 = readline = read


def test_an_oversized_request_is_refused_unread_with_a_styled_413(client):
    body = WatchedBody()
    response = client.post(
        "/staff/login",
        input_stream=body,
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"CONTENT_LENGTH": str(30 * 1024 * 1024)},
    )

    assert not body.was_read
    assert response.status_code == 413
    assert "larger than this page accepts" in response.text
    assert 'class="site-footer"' in response.text
    assert "no-store" in response.headers["Cache-Control"]


def test_the_request_cap_leaves_room_for_a_cover_image_and_the_form(app):
    assert app.config["MAX_CONTENT_LENGTH"] > app.config["MAX_COVER_BYTES"] + 1024 * 1024


def test_sessions_open_only_under_the_staff_path(app):
    interface = app.session_interface
    for path, has_session in [
        ("/staff", True),
        ("/staff/leads/", True),
        ("/staffing", False),
        ("/staff-news", False),
        ("/", False),
    ]:
        with app.test_request_context(path) as context:
            session = interface.open_session(app, context.request)
            assert (session is not None) is has_session, path


def test_the_etag_follows_the_code_templates_and_static_files(tmp_path):
    for folder in CODE_FOLDERS:
        (tmp_path / folder).mkdir()
    page = tmp_path / "templates" / "page.html"
    page.write_text("<h1>One</h1>")
    version = code_version.__wrapped__  # uncached: the files change within this test

    before = version(str(tmp_path / "app"))
    page.write_text("<h1>Two</h1>")

    assert version(str(tmp_path / "app")) != before


def test_the_etag_follows_the_site_settings(make_app, demo_content):
    url = f"/posts/{demo_content[0].slug}"
    etags = {make_app(SITE_NAME=name).test_client().get(url).headers["ETag"] for name in "AB"}

    assert len(etags) == 2


def test_each_process_reads_the_content_version_at_most_every_few_seconds(make_app, demo_content):
    from app.extensions import db
    from app.posts.services import apply_fields

    app = make_app(CONTENT_CHECK_SECONDS=0.5)
    client = app.test_client()
    url = f"/posts/{demo_content[0].slug}"
    before = client.get(url).headers["ETag"]
    apply_fields(demo_content[0], {"title": "A corrected headline"})
    db.session.commit()

    assert client.get(url).headers["ETag"] == before  # this process has not looked yet
    time.sleep(0.6)
    after = client.get(url)
    assert after.headers["ETag"] != before and "A corrected headline" in after.text
