import sqlalchemy as sa

from app.extensions import db
from app.posts.models import Post, Tag

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


def import_from(runner, directory):
    return runner.invoke(args=["content", "import", str(directory)])


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
    assert f"0 created, 0 updated, {len(posts)} unchanged" in second.output
    db.session.expire_all()
    assert {post.slug: post.updated_at for post in db.session.scalars(sa.select(Post))} == stamps


def test_editing_a_file_updates_that_post_only(runner, tmp_path):
    (tmp_path / "good.md").write_text(GOOD_POST)
    (tmp_path / "other.md").write_text(GOOD_POST.replace("a-good-post", "other-post"))
    assert import_from(runner, tmp_path).exit_code == 0

    (tmp_path / "good.md").write_text(GOOD_POST.replace("**bold**", "*changed*"))
    result = import_from(runner, tmp_path)

    assert "0 created, 1 updated, 1 unchanged" in result.output
    post = db.session.scalars(sa.select(Post).where(Post.slug == "a-good-post")).one()
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
    assert "1 created, 0 updated, 0 unchanged, 3 failed." in result.output
    assert "a-broken.md: front matter is not valid YAML" in result.output
    assert "b-missing.md: front matter lacks slug, standfirst, published" in result.output
    assert "c-bad-date.md: published is not a date: 'soon'" in result.output
    assert db.session.scalars(sa.select(Post.slug)).all() == ["a-good-post"]


def test_missing_directory_is_a_usage_error(runner, tmp_path):
    result = import_from(runner, tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "does not exist" in result.output
