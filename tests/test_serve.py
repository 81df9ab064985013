"""The nginx configuration of `make serve` and of a real host, from one template."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render_production():
    return subprocess.run(
        [sys.executable, ROOT / "deploy" / "nginx.py", "production"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_the_shipped_site_file_is_the_template_rendered_for_a_real_host():
    assert (ROOT / "deploy" / "nginx.conf").read_text() == render_production()


def test_the_local_configuration_is_one_nginx_accepts(tmp_path):
    if not shutil.which(NGINX):
        pytest.skip("nginx is not installed (make nginx)")
    subprocess.run(
        [
            sys.executable,
            ROOT / "deploy" / "nginx.py",
            "local",
            "--port",
            "8000",
            "--upstream",
            "127.0.0.1:8001",
            "--dir",
            tmp_path,
        ],
        check=True,
        capture_output=True,
    )

    checked = subprocess.run(
        [NGINX, "-t", "-e", "stderr", "-p", tmp_path, "-c", tmp_path / "nginx.conf"],
        capture_output=True,
        text=True,
    )

    assert checked.returncode == 0, checked.stderr
    site = (tmp_path / "site.conf").read_text()
    assert "listen 127.0.0.1:8000;" in site and "ssl_certificate" not in site
