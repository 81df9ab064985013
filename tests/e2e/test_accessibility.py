"""Pages checked by pa11y (WCAG 2 AA, HTML_CodeSniffer) in Debian's Chromium: no errors.

pa11y is an npm package pinned in tests/a11y/ (`make test` installs it). Without it the
tests are skipped, unless REQUIRE_BROWSER=1 (CI) makes that a failure, as for Chromium.
"""

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import CHROMIUM

A11Y = ROOT / "tests" / "a11y"
PA11Y = A11Y / "node_modules" / ".bin" / "pa11y"
PA11Y_CONFIG = A11Y / "pa11y.json"
PA11Y_TIMEOUT_SECONDS = 120

FAILED_LOGIN = [
    "set field #email to nobody@agency.test",
    "set field #password to not the password",
    "click element button[type=submit]",
    "wait for element [data-error-summary] to be visible",
]


@pytest.fixture
def pa11y(tmp_path):
    """Runs pa11y on a URL, after the given actions; returns the errors it reports."""
    for tool, install in [(CHROMIUM, "make browser"), (PA11Y, "make test")]:
        if not tool.exists():
            require(f"{tool} is not installed ({install})")
    config = tmp_path / "pa11y.json"

    def run(url, actions=()):
        # The shared config says which Chromium to launch and how; actions vary per test.
        config.write_text(json.dumps({**json.loads(PA11Y_CONFIG.read_text()), "actions": actions}))
        command = [PA11Y, "--standard", "WCAG2AA", "--reporter", "json", "--config", config, url]
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=PA11Y_TIMEOUT_SECONDS, check=False
        )
        return issues_of(completed)

    return run


def require(message):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def issues_of(completed):
    """pa11y exits 0 with no issues and 2 with some; anything else means it did not run."""
    if completed.returncode not in {0, 2}:
        raise AssertionError(f"pa11y failed ({completed.returncode}):\n{completed.stderr}")
    return json.loads(completed.stdout)


def readable(issues):
    return "\n".join(
        f"{issue['code']}: {issue['message']}\n    {issue['selector']}: {issue['context']}"
        for issue in issues
    )


@pytest.mark.parametrize("path", ["/staff/login", "/contact", "/"])
def test_page_has_no_accessibility_errors(pa11y, live_server, path):
    issues = pa11y(live_server + path)

    assert issues == [], readable(issues)


def test_failed_login_page_has_no_accessibility_errors(pa11y, live_server):
    issues = pa11y(live_server + "/staff/login", actions=FAILED_LOGIN)

    assert issues == [], readable(issues)
