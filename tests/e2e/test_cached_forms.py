"""Forms on pages from nginx's cache, through the served stack: every reader of one cached copy,
with JavaScript and without, gets their lead stored on the first press of Send, also when the
copy was made three hours ago (its token as old as that)."""

import glob
import os
import re
import shutil
import time

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner
from playwright.sync_api import expect

from tests.conftest import SMTPServer, free_port, serving
from tests.stack import Stack, a_post_path, fetch, procfile_commands, stack_environment
from tests.test_serve import NGINX

THANKS_URL = re.compile(r"/contact/thanks/LC-[0-9A-Z]{4}-[0-9A-Z]{4}$")
RENDER_TOKEN = re.compile(r'name="contact-rendered_at" type="hidden" value="([^"]+)"')
THREE_HOURS = 3 * 3600


def libfaketime():
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        message = "libfaketime is not installed (make nginx)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The served stack with one post cached by an app whose clock ran three hours behind,
    then the app started again on the right time."""
    if not shutil.which(NGINX):
        pytest.skip("nginx is not installed (make nginx)")
    behind = f"env FAKETIME=-3h LD_PRELOAD={libfaketime()} {procfile_commands()['web']}"
    directory = tmp_path_factory.mktemp("cached-forms")
    with serving(SMTPServer("127.0.0.1", free_port())) as mail:
        # Pages are filled in faster than a person types: the time check has its own tests.
        stack = Stack(directory, stack_environment(directory, mail, FORM_MIN_SECONDS="0"))
        stack.start("proxy", web=behind)
        try:
            assert fetch(stack.url + a_post_path()).headers["X-Cache-Status"] == "MISS"
            stack.kill("web")
            stack.start("web")
            yield stack
        finally:
            stack.stop()


def token_signed_at(html):
    signer = TimestampSigner("test-secret", salt="contact-form-rendered-at")
    _, signed_at = signer.unsign(RENDER_TOKEN.search(html)[1], return_timestamp=True)
    return signed_at.timestamp()


def send_as_a_reader(browser, stack, path, name, javascript):
    context = browser.new_context(java_script_enabled=javascript)
    try:
        page = context.new_page()
        response = page.goto(stack.url + path)
        assert response.headers["x-cache-status"] == "HIT"
        form = page.locator("form[data-contact-form]")
        form.get_by_label("Your name", exact=True).fill(name)
        form.get_by_label("Email address", exact=True).fill(f"{name.lower()}@example.org")
        form.get_by_label("How can we help?", exact=True).fill(f"{name} would like to talk.")
        form.get_by_role("checkbox").check()
        form.get_by_role("button", name="Send message").click()
        expect(page).to_have_url(THANKS_URL)
    finally:
        context.close()


def stored_leads(stack):
    engine = sa.create_engine(stack.environment["DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT name, status FROM leads ORDER BY id")).all()
    engine.dispose()
    return {name: status for name, status in rows}


@pytest.mark.parametrize(
    ("path", "copy_age"), [("/contact", 0), (a_post_path(), THREE_HOURS)], ids=["new", "old"]
)
def test_every_reader_of_one_cached_copy_is_stored_on_the_first_send(
    browser, stack, path, copy_age
):
    copy = fetch(stack.url + path)  # the copy every reader below is given
    assert copy_age <= time.time() - token_signed_at(copy.text) < copy_age + 600
    readers = {f"Reader{copy_age}{n}": n % 2 == 0 for n in range(4)}  # with and without JS

    for name, javascript in readers.items():
        send_as_a_reader(browser, stack, path, name, javascript)

    leads = stored_leads(stack)
    assert {name: leads.get(name) for name in readers} == dict.fromkeys(readers, "new")
