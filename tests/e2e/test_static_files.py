"""Static files as a browser fetches them, and as a browser abandons them.

Regressions: Flask-Compress used to stream text assets through a generator that dropped
send_file's close(); and the development server skips close() when the client resets the
connection mid-transfer. Either left the file open until garbage collection, and its
ResourceWarning then failed whichever test ran next.
"""

import gc
import socket
import struct
import sys
import time
from urllib.parse import urlsplit

import pytest

COVER = "/static/img/covers/synthetic-biology-manufacturing-scale-up.png"


@pytest.fixture
def resource_leaks(monkeypatch):
    """ResourceWarnings raised while objects are collected (unclosed files), as reprs."""
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
    return leaks


def collect_for_a_moment(leaks, seconds=0.5):
    """The server thread closes a response just after its last byte; give it a moment."""
    deadline = time.monotonic() + seconds
    while not leaks and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()


@pytest.mark.parametrize("path", ["/static/css/site.css", "/static/js/site.js"])
def test_static_files_are_closed_after_sending(page, resource_leaks, path):
    response = page.goto(path)
    assert response.status == 200
    encoding = response.all_headers().get("content-encoding", "identity")
    assert response.body()  # the whole body arrived

    collect_for_a_moment(resource_leaks)

    assert resource_leaks == [], f"{path} ({encoding}) was left open: {resource_leaks}"


def request_then_reset(address, path):
    """Ask for `path`, read the first bytes of the answer, then reset the connection."""
    with socket.create_connection(address) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {address[0]}\r\n\r\n".encode())
        assert connection.recv(64).startswith(b"HTTP/1.1 200")
        # Linger 0: close() sends RST, as a browser does when it drops a loading image.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_file_the_client_abandons_is_closed(live_server, resource_leaks):
    address = urlsplit(live_server)
    for _ in range(20):
        request_then_reset((address.hostname, address.port), COVER)

    collect_for_a_moment(resource_leaks, seconds=1)

    assert resource_leaks == [], f"abandoned downloads left files open: {resource_leaks}"
