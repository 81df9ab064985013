"""Sitemap, Atom feed and robots.txt: what search engines and feed readers read."""

import xml.etree.ElementTree as ET
from datetime import datetime

from tests.conftest import SITE_URL

ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


def test_sitemap_lists_every_public_page_and_post_with_lastmod(client, demo_content):
    response = client.get("/sitemap.xml")
    assert response.mimetype == "application/xml"
    root = ET.fromstring(response.data)
    entries = {
        url.find(f"{SITEMAP}loc").text: url.find(f"{SITEMAP}lastmod")
        for url in root.iter(f"{SITEMAP}url")
    }

    for post in demo_content:
        lastmod = entries[f"{SITE_URL}/posts/{post.slug}"]
        assert datetime.fromisoformat(lastmod.text) == post.updated_at.replace(microsecond=0)
    for path in ("/", "/posts/", "/about", "/privacy", "/contact"):
        assert f"{SITE_URL}{path}" in entries
    assert not any("/staff" in loc for loc in entries)


def test_feed_is_valid_atom_with_every_recent_post(client, demo_content):
    response = client.get("/feed.xml")
    assert response.mimetype == "application/atom+xml"
    feed = ET.fromstring(response.data)

    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert feed.find(f"{ATOM}{required}").text
    assert feed.find(f"{ATOM}link[@rel='self']").get("href") == f"{SITE_URL}/feed.xml"
    entries = feed.findall(f"{ATOM}entry")
    assert [entry.find(f"{ATOM}id").text for entry in entries] == [
        f"{SITE_URL}/posts/{post.slug}" for post in demo_content
    ]
    for entry in entries:
        for required in ("title", "updated", "published", "summary", "content"):
            assert entry.find(f"{ATOM}{required}").text, required
        datetime.fromisoformat(entry.find(f"{ATOM}updated").text)
    assert "<p>" in entries[0].find(f"{ATOM}content").text  # escaped HTML, decoded by the parser


def test_feed_escapes_hostile_titles(client, make_post):
    make_post(title="Fish & <chips>", body_markdown="A & B")
    feed = ET.fromstring(client.get("/feed.xml").data)
    assert feed.find(f"{ATOM}entry/{ATOM}title").text == "Fish & <chips>"


def test_empty_feed_and_sitemap_are_still_valid(client):
    feed = ET.fromstring(client.get("/feed.xml").data)
    assert feed.find(f"{ATOM}updated").text
    assert ET.fromstring(client.get("/sitemap.xml").data).tag == f"{SITEMAP}urlset"


def test_robots_points_at_the_sitemap_and_keeps_staff_out(client):
    response = client.get("/robots.txt")
    assert response.mimetype == "text/plain"
    assert "Disallow: /staff/" in response.text
    assert f"Sitemap: {SITE_URL}/sitemap.xml" in response.text
