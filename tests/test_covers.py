"""WebP copies of covers: made at import and upload, offered in <picture>, served for good."""

import re
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from app.extensions import db
from app.posts.models import Post
from app.posts.variants import WIDTHS, write_variants
from tests.conftest import ROOT

PICTURE = re.compile(r"<picture>.*?</picture>", re.DOTALL)
SOURCE = re.compile(r'<source type="image/webp" srcset="([^"]+)" sizes="([^"]+)">')
IMG_SRC = re.compile(r'<img[^>]* src="([^"]+)"')
STATIC = ROOT / "static"


def copies(folder):
    return sorted(path.name for path in Path(folder).glob("*.webp"))


def used_covers():
    return set(db.session.scalars(sa.select(Post.cover_image).where(Post.cover_image.is_not(None))))


def srcset_entries(srcset):
    return [entry.rsplit(" ", 1) for entry in srcset.split(", ")]


def test_the_import_makes_webp_copies_of_each_cover_at_three_widths(runner, app):
    result = runner.invoke(args=["content", "import"])

    assert result.exit_code == 0, result.output
    folder = Path(app.config["UPLOAD_FOLDER"])
    names = copies(folder)
    covers = used_covers()
    assert len(covers) > 1
    assert len(names) == len(covers) * len(WIDTHS)
    for name in names:
        width = int(name.removesuffix(".webp").rsplit("-", 1)[1])
        with Image.open(folder / name) as image:
            assert image.format == "WEBP"
            assert image.size == (width, round(width * 630 / 1200))
    phone_copies = sum((folder / name).stat().st_size for name in names if "-480." in name)
    assert phone_copies < sum((STATIC / cover).stat().st_size for cover in covers) / 5


def test_a_post_page_offers_the_copies_with_the_original_as_fallback(client, demo_content):
    post = next(post for post in demo_content if post.cover_image)

    page = client.get(f"/posts/{post.slug}").text

    picture = PICTURE.search(page.split('<article class="post">', 1)[1]).group()
    srcset, sizes = SOURCE.search(picture).groups()
    assert sizes == "(min-width: 64em) 60rem, 100vw"
    assert [width for _, width in srcset_entries(srcset)] == [f"{width}w" for width in WIDTHS]
    assert IMG_SRC.search(picture).group(1).startswith(f"/static/{post.cover_image}?v=")
    assert 'fetchpriority="high"' in picture
    assert 'loading="lazy"' not in picture
    for url, width in srcset_entries(srcset):
        served = client.get(url)
        assert served.status_code == 200
        assert served.headers["Content-Type"] == "image/webp"
        assert served.cache_control.immutable
        assert served.cache_control.max_age == 365 * 24 * 3600
        with Image.open(BytesIO(served.data)) as image:
            assert f"{image.width}w" == width
        served.close()


def test_cards_load_their_copies_lazily_at_card_size(client, demo_content):
    home = client.get("/").text

    cards = [picture for picture in PICTURE.findall(home) if "card__image" in picture]
    assert cards
    for card in cards:
        assert SOURCE.search(card).group(2) == (
            "(min-width: 64em) 24rem, (min-width: 40em) 50vw, 100vw"
        )
        assert 'loading="lazy"' in card


def test_a_cover_without_copies_is_a_plain_image(client, make_post):
    make_post(cover_image="img/covers/default.png")

    page = client.get("/").text

    card = next(picture for picture in PICTURE.findall(page) if "card__image" in picture)
    assert "<source" not in card
    assert "/static/img/covers/default.png?v=" in card


def test_content_covers_makes_the_copies_a_cover_lacks(runner, app, demo_content):
    folder = Path(app.config["UPLOAD_FOLDER"])
    for path in folder.iterdir():
        path.unlink()

    result = runner.invoke(args=["content", "covers"])

    assert result.exit_code == 0, result.output
    covers = len(used_covers())
    assert f"{covers} of {covers} covers have their WebP copies." in result.output
    assert len(copies(folder)) == covers * len(WIDTHS)


def test_content_covers_names_a_cover_it_cannot_read(runner, make_post):
    make_post(cover_image="img/covers/missing.png")

    result = runner.invoke(args=["content", "covers"])

    assert result.exit_code == 1
    assert "img/covers/missing.png: missing or not an image." in result.output


def test_the_import_names_a_missing_cover_and_imports_the_post(runner, tmp_path):
    (tmp_path / "post.md").write_text(
        "---\ntitle: T\nslug: t\nstandfirst: S\npublished: 2024-03-01\n"
        "cover: img/covers/missing.png\n---\nBody.\n"
    )

    result = runner.invoke(args=["content", "import", str(tmp_path)])

    assert result.exit_code == 0
    assert "1 created" in result.output
    assert "t: the cover img/covers/missing.png is missing or not an image." in result.output


def image_bytes(image, kind="PNG", **options):
    buffer = BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def test_copies_are_never_wider_than_the_image(tmp_path):
    write_variants(image_bytes(Image.new("RGB", (900, 400))), tmp_path, "ab" * 8)

    assert copies(tmp_path) == ["abababababababab-480.webp", "abababababababab-800.webp"]


def test_transparency_and_orientation_survive_the_copy(tmp_path):
    sideways = Image.new("RGBA", (300, 600), (0, 0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    write_variants(image_bytes(sideways, exif=exif), tmp_path, "cd" * 8)

    with Image.open(tmp_path / "cdcdcdcdcdcdcdcd-480.webp") as copy:
        assert copy.size == (480, 240)
        assert copy.getpixel((0, 0))[3] == 0


def test_an_animation_gets_no_copies(tmp_path):
    frames = [Image.new("RGB", (600, 300), colour) for colour in ("red", "blue")]
    animation = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])

    write_variants(animation, tmp_path, "ef" * 8)

    assert copies(tmp_path) == []


@pytest.mark.parametrize("name", [f"{'a' * 64}-800.webp", f"{'a' * 64}-640.webp", "a-800.webp"])
def test_media_answers_404_for_a_copy_it_does_not_have(client, name):
    assert client.get(f"/media/{name}").status_code == 404
