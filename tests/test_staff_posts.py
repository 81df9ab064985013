"""The staff post editor: list, create, edit, preview, publish, schedule, delete, cover images."""

import re
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from app.extensions import db
from app.posts import services
from app.posts import uploads as uploads_module
from app.posts.models import Post
from app.posts.uploads import cover_url, discard_unused
from app.staff.post_forms import PostForm
from app.types import utcnow
from tests.conftest import SITE_URL, csrf_token

NEW = "/staff/posts/new"
ARTICLE = re.compile(r'<article class="post">.*?</article>', re.DOTALL)
STORED_COVER = re.compile(r"media/[0-9a-f]{64}\.png")


@pytest.fixture
def uploads(app):
    return app.config["UPLOAD_FOLDER"]


def png(width=24, height=12, noise=False):
    image = Image.effect_noise((width, height), 80) if noise else Image.new("RGB", (width, height))
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def fields(**overrides):
    return {
        "title": "Solid-state batteries: CASIP's plan",
        "slug": "",
        "standfirst": "A consortium wants solid-state cells in production by 2030.",
        "body_markdown": "## The plan\n\nSix battery makers join **CASIP**.",
        "tag_names": "Energy Storage, China",
        "source_markdown": "[Nikkei Asia](https://asia.nikkei.com/)",
        "meta_description": "",
        "cover_alt": "",
        "publish_at": "",
        "action": "save",
        **overrides,
    }


def submit(client, url=NEW, **overrides):
    data = {**fields(**overrides), "csrf_token": csrf_token(client, NEW)}
    return client.post(url, data=data)


def only_post():
    return db.session.scalars(select(Post)).one()


def post_count():
    return db.session.scalar(select(func.count(Post.id)))


def utc_input(moment):
    return moment.strftime("%Y-%m-%dT%H:%M")


# The list


def test_list_shows_every_post_with_status_dates_and_tags(editor, client, make_post):
    make_post(title="Live post", tags=["Energy Storage"])
    make_post(title="Future post", published_at=utcnow() + timedelta(days=2))
    draft = make_post(title="Draft post", published_at=None)

    html = client.get("/staff/posts/").text

    assert html.index("Draft post") < html.index("Future post") < html.index("Live post")
    for status in ("Draft", "Scheduled", "Published"):
        assert f">{status}</span>" in html
    assert "Energy Storage" in html
    assert f'href="/staff/posts/{draft.id}/edit"' in html
    assert 'href="/posts/post-1"' in html  # the published post links to its public page
    assert 'href="/posts/post-2"' not in html  # a scheduled post has no public page yet
    assert "UTC" in html


def test_list_shows_titles_as_text(editor, client, make_post):
    make_post(title="<script>alert(1)</script>")

    html = client.get("/staff/posts/").text

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html


# Create and edit


def test_create_makes_the_slug_from_the_title(editor, client):
    response = submit(client)

    post = only_post()
    assert response.status_code == 303
    assert response.location == f"/staff/posts/{post.id}/edit"
    assert post.slug == "solid-state-batteries-casip-s-plan"
    assert post.published_at is None
    assert [tag.name for tag in post.tags] == ["China", "Energy Storage"]
    assert "<h2>The plan</h2>" in post.body_html
    assert "Draft saved." in client.get(response.location).text


def test_a_typed_slug_is_normalised(editor, client):
    submit(client, slug="  My Custom Slug! ")

    assert only_post().slug == "my-custom-slug"


@pytest.mark.parametrize("typed", ["taken", ""])
def test_a_duplicate_slug_is_an_error_beside_the_field(editor, client, make_post, typed):
    make_post(slug="taken")

    response = submit(client, title="Taken", slug=typed)

    assert response.status_code == 422
    assert "Another post already uses the address /posts/taken." in response.text
    assert 'id="slug-error"' in response.text
    assert post_count() == 1


