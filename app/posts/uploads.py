"""Cover images uploaded by staff: checked by content, stored by content hash, served from /media/.

Post.cover_image holds either a file under static/ ("img/covers/x.png", the demo posts) or an
upload ("media/<sha256>.<ext>"); the template global cover_url() turns either into a URL, and
cover_srcset() lists its WebP copies (app.posts.variants), kept in the upload folder too.
"""

import hashlib
import re
from io import BytesIO
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory, url_for
from PIL import Image, UnidentifiedImageError
from sqlalchemy import func, select

from app.assets import asset_url, current_version
from app.extensions import db
from app.posts import variants
from app.posts.models import Post

blueprint = Blueprint("media", __name__)

MEDIA_PREFIX = "media/"
MAX_COVER_PIXELS = 40_000_000
ONE_YEAR = 365 * 24 * 3600
# Pillow's name for each accepted format -> (file extension, Content-Type).
FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
}
MIMETYPES = dict(FORMATS.values())
NOT_AN_IMAGE = "That file is not an image we accept. Upload a PNG, JPEG, WebP or GIF."
TOO_MANY_PIXELS = "That image has too many pixels. Scale it down, e.g. to 2400 by 1260 pixels."
STORED_NAME = re.compile(r"[0-9a-f]{64}\.(png|jpg|webp|gif)")


class InvalidImage(ValueError):
    """The upload is not an image this site accepts; the message tells the editor why."""


def upload_folder():
    return Path(current_app.config["UPLOAD_FOLDER"])


def max_cover_bytes():
    return current_app.config["MAX_COVER_BYTES"]


def megabytes(size):
    return f"{size / (1024 * 1024):.3g} MB"


def read_upload(stream):
    """The uploaded file's bytes, refused when over MAX_COVER_BYTES."""
    data = stream.read(max_cover_bytes() + 1)
    if len(data) > max_cover_bytes():
        raise InvalidImage(f"The image is too large: the limit is {megabytes(max_cover_bytes())}.")
    return data


def store_cover(data):
    """Check an uploaded image and store what of it is missing (the file, its WebP copies);
    return its Post.cover_image value."""
    extension = image_extension(data)
    key = hashlib.sha256(data).hexdigest()
    path = upload_folder() / f"{key}.{extension}"
    if not path.exists():
        with variants.replacing(path) as partial:
            partial.write_bytes(data)
    variants.write_variants(data, upload_folder(), key)
    return MEDIA_PREFIX + path.name


def image_extension(data):
    """The extension for these bytes if Pillow reads them as a PNG, JPEG, WebP or GIF image."""
    try:
        with Image.open(BytesIO(data)) as image:
            kind, pixels = image.format, image.width * image.height
            image.verify()
    except UnidentifiedImageError:
        raise InvalidImage(NOT_AN_IMAGE) from None
    except Image.DecompressionBombError:
        raise InvalidImage(TOO_MANY_PIXELS) from None
    except (OSError, SyntaxError, ValueError):
        raise InvalidImage("That image is damaged or incomplete. Export it again.") from None
    if kind not in FORMATS:
        raise InvalidImage(NOT_AN_IMAGE)
    if pixels > MAX_COVER_PIXELS:
        raise InvalidImage(TOO_MANY_PIXELS)
    return FORMATS[kind][0]


def is_stored_cover(value):
    """True if value names an upload that exists (a hidden form field may have been altered)."""
    if not value or not value.startswith(MEDIA_PREFIX):
        return False
    name = value.removeprefix(MEDIA_PREFIX)
    return bool(STORED_NAME.fullmatch(name)) and (upload_folder() / name).is_file()


def discard_unused(value):
    """Delete an uploaded cover no post uses any more (content-hashed files can be shared),
    with its WebP copies."""
    if not is_stored_cover(value):
        return
    users = db.session.scalar(select(func.count(Post.id)).where(Post.cover_image == value))
    if not users:
        # Files are shared by content: an editor saving a post with this image right now
        # stores it again after the commit (PostForm.keep_new_cover), which narrows the race
        # to the moment between the count above and these deletions.
        (upload_folder() / value.removeprefix(MEDIA_PREFIX)).unlink(missing_ok=True)
        variants.remove_variants(upload_folder(), cover_key(value))


def cover_key(value):
    """The content hash that names a cover's WebP copies (None for a missing static file)."""
    if value.startswith(MEDIA_PREFIX):
        return value.removeprefix(MEDIA_PREFIX).partition(".")[0]
    return current_version(value)


def cover_source(value):
    if value.startswith(MEDIA_PREFIX):
        return upload_folder() / value.removeprefix(MEDIA_PREFIX)
    return Path(current_app.static_folder) / value


def make_variants(value):
    """Write the WebP copies a cover lacks; False if its file is missing or is not an image."""
    key, source = cover_key(value), cover_source(value)
    if key is None or not source.is_file():
        return False
    try:
        variants.write_variants(source.read_bytes(), upload_folder(), key)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return True


@blueprint.app_template_global()
def cover_srcset(value):
    """The srcset of a cover's WebP copies, or "" when it has none (the <img> then stands)."""
    key = cover_key(value)
    if key is None:
        return ""
    return ", ".join(
        f"{url_for('media.cover', name=variants.variant_name(key, width))} {width}w"
        for width in variants.existing_widths(upload_folder(), key)
    )


@blueprint.app_template_global()
def cover_url(value, external=False):
    """URL of a cover image: an upload under /media/ or a file under static/."""
    if value.startswith(MEDIA_PREFIX):
        url = url_for("media.cover", name=value.removeprefix(MEDIA_PREFIX))
    elif external:
        url = url_for("static", filename=value)
    else:
        return asset_url(value)
    return current_app.config["SITE_URL"] + url if external else url


@blueprint.get("/media/<name>")
def cover(name):
    response = send_from_directory(upload_folder(), name, mimetype=mimetype(name), max_age=ONE_YEAR)
    # The name is the content's hash: it never changes, so it can be cached for good.
    response.cache_control.public = True
    response.cache_control.immutable = True
    response.headers["Content-Disposition"] = "inline"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def mimetype(name):
    """The Content-Type of a stored cover or WebP copy; 404 for any other name."""
    if match := STORED_NAME.fullmatch(name):
        return MIMETYPES[match.group(1)]
    if variants.VARIANT_NAME.fullmatch(name):
        return "image/webp"
    abort(404)
