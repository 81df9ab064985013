from app.posts.rendering import count_words, render_inline, render_markdown


def test_markdown_becomes_html():
    html = render_markdown("## Heading\n\nSome *text* and a [link](https://example.com).")
    assert "<h2>Heading</h2>" in html
    assert '<a href="https://example.com">link</a>' in html


def test_the_page_title_stays_the_only_h1():
    assert render_markdown("# Big").strip() == "<h2>Big</h2>"


def test_scripts_and_dangerous_urls_are_removed():
    html = render_markdown(
        "<script>alert(1)</script>\n\n"
        '<img src=x onerror="alert(2)">\n\n'
        "[click](javascript:alert(3))\n\n"
        '<a href="https://ok.example" onclick="alert(4)">ok</a>'
    )
    assert "<script" not in html and "alert(1)" not in html
    assert "onerror" not in html and "onclick" not in html
    assert 'href="javascript' not in html
    assert "<img" not in html
    assert '<a href="https://ok.example">ok</a>' in html


def test_inline_rendering_has_no_paragraph():
    assert render_inline("[Nikkei Asia](https://asia.nikkei.com/)") == (
        '<a href="https://asia.nikkei.com/">Nikkei Asia</a>'
    )


def test_tables_are_supported():
    html = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<table>" in html and "<td>1</td>" in html


def test_word_count():
    assert count_words("One two, three-four **five**") == 5