def test_a_slug_taken_while_saving_is_an_error_not_a_500(editor, client, make_post, monkeypatch):
    make_post(slug="taken")
    monkeypatch.setattr(PostForm, "validate_slug", lambda form, field: None)

    response = submit(client, slug="taken")

    assert response.status_code == 422
    assert "Another post already uses the address /posts/taken." in response.text
    assert post_count() == 1


def test_a_draft_needs_only_a_title(editor, client):
    response = submit(client, title="", standfirst="", body_markdown="")
    assert response.status_code == 422
    assert "Give the post a title." in response.text

    assert submit(client, standfirst="", body_markdown="").status_code == 303


def test_publishing_needs_a_standfirst_and_a_body(editor, client):
    response = submit(client, standfirst="", body_markdown="  ", action="publish")

    assert response.status_code == 422
    assert "Write a standfirst" in response.text
    assert "Write the body of the post" in response.text
    assert post_count() == 0


def test_edit_shows_the_post_and_saves_changes(editor, client, make_post):
    post = make_post(title="Old title", tags=["Energy Storage", "China"])
    url = f"/staff/posts/{post.id}/edit"
    form_page = client.get(url).text
    assert 'value="Old title"' in form_page
    assert 'value="China, Energy Storage"' in form_page

    response = submit(client, url, title="New title", slug=post.slug, tag_names="Batteries")

    assert response.status_code == 303
    db.session.refresh(post)
    assert post.title == "New title"
    assert [tag.name for tag in post.tags] == ["Batteries"]
    assert "<strong>CASIP</strong>" in post.body_html
    assert post.published_at is not None  # saving a published post keeps it published
    assert "New title" in client.get(f"/posts/{post.slug}").text


def test_unknown_post_is_404(editor, client):
    assert client.get("/staff/posts/999/edit").status_code == 404
    assert client.get("/staff/posts/999/delete").status_code == 404


# 2**31 is one past PostgreSQL's integer; the other is past SQLite's 64 bits.
@pytest.mark.parametrize("post_id", ["0", str(2**31), "99999999999999999999"])
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/staff/posts/{}/edit"),
        ("post", "/staff/posts/{}/edit"),
        ("post", "/staff/posts/{}/preview"),
        ("get", "/staff/posts/{}/delete"),
        ("post", "/staff/posts/{}/delete"),
    ],
)
def test_an_id_out_of_the_databases_range_is_404(editor, client, method, url, post_id):
    data = {**fields(), "csrf_token": csrf_token(client, NEW)} if method == "post" else None

    response = client.open(url.format(post_id), method=method.upper(), data=data)

    assert response.status_code == 404


# Publishing


def test_publish_now_shows_everywhere_at_once(editor, client):
    before = client.get("/posts/")
    submit(client, action="publish")
    slug = only_post().slug

    after = client.get("/posts/", headers={"If-None-Match": before.headers["ETag"]})

    assert after.status_code == 200
    assert "Solid-state batteries" in after.text
    assert client.get(f"/posts/{slug}").status_code == 200
    assert f"{SITE_URL}/posts/{slug}" in client.get("/feed.xml").text
    assert f"{SITE_URL}/posts/{slug}" in client.get("/sitemap.xml").text


def test_unpublish_takes_the_post_off_the_site(editor, client, make_post):
    post = make_post()
    assert client.get(f"/posts/{post.slug}").status_code == 200

    response = submit(client, f"/staff/posts/{post.id}/edit", slug=post.slug, action="unpublish")

    assert response.status_code == 303
    db.session.refresh(post)
    assert post.published_at is None
    assert client.get(f"/posts/{post.slug}").status_code == 404
    assert f"/posts/{post.slug}" not in client.get("/feed.xml").text
    assert f"/posts/{post.slug}" not in client.get("/sitemap.xml").text


