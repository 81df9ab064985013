"""The post editor's form: every field a post has, its publishing choice, and its checks."""

import logging
from datetime import UTC
from functools import partial

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    HiddenField,
    StringField,
    TextAreaField,
)
from wtforms.validators import AnyOf, DataRequired, Length, ValidationError

from app.posts import services, uploads
from app.types import utcnow
from app.validation import drop_control_characters, drop_invisible, single_line, strip

log = logging.getLogger(__name__)

ACTIONS = ("save", "publish", "schedule", "unpublish")
MAX_TAGS = 12
MAX_TAG_LENGTH = 80


class UTCDateTimeField(DateTimeLocalField):
    """A datetime-local input read as UTC; left empty it is None, not an error."""

    def process_formdata(self, valuelist):
        if valuelist and valuelist[0].strip():
            super().process_formdata(valuelist)
            self.data = self.data.replace(tzinfo=UTC)


class PostForm(FlaskForm):
    # Validation runs in declaration order: cover is stored before cover_alt is checked.
    title = StringField(
        "Title",
        validators=[DataRequired("Give the post a title."), Length(max=200), single_line()],
        filters=[drop_invisible, strip],
    )
    slug = StringField("Slug", validators=[single_line()], filters=[strip])
    standfirst = TextAreaField(
        "Standfirst", validators=[Length(max=1000), single_line()], filters=[strip]
    )
    # PostgreSQL refuses NUL in text: control characters in the body are dropped.
    body_markdown = TextAreaField(
        "Body", validators=[Length(max=200_000)], filters=[drop_control_characters]
    )
    tag_names = StringField("Tags", validators=[Length(max=1000), single_line()])
    source_markdown = StringField(
        "Source", validators=[Length(max=500), single_line()], filters=[strip]
    )
    meta_description = TextAreaField(
        "Meta description", validators=[Length(max=300), single_line()], filters=[strip]
    )
    cover = FileField("Image file", render_kw={"accept": ",".join(uploads.MIMETYPES.values())})
    remove_cover = BooleanField("Remove the cover image")
    cover_alt = StringField(
        "Cover image description", validators=[Length(max=300), single_line()], filters=[strip]
    )
    publish_at = UTCDateTimeField(
        "Publish at (UTC)", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
    )
    action = HiddenField(default="save", validators=[AnyOf(ACTIONS)])

    def __init__(self, *args, post=None, **kwargs):
        super().__init__(*args, obj=post, **kwargs)
        self.post = post
        self.new_cover = None  # the image this submission uploaded, once stored
        self.new_cover_data = None
        if post is not None and not self.is_submitted():
            self.tag_names.data = ", ".join(tag.name for tag in post.tags)
            if services.status(post) == "scheduled":
                self.publish_at.data = post.published_at

    def validate_slug(self, field):
        field.data = services.slugify(field.data or self.title.data or "")
        if not field.data:
            raise ValidationError("Type a slug: letters or digits, joined by hyphens.")
        other = services.post_by_slug(field.data)
        if other is not None and other is not self.post:
            raise ValidationError(slug_taken_message(field.data))

    def validate_standfirst(self, field):
        if self.goes_public() and not field.data:
            raise ValidationError("Write a standfirst: readers see it under the title.")

    def validate_body_markdown(self, field):
        if self.goes_public() and not (field.data or "").strip():
            raise ValidationError("Write the body of the post before publishing it.")

    def validate_tag_names(self, field):
        names = self.tags()
        if len(names) > MAX_TAGS:
            raise ValidationError(f"Use at most {MAX_TAGS} tags.")
        if any(len(name) > MAX_TAG_LENGTH for name in names):
            raise ValidationError(f"Keep each tag under {MAX_TAG_LENGTH} characters.")

    def validate_cover(self, field):
        if field.data:
            try:
                self.new_cover_data = uploads.read_upload(field.data.stream)
                self.new_cover = uploads.store_cover(self.new_cover_data)
            except uploads.InvalidImage as error:
                raise ValidationError(str(error)) from None

    def validate_cover_alt(self, field):
        if self.cover_image() and not field.data:
            raise ValidationError(
                "Describe the image for people who cannot see it, e.g. “Battery cells on a "
                "production line”."
            )

    def validate_publish_at(self, field):
        if self.intent() != "schedule":
            return
        if field.data is None:
            raise ValidationError("Choose the date and time (UTC) to publish the post.")
        if field.data <= utcnow():
            raise ValidationError(
                "Choose a time in the future (UTC). To publish straight away, use Publish now."
            )

    def keep_new_cover(self):
        """After the post is saved: store the image again if it went missing meanwhile. Files
        are shared by content, so another editor's rejected upload or deleted post may have
        removed it between this submission's upload and its commit. False if it could not
        be written: the post is saved all the same."""
        if self.new_cover is None or uploads.is_stored_cover(self.new_cover):
            return True
        try:
            uploads.store_cover(self.new_cover_data)
        except OSError:
            log.exception("Could not store the cover %s again", self.new_cover)
            return False
        return True

    def discard_new_cover(self):
        """Remove the image this submission stored: the post was not saved, and a file no
        post uses would stay on disk for good. The editor has to choose it again."""
        if self.new_cover is None:
            return
        uploads.discard_unused(self.new_cover)
        self.new_cover = None
        self.cover.errors.append(
            "Choose the image again: an image is kept only when the post is saved."
        )

    def intent(self):
        """The action asked for; saving a scheduled post with a new time reschedules it."""
        if (
            self.action.data == "save"
            and self.post is not None
            and services.status(self.post) == "scheduled"
            and self.publish_at.data != self.post.published_at
        ):
            return "schedule"
        return self.action.data

    def goes_public(self):
        if self.intent() in ("publish", "schedule"):
            return True
        return self.intent() == "save" and self.post is not None and bool(self.post.published_at)

    def tags(self):
        return [name.strip() for name in (self.tag_names.data or "").split(",") if name.strip()]

    def cover_image(self):
        """The cover after this submission: a new upload, none if removed, else the saved one."""
        if self.new_cover:
            return self.new_cover
        if self.remove_cover.data or self.post is None:
            return None
        return self.post.cover_image

    def post_fields(self):
        """The editor's values as services.apply_fields expects them."""
        cover = self.cover_image()
        return {
            "slug": services.slugify(self.slug.data or self.title.data or ""),
            "title": self.title.data or "",
            "standfirst": self.standfirst.data or "",
            "body_markdown": self.body_markdown.data or "",
            "source_markdown": self.source_markdown.data or "",
            "meta_description": self.meta_description.data or "",
            "cover_image": cover,
            "cover_alt": (self.cover_alt.data or "") if cover else "",
            "tags": self.tags(),
        }

    def publication(self):
        """The change of publication this submission asks for, as a services function."""
        if self.intent() == "schedule":
            return partial(services.schedule, moment=self.publish_at.data)
        return {"publish": services.publish, "unpublish": services.unpublish}.get(self.intent())


def slug_taken_message(slug):
    return f"Another post already uses the address /posts/{slug}. Choose another slug."


class DeleteForm(FlaskForm):
    """Only a CSRF token: the POST itself is the confirmation."""
