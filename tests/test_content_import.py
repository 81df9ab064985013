import sqlalchemy as sa

from app.extensions import db
from app.posts.models import Post, Tag
from tests.conftest import csrf_token

GOOD_POST = """---
title: "A good post"
slug: a-good-post
standfirst: "Why it matters."
published: 2024-03-01T09:00:00Z
tags: [Energy Storage, Batteries]
source: "[Wire](https://wire.example)"
---
Body with **bold** text.
"""


def import_from(runner, directory, *options):
    return runner.invoke(args=["content", "import", str(directory), *options])


def test_demo_content_imports_and_is_idempotent(runner, app):
    first = runner.invoke(args=["content", "import"])
    assert first.exit_code == 0, first.output
    posts = db.session.scalars(sa.select(Post)).all()
    assert len(posts) >= 5
    slugs = {post.slug for post in posts}
    assert "casip-solid-state-battery-consortium" in slugs
    assert all(post.is_demo and post.body_html and post.tags for post in posts)
    stamps = {post.slug: post.updated_at for post in posts}

    second = runner.invoke(args=["content", "import"])
    assert second.exit_code == 0
    assert f"0 created, 0 updated, 0 unchanged, {len(posts)} skipped" in second.output
    db.session.expire_all()
    assert {post.slug: post.updated_at for post in db.session.scalars(sa.select(Post))} == stamps


def post_named(slug):
    db.session.expire_all()
    return db.session.scalars(sa.select(Post).where(Post.slug == slug)).one()


def test_an_edited_file_updates_its_post_only_when_asked(runner, tmp_path):
    (tmp_path / "good.md").write_text(GOOD_POST)
    (tmp_path / "other.md").write_text(GOOD_POST.replace("a-good-post", "other-post"))
    assert import_from(runner, tmp_path).exit_code == 0
    (tmp_path / "good.md").write_text(GOOD_POST.replace("**bold**", "*changed*"))

    plain = import_from(runner, tmp_path)
    assert "0 created, 0 updated, 0 unchanged, 2 skipped, 0 refused, 0 failed." in plain.output
    assert "--update updates them" in plain.output
    assert "<strong>bold</strong>" in post_named("a-good-post").body_html

    result = import_from(runner, tmp_path, "--update")

    assert result.exit_code == 0, result.output
    assert "0 created, 1 updated, 1 unchanged, 0 skipped, 0 refused, 0 failed." in result.output
    post = post_named("a-good-post")
    assert "<em>changed</em>" in post.body_html
    assert [tag.name for tag in post.tags] == ["Batteries", "Energy Storage"]
    assert db.session.scalar(sa.select(sa.func.count(Tag.id))) == 2


def test_broken_front_matter_names_the_file_and_imports_the_rest(runner, tmp_path):
    (tmp_path / "a-broken.md").write_text("---\ntitle: [unclosed\nslug: x\n---\nBody\n")
    (tmp_path / "b-missing.md").write_text("---\ntitle: No slug here\n---\nBody\n")
    (tmp_path / "c-bad-date.md").write_text(GOOD_POST.replace("2024-03-01T09:00:00Z", "soon"))
    (tmp_path / "d-good.md").write_text(GOOD_POST)

    result = import_from(runner, tmp_path)

    assert result.exit_code == 1
    assert "1 created, 0 updated, 0 unchanged, 0 skipped, 0 refused, 3 failed." in result.output
    assert "a-broken.md: front matter is not valid YAML" in result.output
    assert "b-missing.md: front matter lacks slug, standfirst, published" in result.output
    assert "c-bad-date.md: published is not a date: 'soon'" in result.output
    assert db.session.scalars(sa.select(Post.slug)).all() == ["a-good-post"]


def test_missing_directory_is_a_usage_error(runner, tmp_path):
    result = import_from(runner, tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_a_restart_keeps_web_edits_and_an_update_refuses_to_overwrite_them(runner, client, editor):
    assert runner.invoke(args=["content", "import"]).exit_code == 0
    post = post_named("casip-solid-state-battery-consortium")
    edit = submit_edit(client, post, title="Edited by staff in the web editor")
    assert edit.status_code == 303, edit.text

    restart = runner.invoke(args=["content", "import"])  # what make run does on every start
    assert restart.exit_code == 0, restart.output
    assert post_named(post.slug).title == "Edited by staff in the web editor"

    update = runner.invoke(args=["content", "import", "--update"])

    assert update.exit_code == 1
    assert " 1 refused, 0 failed." in update.output
    assert f"{post.slug}: not updated from its file: it was changed in the web editor on " in (
        update.output
    )
    assert post_named(post.slug).title == "Edited by staff in the web editor"


def test_an_edit_of_the_tags_alone_counts_as_a_web_edit(runner, client, editor):
    assert runner.invoke(args=["content", "import"]).exit_code == 0
    post = post_named("casip-solid-state-battery-consortium")
    assert submit_edit(client, post, tag_names="Edited Tag").status_code == 303
    db.session.expire_all()  # the command runs in this test's session; a real one starts afresh

    update = runner.invoke(args=["content", "import", "--update"])

    assert update.exit_code == 1
    assert f"{post.slug}: not updated from its file: it was changed in the web editor" in (
        update.output
    )
    assert [tag.name for tag in post_named(post.slug).tags] == ["Edited Tag"]


def test_an_update_refuses_a_post_written_in_the_web_editor(runner, make_post, tmp_path):
    make_post(slug="a-good-post", title="Written in the editor")
    (tmp_path / "good.md").write_text(GOOD_POST)

    result = import_from(runner, tmp_path, "--update")

    assert result.exit_code == 1
    assert "a-good-post: not updated from its file: it has no import on record" in result.output
    assert post_named("a-good-post").title == "Written in the editor"


def submit_edit(client, post, **changes):
    """Save the post through the staff editor, as a member of staff would."""
    url = f"/staff/posts/{post.id}/edit"
    data = {
        "title": post.title,
        "slug": post.slug,
        "standfirst": post.standfirst,
        "body_markdown": post.body_markdown,
        "tag_names": ", ".join(tag.name for tag in post.tags),
        "source_markdown": post.source_markdown,
        "meta_description": post.meta_description,
        "cover_alt": post.cover_alt,
        "publish_at": "",
        "action": "save",
        "csrf_token": csrf_token(client, url),
        **changes,
    }
    return client.post(url, data=data)