def test_a_scheduled_post_stays_hidden_until_its_time(editor, client):
    moment = (utcnow() + timedelta(days=1)).replace(second=0, microsecond=0)

    response = submit(client, action="schedule", publish_at=utc_input(moment))

    post = only_post()
    assert response.status_code == 303
    assert post.published_at == moment
    assert "Scheduled: it goes live on" in client.get(response.location).text
    assert client.get(f"/posts/{post.slug}").status_code == 404
    assert post.slug not in client.get("/feed.xml").text

    post.published_at = utcnow() - timedelta(minutes=1)  # as if its time had come
    db.session.commit()

    assert client.get(f"/posts/{post.slug}").status_code == 200
    assert post.slug in client.get("/feed.xml").text


def test_saving_a_scheduled_post_keeps_or_moves_its_time(editor, client, make_post):
    moment = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    post = make_post(published_at=moment)
    url = f"/staff/posts/{post.id}/edit"
    assert f'value="{utc_input(moment)}"' in client.get(url).text

    submit(client, url, slug=post.slug, publish_at=utc_input(moment), title="Edited")
    db.session.refresh(post)
    assert (post.title, post.published_at) == ("Edited", moment)

    later = moment + timedelta(days=1)
    response = submit(client, url, slug=post.slug, publish_at=utc_input(later))
    db.session.refresh(post)
    assert post.published_at == later
    assert "Scheduled: it goes live on" in client.get(response.location).text


@pytest.mark.parametrize(
    ("publish_at", "message"),
    [
        (utc_input(utcnow() - timedelta(hours=1)), "Choose a time in the future (UTC)."),
        ("", "Choose the date and time (UTC) to publish the post."),
        ("next tuesday", "Not a valid datetime value."),
    ],
)
def test_scheduling_needs_a_future_time(editor, client, publish_at, message):
    response = submit(client, action="schedule", publish_at=publish_at)

    assert response.status_code == 422
    assert message in response.text
    assert post_count() == 0


# Preview


def test_preview_renders_the_article_exactly_as_the_public_page(editor, client, make_post):
    body = "Safe **text**.\n\n<script>alert(1)</script>\n\n[bad](javascript:alert(1))"
    post = make_post(title="Cells & costs", body_markdown=body, tags=["Energy Storage"])
    public = client.get(f"/posts/{post.slug}").text

    preview = submit(
        client,
        f"/staff/posts/{post.id}/preview",
        title=post.title,
        slug=post.slug,
        standfirst=post.standfirst,
        body_markdown=body,
        tag_names="Energy Storage",
        source_markdown=post.source_markdown,
    )

    assert preview.status_code == 200
    assert ARTICLE.search(preview.text).group() == ARTICLE.search(public).group()
    assert "<script>alert(1)" not in preview.text
    assert 'href="javascript:' not in preview.text
    assert preview.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in preview.text
    assert "no-store" in preview.headers["Cache-Control"]


def test_preview_needs_no_saved_post_and_saves_nothing(editor, client):
    response = submit(client, "/staff/posts/preview", title="Only an idea", standfirst="")

    assert response.status_code == 200
    assert "<h1>Only an idea</h1>" in response.text
    assert "Nothing on this page is saved" in response.text
    assert post_count() == 0


# Delete


def test_delete_asks_first_then_removes_the_post(editor, client, make_post):
    post = make_post(title="Going away")
    url = f"/staff/posts/{post.id}/delete"

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Delete “Going away”?" in confirm.text

    response = client.post(url, data={"csrf_token": csrf_token(client, url)})

    assert response.status_code == 303
    assert response.location == "/staff/posts/"
    assert post_count() == 0
    assert client.get(f"/posts/{post.slug}").status_code == 404
    assert "Deleted “Going away”." in client.get("/staff/posts/").text


# Cover images


def test_a_png_cover_is_stored_under_its_hash_and_served_safely(editor, client, uploads):
    image = png()

    response = client.post(
        NEW,
        data={
            **fields(cover_alt="Battery cells on a line"),
            "cover": (BytesIO(image), "../../my holiday.png"),
            "csrf_token": csrf_token(client, NEW),
        },
    )

    post = only_post()
    assert response.status_code == 303
    assert STORED_COVER.fullmatch(post.cover_image)
    assert post.cover_alt == "Battery cells on a line"
    name = post.cover_image.removeprefix("media/")
    assert stored(uploads) == {post.cover_image}
    served = client.get(f"/media/{name}")
    assert served.status_code == 200
    assert served.data == image
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Disposition"] == "inline"
    assert served.cache_control.public
    assert served.cache_control.max_age == 365 * 24 * 3600
    assert "Set-Cookie" not in served.headers
    served.close()


