import json
import re
from datetime import timedelta

import pytest

from app.types import utcnow
from tests.conftest import SITE_URL


def test_list_shows_newest_first_with_details(client, make_post):
    make_post(title="Older", published_at=utcnow() - timedelta(days=3), tags=["Energy Storage"])
    make_post(title="Newer", published_at=utcnow() - timedelta(days=1), body_markdown="word " * 700)

    html = client.get("/posts/").text

    assert html.index("Newer") < html.index("Older")
    assert "3 min read" in html  # 700 words
    assert 'href="/tags/energy-storage"' in html
    assert "Standfirst of post 1." in html


def test_drafts_and_scheduled_posts_are_hidden(client, make_post):
    make_post(slug="draft", title="Draft post", published_at=None)
    make_post(slug="future", title="Future post", published_at=utcnow() + timedelta(days=1))

    assert "Draft post" not in client.get("/posts/").text
    assert "Future post" not in client.get("/").text
    assert client.get("/posts/draft").status_code == 404
    assert client.get("/posts/future").status_code == 404
    assert "/posts/future" not in client.get("/sitemap.xml").text
    assert "/posts/draft" not in client.get("/feed.xml").text


def test_pagination(client, app, make_post):
    app.config["POSTS_PER_PAGE"] = 2
    for _ in range(5):
        make_post()

    first = client.get("/posts/").text
    assert "Page 1 of 3" in first and 'rel="next" href="/posts/?page=2"' in first
    last = client.get("/posts/?page=3").text
    assert "Post number 5" in last and 'rel="prev"' in last and 'rel="next"' not in last
    assert f'<link rel="canonical" href="{SITE_URL}/posts/?page=3">' in last


@pytest.mark.parametrize(
    "page", ["0", "-1", "abc", "2.5", "", "4", "99999999999999999999", "\u0661"]
)
def test_bad_page_numbers_are_not_found(client, app, make_post, page):
    app.config["POSTS_PER_PAGE"] = 2
    for _ in range(5):
        make_post(tags=["Batteries"])

    for path in ("/posts/", "/tags/batteries"):
        response = client.get(path, query_string={"page": page})
        assert response.status_code == 404
        assert "We cannot find that page" in response.text


def test_unknown_slug_and_tag_get_the_styled_404(client, make_post):
    make_post(tags=["Batteries"])
    for path in ("/posts/nope", "/tags/nope", "/posts/<script>", "/no/such/page"):
        response = client.get(path)
        assert response.status_code == 404
        assert "We cannot find that page" in response.text
        assert "<script>" not in response.text


def test_tag_page_lists_only_its_posts(client, make_post):
    make_post(title="Battery news", tags=["Energy Storage"])
    make_post(title="Chip news", tags=["Semiconductors"])

    html = client.get("/tags/energy-storage").text

    assert "<h1>Energy Storage</h1>" in html
    assert "Battery news" in html and "Chip news" not in html


def test_post_page_follows_the_agency_layout(client, demo_content):
    html = client.get("/posts/casip-solid-state-battery-consortium").text
    landmarks = [
        "<h1>",
        'class="standfirst"',
        'id="share-top"',
        'class="prose"',
        "Related article:",
        'class="post__source"',
        'id="share-bottom"',
        'class="pitch"',
        "Latest Market &amp; Industry News",
        "Get in touch",
        'class="site-footer"',
    ]
    positions = [html.index(landmark) for landmark in landmarks]
    assert positions == sorted(positions)
    assert "Nikkei Asia" in html and "Asia Financial" in html
    assert "Demo content" in html


def test_share_links_are_plain_links_to_the_canonical_url(client, make_post):
    make_post(slug="solid-state", title="Solid & state")
    html = client.get("/posts/solid-state").text
    encoded = "https%3A//agency.test/posts/solid-state"

    assert f"https://www.linkedin.com/sharing/share-offsite/?url={encoded}" in html
    assert f"https://x.com/intent/post?url={encoded}&amp;text=Solid%20%26%20state" in html
    assert f"https://www.facebook.com/sharer/sharer.php?u={encoded}" in html
    assert f"mailto:?subject=Solid%20%26%20state&amp;body={encoded}" in html
    assert f'href="{SITE_URL}/posts/solid-state" data-copy-link' in html
    assert html.count("Share This Post") == 2
    assert "<iframe" not in html
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert all(src.startswith("/static/") for src in scripts)


def test_related_posts_prefer_shared_tags_then_recency(client, make_post):
    now = utcnow()
    post = make_post(slug="subject", tags=["A", "B"], published_at=now - timedelta(days=10))
    make_post(slug="two-shared", tags=["A", "B"], published_at=now - timedelta(days=30))
    make_post(slug="one-shared-new", tags=["B"], published_at=now - timedelta(days=2))
    make_post(slug="one-shared-old", tags=["A"], published_at=now - timedelta(days=40))
    make_post(slug="unrelated-newest", tags=["Z"], published_at=now - timedelta(days=1))
    make_post(slug="unrelated-old", tags=["Z"], published_at=now - timedelta(days=50))

    from app.posts.queries import related

    assert [p.slug for p in related(post, 3)] == ["two-shared", "one-shared-new", "one-shared-old"]
    assert [p.slug for p in related(post, 5)] == [
        "two-shared",
        "one-shared-new",
        "one-shared-old",
        "unrelated-newest",
        "unrelated-old",
    ]


def test_post_has_open_graph_twitter_and_json_ld(client, make_post):
    make_post(
        slug="og",
        title='Quotes "and" <tags>',
        meta_description="Short description.",
        cover_image="img/covers/default.png",
        tags=["Energy Storage"],
    )
    html = client.get("/posts/og").text
    url = f"{SITE_URL}/posts/og"

    assert f'<meta property="og:url" content="{url}">' in html
    assert '<meta property="og:title" content="Quotes &#34;and&#34; &lt;tags&gt;">' in html
    assert '<meta property="og:description" content="Short description.">' in html
    assert f'<meta property="og:image" content="{SITE_URL}/static/img/covers/default.png">' in html
    assert '<meta name="twitter:card" content="summary_large_image">' in html
    assert f'<link rel="canonical" href="{url}">' in html

    ld_json = re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    data = json.loads(ld_json.group(1))
    assert data["@type"] == "Article"
    assert data["headline"] == 'Quotes "and" <tags>'
    assert data["mainEntityOfPage"] == url
    assert data["keywords"] == "Energy Storage"
    assert "<tags>" not in ld_json.group(1)  # escaped, cannot close the script element


def test_home_page_has_promise_services_latest_and_invitation(client, make_post):
    make_post(title="Fresh analysis")
    html = client.get("/").text
    assert "What we do" in html
    assert "Fresh analysis" in html
    assert 'href="/contact"' in html
    assert "Get in touch" in html
