"""Gunicorn settings for production; each can be overridden on the command line."""

import multiprocessing
import os

from app.logs import gunicorn_logconfig

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = 2
timeout = 30
graceful_timeout = 30
keepalive = 5
logconfig_dict = gunicorn_logconfig(os.environ)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# One fixed path per user: a second instance on the host would take over the first's socket.
# Workers are managed with signals (systemd, honcho) instead.
control_socket_disable = True