def test_cover_url_points_at_uploads_and_static_files(app):
    with app.test_request_context():
        assert cover_url("media/abc.png") == "/media/abc.png"
        assert cover_url("media/abc.png", external=True) == f"{SITE_URL}/media/abc.png"
        assert cover_url("img/covers/default.png").startswith("/static/img/covers/default.png?v=")
        assert (
            cover_url("img/covers/default.png", external=True)
            == f"{SITE_URL}/static/img/covers/default.png"
        )


def test_an_image_sent_with_an_error_is_not_kept_and_must_be_chosen_again(editor, client, uploads):
    response = client.post(
        NEW,
        data={
            **fields(),
            "cover": (BytesIO(png(1000, 525)), "c.png"),
            "csrf_token": csrf_token(client, NEW),
        },
    )

    assert response.status_code == 422
    assert "Describe the image for people who cannot see it" in response.text
    assert "Choose the image again: an image is kept only when the post is saved." in response.text
    assert stored(uploads) == set()

    response = post_with_cover(client, NEW, png(1000, 525))

    assert response.status_code == 303
    assert STORED_COVER.fullmatch(only_post().cover_image)


def test_a_rejected_edit_leaves_no_uploaded_file_behind(editor, client, uploads):
    post_with_cover(client, NEW, png(1000, 525))
    post = only_post()
    before = stored(uploads)
    assert len(before) == 3  # the cover and its WebP copies at 480 and 800 pixels

    response = post_with_cover(client, f"/staff/posts/{post.id}/edit", png(900, 480), title="")

    assert response.status_code == 422
    assert "Give the post a title." in response.text
    assert stored(uploads) == before
    db.session.refresh(post)
    assert f'src="/{post.cover_image}"' in response.text  # the saved cover is still shown


def test_a_rejected_upload_of_the_saved_cover_keeps_its_file(editor, client, uploads):
    post_with_cover(client, NEW, png(1000, 525))
    post = only_post()
    before = stored(uploads)

    response = post_with_cover(client, f"/staff/posts/{post.id}/edit", png(1000, 525), title="")

    assert response.status_code == 422
    assert stored(uploads) == before
    served = client.get(f"/{post.cover_image}")
    assert served.status_code == 200
    served.close()


def test_a_slug_taken_while_saving_removes_the_new_upload(
    editor, client, uploads, make_post, monkeypatch
):
    make_post(slug="taken")
    # As if another editor took the slug between the form's check and the commit.
    monkeypatch.setattr(PostForm, "validate_slug", lambda form, field: None)

    response = post_with_cover(client, NEW, png(1000, 525), slug="taken")

    assert response.status_code == 422
    assert "Another post already uses the address /posts/taken." in response.text
    assert stored(uploads) == set()


def bmp():
    buffer = BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "BMP")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (b"<script>alert(document.cookie)</script>", "cover.png", "not an image we accept"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "cover.svg",
            "not an image we accept",
        ),
        (bmp(), "cover.png", "not an image we accept"),
        (png()[:-5], "cover.png", "damaged or incomplete"),
    ],
    ids=["script", "svg", "bmp", "truncated"],
)
def test_a_file_that_is_not_an_accepted_image_is_refused(
    editor, client, uploads, content, filename, message
):
    response = client.post(
        NEW,
        data={
            **fields(cover_alt="x"),
            "cover": (BytesIO(content), filename),
            "csrf_token": csrf_token(client, NEW),
        },
    )

    assert response.status_code == 422
    assert message in response.text
    assert 'id="cover-error"' in response.text
    assert post_count() == 0
    assert not Path(uploads).exists() or not stored(uploads)


