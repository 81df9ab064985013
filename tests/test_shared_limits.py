"""The contact limit of a real gunicorn with two workers: counted once in the shared Redis,
and, to show why production refuses it, once per worker in memory."""

import re
import urllib.parse
from collections import Counter

import pytest
import redis

from tests.conftest import LEAD_FIELDS
from tests.stack import Stack, fetch, stack_environment, wait_until

REDIS_URL = "redis://127.0.0.1:6379/12"
RENDER_TOKEN = re.compile(r'name="contact-rendered_at" type="hidden" value="([^"]+)"')
BOOTED_WORKER = re.compile(r"Booting worker with pid: (\d+)")


@pytest.fixture
def serve(tmp_path, smtp_server):
    """Start gunicorn as the Procfile's web line does, with two workers allowing five contact
    posts a minute; returns its address once both workers have booted."""
    stacks = []

    def start(**settings):
        stack = Stack(
            tmp_path,
            stack_environment(
                tmp_path,
                smtp_server,
                WEB_CONCURRENCY="2",
                CONTACT_RATE_LIMIT="5 per minute",
                FORM_MIN_SECONDS="0",
                **settings,
            ),
        )
        stacks.append(stack)
        stack.launch("web")
        url = stack.app_url
        wait_until(lambda: len(set(BOOTED_WORKER.findall(stack.logs()))) == 2, stack.logs)
        wait_until(lambda: fetch(url + "/healthz").status == 200, stack.logs)
        return url

    yield start
    for stack in stacks:
        stack.stop()


def send_contact_form(url, number):
    """Load the form and send message `number`, as a visitor does; each request on a new
    connection, so either worker may take it."""
    page = fetch(url + "/contact")
    assert page.status == 200, page.text
    fields = {f"contact-{name}": value for name, value in LEAD_FIELDS.items()}
    fields |= {
        "contact-message": f"Question {number}",
        "contact-consent": "y",
        "contact-rendered_at": RENDER_TOKEN.search(page.text)[1],
    }
    body = urllib.parse.urlencode(fields).encode()
    return fetch(url + "/contact", body, {"Origin": url}).status


def test_with_redis_the_limit_is_counted_once_across_workers(serve, redis_prefix):
    url = serve(REDIS_URL=REDIS_URL, RATELIMIT_KEY_PREFIX=redis_prefix)

    answers = Counter(send_contact_form(url, number) for number in range(10))

    assert answers == {303: 5, 429: 5}
    with redis.Redis.from_url(REDIS_URL) as connection:
        assert list(connection.scan_iter(f"*/{redis_prefix}/*"))


def test_in_memory_each_worker_counts_on_its_own(serve):
    url = serve(RATELIMIT_STORAGE_URI="memory://")

    # Until the second worker takes a post: with both counting to five, a sixth gets in.
    accepted = 0
    for number in range(40):
        accepted += send_contact_form(url, number) == 303
        if accepted > 5:
            break

    assert accepted > 5
