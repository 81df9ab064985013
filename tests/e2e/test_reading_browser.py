"""A reader's visit in a real browser: news from the home page, sharing, no-JS, a11y, layout."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.e2e.browser import foreign_requests, watch_errors

SITE_URL = "https://agency.test"  # the `app` fixture's SITE_URL: canonical links point there
POST_SLUG = "casip-solid-state-battery-consortium"
POST_PATH = f"/posts/{POST_SLUG}"
POST_TITLE = "China forms a national consortium to bring solid-state batteries to market"
CANONICAL = f"{SITE_URL}{POST_PATH}"
TAG_PATH = "/tags/energy-storage"

# (link name, host it points to, query parameter carrying the post's URL)
SHARE_TARGETS = [
    ("LinkedIn", "www.linkedin.com", "url"),
    ("X", "x.com", "url"),
    ("Facebook", "www.facebook.com", "u"),
    ("Email", "", "body"),
]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

READING_PAGES = {
    "home": "/",
    "post": POST_PATH,
    "posts-list": "/posts/",
    "tag": TAG_PATH,
}
AXE_PAGES = {
    **READING_PAGES,
    "about": "/about",
    "privacy": "/privacy",
    "not-found": "/no-such-page",
}

# Collects CSP violations as the browser reports them to the page, whatever the console says.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "(inline)"}`
    + ` in ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""


def share_blocks(page):
    """The post's share blocks, in document order (top of the article, then the end)."""
    return page.locator("section.share")


# --- A reader's visit -----------------------------------------------------------------


def test_reader_opens_newest_post_from_home_and_sees_the_whole_post_page(
    page, live_server, request_log, demo_content
):
    failed = []
    page.on(
        "response",
        lambda response: (
            failed.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )

    assert page.goto("/").status == 200
    latest = page.get_by_role(
        "region", name=re.compile(r"^Latest market & industry news$", re.IGNORECASE)
    )
    first_card_link = latest.get_by_role("article").first.get_by_role("heading").get_by_role("link")
    card_title = first_card_link.inner_text().strip()
    assert card_title == demo_content[0].title, "the first card should be the newest post"

    first_card_link.click()

    expect(page).to_have_url(f"{live_server}/posts/{demo_content[0].slug}")
    expect(page.get_by_role("heading", level=1)).to_have_text(card_title)
    standfirst = page.locator("article .standfirst")
    expect(standfirst).to_be_visible()
    expect(standfirst).to_have_text(demo_content[0].standfirst)

    shares = share_blocks(page)
    expect(shares).to_have_count(2)
    canonical = f"{SITE_URL}/posts/{demo_content[0].slug}"
    for index in range(2):
        block = shares.nth(index)
        # The heading may carry visually hidden context ("... (top of the article)").
        expect(block).to_have_role("region")  # a landmark named by its heading
        heading = block.get_by_role("heading", name=re.compile(r"^Share This Post\b"))
        expect(heading).to_be_visible()
        for name, host, parameter in SHARE_TARGETS:
            link = block.get_by_role("link", name=re.compile(rf"^{name}\b"))
            expect(link).to_be_visible()
            href = urlsplit(link.get_attribute("href"))
            assert href.netloc == host, f"{name} share link goes to {href.geturl()}"
            assert parse_qs(href.query).get(parameter) == [canonical], (
                f"{name} share link does not carry the post URL: {href.geturl()}"
            )
        expect(block.get_by_role("link", name="Copy link")).to_have_attribute("href", canonical)

    expect(page.locator(".post__source")).to_contain_text("Source:")
    expect(
        page.get_by_role("heading", name="Latest Market & Industry News", exact=True)
    ).to_be_visible()
    get_in_touch = page.get_by_role("region", name="Get in touch", exact=True)
    expect(get_in_touch.get_by_role("heading", name="Get in touch")).to_be_visible()
    # The invitation leads to the "Let's connect" form: inline, or a link to /contact.
    expect(get_in_touch.locator("form[method=post], a[href='/contact']").first).to_be_visible()

    page.wait_for_load_state("networkidle")
    assert any(url.startswith(f"{live_server}/posts/") for url in request_log)
    assert foreign_requests(request_log, live_server) == [], "requests left the site"
    assert failed == [], "some requests failed"


def test_copy_link_puts_the_canonical_post_url_on_the_clipboard(
    new_context, live_server, request_log
):
    context = new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page = context.new_page()
    errors = watch_errors(page)
    assert page.goto(POST_PATH).status == 200
    expect(page.locator('link[rel="canonical"]')).to_have_attribute("href", CANONICAL)

    top, bottom = share_blocks(page).nth(0), share_blocks(page).nth(1)
    top.get_by_role("link", name="Copy link").click()

    expect(top.get_by_role("status")).to_contain_text("Link copied")
    expect(bottom.get_by_role("status")).to_have_text("")
    assert page.evaluate("navigator.clipboard.readText()") == CANONICAL
    assert page.url == f"{live_server}{POST_PATH}", "clicking Copy link navigated away"
    assert foreign_requests(request_log, live_server) == []
    assert errors == []


def test_without_javascript_the_post_and_navigation_work_and_copy_link_is_a_plain_link(
    new_context, live_server
):
    context = new_context(java_script_enabled=False)
    # The canonical host is not reachable from here; answer for it to see where links lead.
    context.route(
        f"{SITE_URL}/**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<title>canonical</title>"
        ),
    )
    page = context.new_page()
    assert page.goto(POST_PATH).status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text(POST_TITLE)
    expect(page.locator("article .standfirst")).to_be_visible()
    expect(share_blocks(page)).to_have_count(2)
    copy_link = share_blocks(page).first.get_by_role("link", name="Copy link")
    expect(copy_link).to_have_attribute("href", CANONICAL)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="News").click()
    expect(page).to_have_url(f"{live_server}/posts/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Market & industry news")

    page.get_by_role("navigation", name="Topics").get_by_role(
        "link", name=re.compile(r"^Energy Storage\b")
    ).click()
    expect(page).to_have_url(f"{live_server}{TAG_PATH}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Energy Storage")

    page.get_by_role("link", name=POST_TITLE, exact=True).click()
    expect(page).to_have_url(f"{live_server}{POST_PATH}")

    # Without the script, Copy link is an ordinary link: following it opens the post's URL.
    share_blocks(page).first.get_by_role("link", name="Copy link").click()
    expect(page).to_have_url(CANONICAL)


