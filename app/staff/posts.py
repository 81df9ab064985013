"""The post editor: list, create, edit, preview, publish, schedule, unpublish and delete."""

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from app import dates
from app.extensions import db
from app.posts import queries, services, uploads
from app.posts.models import Post
from app.posts.queries import LATEST_POSTS, RELATED_POSTS
from app.staff.post_forms import DeleteForm, PostForm, slug_taken_message

blueprint = Blueprint("posts", __name__, url_prefix="/posts")

POSTS_PER_PAGE = 50
# Room for the editor's text fields (the body can be long) beside the largest cover image.
TEXT_ALLOWANCE = 1024 * 1024


@blueprint.url_value_preprocessor
def limit_request_size(endpoint, values):
    """Cap the request body before anything reads it.

    CSRFProtect reads the form in an app-wide before_request, ahead of this blueprint's own
    before_request functions; URL value preprocessors run before both.
    """
    request.max_content_length = uploads.max_cover_bytes() + TEXT_ALLOWANCE
    request.max_form_memory_size = TEXT_ALLOWANCE


@blueprint.errorhandler(RequestEntityTooLarge)
def too_large(error):
    return render_template("staff/posts/too_large.html"), 413


@blueprint.context_processor
def helpers():
    return {
        "post_status": services.status,
        "max_cover_size": uploads.megabytes(uploads.max_cover_bytes()),
    }


@blueprint.get("/")
def index():
    posts = queries.every_post_page(POSTS_PER_PAGE)
    return render_template("staff/posts/index.html", posts=posts)


@blueprint.route("/new", methods=["GET", "POST"])
def create():
    form = PostForm()
    if not form.validate_on_submit():
        return editor(form)
    return save(form, Post())


@blueprint.route("/<id:post_id>/edit", methods=["GET", "POST"])
def edit(post_id):
    form = PostForm(post=db.get_or_404(Post, post_id))
    if not form.validate_on_submit():
        return editor(form)
    return save(form, form.post)


def editor(form):
    if form.errors:
        form.discard_new_cover()
    status = services.status(form.post) if form.post else "draft"
    page = render_template("staff/posts/editor.html", form=form, post=form.post, status=status)
    return page, 422 if form.errors else 200


def save(form, post):
    intent = form.intent()  # read before saving: it compares the form with the saved post
    try:
        services.save(post, form.post_fields(), form.publication())
    except services.SlugTaken as taken:
        form.slug.errors.append(slug_taken_message(str(taken)))
        return editor(form)
    flash(saved_message(post, intent), "success")
    if not form.keep_new_cover():
        flash("The cover image could not be stored: choose it again.", "error")
    return redirect(url_for(".edit", post_id=post.id), code=303)


def saved_message(post, action):
    if action == "publish":
        return "Published: readers can see it now."
    if action == "schedule":
        return f"Scheduled: it goes live on {dates.stamp(post.published_at)}."
    if action == "unpublish":
        return "Unpublished: readers can no longer see it. It is a draft again."
    return "Saved." if post.published_at else "Draft saved."


@blueprint.post("/preview")
@blueprint.post("/<id:post_id>/preview")
def preview(post_id=None):
    """The public post page for the editor's current text, unsaved and never indexed."""
    saved = db.get_or_404(Post, post_id) if post_id else None
    form = PostForm(post=saved)
    related = queries.related(saved, RELATED_POSTS) if saved else []
    page = render_template(
        "staff/posts/preview.html",
        post=services.unsaved_post(form.post_fields(), like=saved),
        related=related,
        latest=queries.latest(LATEST_POSTS, exclude=[saved, *related] if saved else ()),
    )
    response = make_response(page)
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


@blueprint.get("/<id:post_id>/delete")
def confirm_delete(post_id):
    post = db.get_or_404(Post, post_id)
    return render_template("staff/posts/delete.html", post=post, form=DeleteForm())


@blueprint.post("/<id:post_id>/delete")
def delete(post_id):
    post = db.get_or_404(Post, post_id)
    title = post.title
    services.delete(post)
    flash(f"Deleted “{title}”.", "success")
    return redirect(url_for(".index"), code=303)