def test_an_image_over_the_size_limit_is_refused_beside_the_field(app, editor, client):
    app.config["MAX_COVER_BYTES"] = 2000
    image = png(200, 200, noise=True)
    assert len(image) > 2000

    response = client.post(
        NEW,
        data={
            **fields(cover_alt="x"),
            "cover": (BytesIO(image), "big.png"),
            "csrf_token": csrf_token(client, NEW),
        },
    )

    assert response.status_code == 422
    assert "The image is too large: the limit is 0.00191 MB." in response.text
    assert post_count() == 0


def test_a_huge_upload_gets_a_friendly_413_page(editor, client):
    huge = FileStorage(BytesIO(b"\0" * (7 * 1024 * 1024)), "huge.png", "cover")
    # Encoded in memory: the test client would spool a body this size to an unclosed file.
    boundary, body = encode_multipart(
        {**fields(cover_alt="x"), "cover": huge, "csrf_token": csrf_token(client, NEW)}
    )

    response = client.post(NEW, data=body, content_type=f"multipart/form-data; boundary={boundary}")

    assert response.status_code == 413
    assert "That upload is too large" in response.text
    assert "A cover image can be up to 5 MB," in response.text
    assert "no-store" in response.headers["Cache-Control"]
    assert post_count() == 0


def post_with_cover(client, url, image, **overrides):
    data = {
        **fields(cover_alt="A diagram", **overrides),
        "cover": (BytesIO(image), "cover.png"),
        "csrf_token": csrf_token(client, NEW),
    }
    return client.post(url, data=data)


def stored(folder):
    return {f"media/{path.name}" for path in Path(folder).iterdir()}


def test_a_cover_file_goes_when_no_post_uses_it_any_more(editor, client, uploads):
    post_with_cover(client, NEW, png(10, 10), title="One")
    post_with_cover(client, NEW, png(10, 10), title="Two")
    one, two = db.session.scalars(select(Post).order_by(Post.id)).all()
    shared = one.cover_image
    assert two.cover_image == shared

    post_with_cover(client, f"/staff/posts/{one.id}/edit", png(20, 20), title="One")
    db.session.refresh(one)
    assert stored(uploads) == {shared, one.cover_image}  # the shared file is still in use

    client.post(f"/staff/posts/{two.id}/delete", data={"csrf_token": csrf_token(client, NEW)})
    assert stored(uploads) == {one.cover_image}

    submit(client, f"/staff/posts/{one.id}/edit", title="One", remove_cover="y")
    db.session.refresh(one)
    assert one.cover_image is None
    assert stored(uploads) == set()


def test_a_cover_removed_by_another_editor_before_the_commit_is_stored_again(
    editor, client, uploads, monkeypatch
):
    """Two editors upload the same image (one shared file); the other's edit is rejected and
    removes it, since no saved post uses it yet, just before this post's commit."""
    save = services.save

    def save_after_another_editor_discarded(post, fields, publication):
        discard_unused(fields["cover_image"])
        assert stored(uploads) == set()
        return save(post, fields, publication)

    monkeypatch.setattr(services, "save", save_after_another_editor_discarded)

    response = post_with_cover(client, NEW, png(1000, 525), action="publish")

    assert response.status_code == 303
    post = only_post()
    key = post.cover_image.removeprefix("media/").removesuffix(".png")
    assert stored(uploads) == {post.cover_image, f"media/{key}-480.webp", f"media/{key}-800.webp"}
    served = client.get(f"/{post.cover_image}")
    assert served.status_code == 200 and served.data == png(1000, 525)
    served.close()