# --- Console and CSP ------------------------------------------------------------------


@pytest.mark.parametrize("path", READING_PAGES.values(), ids=READING_PAGES.keys())
def test_no_console_errors_or_csp_violations(new_context, path):
    context = new_context()
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    errors = watch_errors(page)

    response = page.goto(path)  # waits for the load event: every subresource has answered
    assert response.status == 200
    violations = page.evaluate("window.__cspViolations")

    assert violations == [], "CSP violations:\n" + "\n".join(violations)
    assert errors == [], "console errors:\n" + "\n".join(errors)


# --- Accessibility --------------------------------------------------------------------


def format_violations(violations):
    lines = []
    for violation in violations:
        lines.append(
            f"[{violation['impact']}] {violation['id']}: {violation['help']} "
            f"({violation['helpUrl']})"
        )
        for node in violation["nodes"]:
            lines.append(f"    at {', '.join(map(str, node['target']))}")
            lines.append(f"       {node['html'][:200]}")
            summary = (node.get("failureSummary") or "").replace("\n", "\n       ")
            if summary:
                lines.append(f"       {summary}")
    return "\n".join(lines)


@pytest.mark.parametrize("path", AXE_PAGES.values(), ids=AXE_PAGES.keys())
def test_no_serious_accessibility_violations_on_phone_and_desktop(new_context, path):
    # One load per page; the viewport is then resized, so the CSS for each width is checked
    # (colour contrast and hidden content can differ between the layouts).
    context = new_context(bypass_csp=True, viewport=PHONE)  # axe injects its own script
    page = context.new_page()
    response = page.goto(path)
    assert response.status == (404 if path == AXE_PAGES["not-found"] else 200)

    report = []
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        assert page.evaluate("window.innerWidth") == viewport["width"]
        results = Axe().run(page)
        serious = [
            v for v in results.response["violations"] if v["impact"] in {"serious", "critical"}
        ]
        if serious:
            report.append(f"--- at {viewport['width']}px:\n" + format_violations(serious))

    assert report == [], f"axe found serious/critical violations on {path}:\n" + "\n".join(report)


# --- Keyboard -------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390px", "1280px"])
@pytest.mark.parametrize("path", ["/", POST_PATH], ids=["home", "post"])
def test_first_tab_focuses_a_visible_skip_link_that_moves_to_main(new_context, path, viewport):
    page = new_context(viewport=viewport).new_page()
    assert page.goto(path).status == 200

    page.keyboard.press("Tab")

    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport(ratio=1)
    box = skip.bounding_box()
    assert box is not None
    assert box["width"] >= 10 and box["height"] >= 10, f"skip link barely visible: {box}"
    assert box["x"] >= 0 and box["y"] >= 0, f"skip link off-screen: {box}"
    assert box["x"] + box["width"] <= viewport["width"], f"skip link off-screen: {box}"
    assert box["y"] + box["height"] <= viewport["height"], f"skip link off-screen: {box}"
    style = skip.evaluate(
        "el => { const s = getComputedStyle(el);"
        " return {opacity: s.opacity, visibility: s.visibility, clip: s.clip,"
        " clipPath: s.clipPath}; }"
    )
    assert float(style["opacity"]) > 0.5, style
    assert style["visibility"] == "visible", style
    assert style["clip"] in {"auto", ""} and style["clipPath"] in {"none", ""}, style

    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"#main$"))
    expect(page.locator("main#main")).to_be_focused()
    main_top = page.locator("main#main").bounding_box()["y"]
    assert 0 <= main_top < viewport["height"], f"main is not scrolled into view (top {main_top})"


# --- Phone layout ---------------------------------------------------------------------

OVERFLOWING = """
() => [...document.querySelectorAll("body *")]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 15)
  .map((el) => {
    const classes = typeof el.className === "string" && el.className
      ? "." + el.className.trim().split(/\\s+/).join(".") : "";
    return `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${classes}`
      + ` right=${Math.round(el.getBoundingClientRect().right)}`;
  })
"""


@pytest.mark.parametrize("path", READING_PAGES.values(), ids=READING_PAGES.keys())
def test_phone_layout_has_no_horizontal_overflow(new_context, path):
    page = new_context(viewport=PHONE).new_page()
    assert page.goto(path).status == 200

    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )

    assert scroll_width <= inner_width, (
        f"{path} is {scroll_width}px wide in a {inner_width}px viewport; elements past the edge:\n"
        + "\n".join(page.evaluate(OVERFLOWING))
    )
