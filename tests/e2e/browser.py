"""Helpers the browser tests share: what the page logged, and where the browser went."""

import re
from urllib.parse import urlsplit

FAILED_LOAD = re.compile(r"Failed to load resource: .* status of (\d{3})\b")


def watch_errors(page, expected_statuses=None):
    """Console errors (CSP violations included) and uncaught exceptions, as readable lines.

    Chromium logs every document answered with an error status ("Failed to load resource:
    the server responded with a status of 422"). Where such answers are part of the design,
    pass a list as `expected_statuses`: those lines go there, as (status, url), for the test
    to check; otherwise they count as errors.
    """
    errors = []

    def on_console(message):
        status = FAILED_LOAD.match(message.text)
        if status and expected_statuses is not None:
            expected_statuses.append((int(status.group(1)), message.location.get("url")))
        elif message.type == "error" or "Content Security Policy" in message.text:
            location = message.location
            errors.append(
                f"console.{message.type}: {message.text} "
                f"({location.get('url')}:{location.get('lineNumber')})"
            )

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    return errors


def foreign_requests(request_log, base_url):
    """Logged request URLs that went to any host but the live server."""
    origin = urlsplit(base_url)
    return [
        url
        for url in request_log
        if urlsplit(url).scheme not in {"data", "blob"}
        and (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)
    ]