def test_a_cover_that_cannot_be_stored_again_leaves_the_post_saved_and_says_so(
    editor, client, uploads, monkeypatch
):
    save = services.save

    def save_then_fail_to_store_again(post, fields, publication):
        discard_unused(fields["cover_image"])
        monkeypatch.setattr(uploads_module, "store_cover", refuse_to_store)
        return save(post, fields, publication)

    def refuse_to_store(data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(services, "save", save_then_fail_to_store_again)

    response = post_with_cover(client, NEW, png(1000, 525), action="publish")

    assert response.status_code == 303
    assert only_post().published_at is not None
    page = client.get(response.headers["Location"]).text
    assert "Published: readers can see it now." in page
    assert "The cover image could not be stored: choose it again." in page


def test_an_uploaded_cover_gets_webp_copies_that_go_with_it(editor, client, uploads):
    post_with_cover(client, NEW, png(1000, 525), action="publish")
    post = only_post()
    key = post.cover_image.removeprefix("media/").removesuffix(".png")
    assert stored(uploads) == {post.cover_image, f"media/{key}-480.webp", f"media/{key}-800.webp"}

    page = client.get(f"/posts/{post.slug}").text
    assert f'srcset="/media/{key}-480.webp 480w, /media/{key}-800.webp 800w"' in page
    assert f'src="/media/{key}.png"' in page

    client.post(f"/staff/posts/{post.id}/delete", data={"csrf_token": csrf_token(client, NEW)})
    assert stored(uploads) == set()


def test_media_serves_only_stored_names(client):
    assert client.get("/media/nothing.png").status_code == 404
    assert client.get(f"/media/{'a' * 64}.png").status_code == 404
    assert client.get(f"/media/{'a' * 64}.svg").status_code == 404


# Methods and tokens


@pytest.mark.parametrize(
    "url", ["/staff/posts/preview", "/staff/posts/{id}/preview", "/staff/posts/{id}/delete"]
)
def test_actions_refuse_get_or_only_show_a_page(editor, client, make_post, url):
    post = make_post()
    response = client.get(url.format(id=post.id))
    if url.endswith("delete"):
        assert response.status_code == 200  # the confirmation page; deleting needs a POST
        assert post_count() == 1
    else:
        assert response.status_code == 405


def test_a_post_without_a_csrf_token_changes_nothing(editor, client, make_post):
    post = make_post()

    assert client.post(NEW, data=fields()).status_code == 400
    assert client.post(f"/staff/posts/{post.id}/delete").status_code == 400
    assert (
        client.post(f"/staff/posts/{post.id}/edit", data=fields(action="unpublish")).status_code
        == 400
    )
    assert post_count() == 1
    db.session.refresh(post)
    assert post.published_at is not None


def test_an_editor_may_delete_posts(editor, client, make_post):
    post = make_post()

    response = client.post(
        f"/staff/posts/{post.id}/delete", data={"csrf_token": csrf_token(client, NEW)}
    )

    assert response.status_code == 303
    assert post_count() == 0


# Malformed submissions: a refusal beside the field, never a 500.


def test_publishing_without_a_body_field_is_an_error_not_a_500(editor, client):
    data = {"title": "Hello", "action": "publish", "csrf_token": csrf_token(client, NEW)}

    response = client.post(NEW, data=data)

    assert response.status_code == 422
    assert "Write the body of the post before publishing it." in response.text
    assert post_count() == 0


def stored_text(post):
    return [post.slug, post.title, post.standfirst, post.body_markdown] + [
        tag.name for tag in post.tags
    ]


@pytest.mark.parametrize("field", ["title", "slug", "standfirst", "tag_names", "body_markdown"])
def test_a_nul_byte_in_a_text_field_is_refused_or_dropped_not_a_500(editor, client, field):
    response = submit(client, **{field: f"Before\x00after {fields()[field]}"})

    assert response.status_code in {303, 422}
    for post in db.session.scalars(select(Post)):
        assert not any("\x00" in text for text in stored_text(post)), field


def test_a_title_loses_bidi_controls_and_zero_width_characters(editor, client):
    response = submit(client, title="\u202eSolid\u200b-state\ufeff batteries\u2066\u200f")

    assert response.status_code == 303
    assert only_post().title == "Solid-state batteries"


def test_a_title_of_invisible_characters_only_is_an_empty_title(editor, client):
    response = submit(client, title="\u200b\u2060\ufeff")

    assert response.status_code == 422
    assert "Give the post a title." in response.text
    assert post_count() == 0
