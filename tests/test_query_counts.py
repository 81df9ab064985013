"""How many SQL queries the busiest pages make: a bound for each, and no query per row.

Each page is counted twice, with a little data and with more; the counts must match, so
a list that starts loading its rows one by one (N+1) fails here as surely as a new query.
"""

import re
import time
from itertools import count

from flask import template_rendered
from itsdangerous import TimestampSigner

from app.caching import RENDER_TOKEN
from app.extensions import db
from app.leads import workflow
from app.leads.models import OutboxMessage
from app.leads.protection import read_render_token

HOME_QUERIES = 3  # the content version (the ETag), latest posts, their tags
POST_QUERIES = 7  # the version, the post, its tags, related and latest posts with their tags
REVALIDATION_QUERIES = 1  # the content version: a 304 renders nothing
INBOX_QUERIES = 3  # the staff login, the page of leads, the counts per status
LEAD_QUERIES = 6  # the login, the lead, its emails, notes, trail, and the staff to assign


def queries_for(client, recorder, url):
    with recorder:
        response = client.get(url)
    assert response.status_code == 200, response.text
    return recorder.count


def count_twice(client, recorder, url, add_more):
    """Queries for `url` now and after `add_more()`; they must not grow with the data."""
    before = queries_for(client, recorder, url)
    add_more()
    after = queries_for(client, recorder, url)
    assert before == after, f"{url}: {before} queries, then {after} with more data"
    return recorder


def add_history(lead, make_user, count=1):
    """`count` emails, notes and status changes on the lead's page, each by a colleague who
    has left: neither the logged-in user nor in the assignee list, which the request loads
    anyway, so each author or actor loaded on its own would cost a query."""
    for number in range(count):
        lead.messages.append(
            OutboxMessage(kind="lead_notification", recipient=f"staff{number}@agency.test")
        )
        db.session.commit()
        workflow.add_note(lead, f"Note {number}", make_user(is_active=False))
        workflow.set_status(
            lead, "contacted" if number % 2 else "qualified", make_user(is_active=False)
        )


def make_posts(make_post, count):
    return [make_post(tags=[f"Tag {number}", "Shared"]) for number in range(count)]


def test_home_page(client, query_recorder, make_post):
    make_posts(make_post, 3)

    recorder = count_twice(client, query_recorder, "/", lambda: make_posts(make_post, 10))

    recorder.assert_at_most(HOME_QUERIES)


def test_post_page(client, query_recorder, make_post):
    post = make_posts(make_post, 3)[0]
    url = f"/posts/{post.slug}"

    recorder = count_twice(client, query_recorder, url, lambda: make_posts(make_post, 10))

    recorder.assert_at_most(POST_QUERIES)


def test_a_revalidation_is_answered_before_anything_renders(client, query_recorder, make_post):
    post = make_posts(make_post, 3)[0]
    rendered = []

    def record(sender, template, **extra):
        rendered.append(template.name)

    for url in ["/", "/posts/", f"/posts/{post.slug}", "/contact", "/feed.xml", "/sitemap.xml"]:
        etag = client.get(url).headers["ETag"]
        with query_recorder, template_rendered.connected_to(record):
            response = client.get(url, headers={"If-None-Match": etag})

        assert response.status_code == 304, url
        assert rendered == [], url
        query_recorder.assert_at_most(REVALIDATION_QUERIES)


def test_a_page_rendered_once_is_served_from_the_store_with_a_fresh_form_time(
    app, client, query_recorder, make_post, monkeypatch
):
    post = make_posts(make_post, 3)[0]
    url = f"/posts/{post.slug}"
    seconds = count(int(time.time()) - 100)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: next(seconds))
    rendered = []

    def record(sender, template, **extra):
        rendered.append(template.name)

    first = client.get(url)
    with query_recorder, template_rendered.connected_to(record):
        second = client.get(url)

    assert rendered == []
    query_recorder.assert_at_most(REVALIDATION_QUERIES)
    assert second.status_code == 200 and second.headers["ETag"] == first.headers["ETag"]
    tokens = [RENDER_TOKEN.search(page.data)[0] for page in (first, second)]
    assert tokens[0] != tokens[1]
    assert RENDER_TOKEN.sub(b"", second.data) == RENDER_TOKEN.sub(b"", first.data)
    with app.test_request_context():
        token = re.search(rb'value="([^"]+)"', tokens[1])[1].decode()
        assert read_render_token(token) is not None


def test_a_stored_page_keeps_its_content_type(client, make_post):
    make_posts(make_post, 2)
    for url in ["/feed.xml", "/sitemap.xml", "/robots.txt", "/"]:
        rendered, stored = client.get(url), client.get(url)

        assert stored.headers["Content-Type"] == rendered.headers["Content-Type"], url
        assert stored.data == rendered.data or url == "/", url


def test_the_page_store_can_be_turned_off(make_app, make_post):
    app = make_app(PAGE_CACHE_SIZE=0)
    client = app.test_client()
    with app.app_context():
        url = f"/posts/{make_posts(make_post, 1)[0].slug}"
    rendered = []

    def record(sender, template, **extra):
        rendered.append(template.name)

    client.get(url)
    with template_rendered.connected_to(record):
        assert client.get(url).status_code == 200

    assert "posts/detail.html" in rendered


def test_inbox(client, editor, query_recorder, make_lead):
    def add_leads(count):
        for number in range(count):
            make_lead(status="new" if number % 2 else "contacted")

    add_leads(2)

    recorder = count_twice(client, query_recorder, "/staff/leads/", lambda: add_leads(30))

    recorder.assert_at_most(INBOX_QUERIES)


def test_lead_page(client, editor, query_recorder, make_lead, make_user):
    lead = make_lead()
    add_history(lead, make_user)
    url = f"/staff/leads/{lead.reference}"

    recorder = count_twice(client, query_recorder, url, lambda: add_history(lead, make_user, 8))

    recorder.assert_at_most(LEAD_QUERIES)
