"""Static files as a browser fetches them (compressed, with Chromium's Accept-Encoding).

Regression: Flask-Compress used to stream text assets through a generator that dropped
send_file's close(), leaving each file open until garbage collection (ResourceWarning).
"""

import gc
import sys
import time

import pytest


@pytest.mark.parametrize("path", ["/static/css/site.css", "/static/js/site.js"])
def test_static_files_are_closed_after_sending(page, monkeypatch, path):
    leaks = []
    monkeypatch.setattr(
        sys,
        "unraisablehook",
        lambda unraisable: (
            leaks.append(repr(unraisable.exc_value))
            if isinstance(unraisable.exc_value, ResourceWarning)
            else None
        ),
    )

    response = page.goto(path)
    assert response.status == 200
    encoding = response.all_headers().get("content-encoding", "identity")
    assert response.body()  # the whole body arrived

    # The server thread closes the response just after the last byte; give it a moment.
    deadline = time.monotonic() + 0.5
    while not leaks and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()

    assert leaks == [], f"{path} ({encoding}) was left open by the server: {leaks}"
