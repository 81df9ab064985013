"""Smaller WebP copies of a cover, so a phone loads a 480-pixel WebP rather than a 1200-pixel PNG.

A copy is named after its source's content hash and its width ("<hash>-800.webp"): its bytes
never change, so it is served as immutable, and two posts with the same cover share copies.
"""

import os
import re
import secrets
from contextlib import contextmanager
from io import BytesIO

from PIL import Image, ImageOps

WIDTHS = (480, 800, 1200)
WEBP_OPTIONS = {"quality": 80, "method": 4}
VARIANT_NAME = re.compile(r"[0-9a-f]{16,64}-(?:480|800|1200)\.webp")


def variant_name(key, width):
    return f"{key}-{width}.webp"


def write_variants(source, folder, key):
    """Write the copies of the image `source` (bytes) that `folder` lacks. Images narrower than
    a width get no copy at that width (never scaled up); animations get none (a WebP copy of
    the first frame would stop them)."""
    missing = [width for width in WIDTHS if not (folder / variant_name(key, width)).exists()]
    if not missing:
        return
    with Image.open(BytesIO(source)) as image:
        if getattr(image, "n_frames", 1) > 1:
            return
        upright = ImageOps.exif_transpose(image)
        for width in missing:
            if width <= upright.width:
                save(resized(upright, width), folder / variant_name(key, width))


def resized(image, width):
    mode = "RGBA" if image.has_transparency_data else "RGB"
    height = round(image.height * width / image.width)
    return image.convert(mode).resize((width, height), Image.Resampling.LANCZOS)


def save(image, path):
    with replacing(path) as partial:
        image.save(partial, "WEBP", **WEBP_OPTIONS)


@contextmanager
def replacing(path):
    """A hidden name beside path to write to; once written it takes path's place in one step,
    so a reader never sees half a file (and backups skip names starting with a dot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def existing_widths(folder, key):
    return [width for width in WIDTHS if (folder / variant_name(key, width)).is_file()]


def remove_variants(folder, key):
    for width in WIDTHS:
        (folder / variant_name(key, width)).unlink(missing_ok=True)
