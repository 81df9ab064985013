"""Security headers on every response, including a strict Content-Security-Policy, and
the client address behind reverse proxies."""

import ipaddress
import logging

from flask import current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


log = logging.getLogger(__name__)


def init_app(app):
    trust_proxies(app)
    app.extensions["proxy_warning_given"] = False
    app.before_request(warn_of_a_wrong_proxy_count)
    app.after_request(add_security_headers)


def trust_proxies(app):
    """Behind N reverse proxies, take the client address and scheme from their headers.

    Rate limits key on the client address: without this every visitor would share the
    proxy's address, and with it set too high a visitor could choose their own.
    """
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)


def warn_of_a_wrong_proxy_count():
    """Log once per process when a request shows TRUSTED_PROXIES to be wrong: the setting is
    then wrong for every request, and nothing else would tell.

    At 0 behind a proxy, every visitor seems to come from the proxy and shares its limits;
    above the proxies really there, a visitor can choose their own address by sending
    X-Forwarded-For. At 0 only a request from a loopback or private address counts: one
    from a public address came straight from a visitor, whose header means nothing. More
    entries than trusted are what a visitor may add, and no entries mean a request came to
    the app directly (a health check): neither tells anything.
    """
    if current_app.extensions["proxy_warning_given"]:
        return
    trusted = current_app.config["TRUSTED_PROXIES"]
    entries = len(forwarded_for())
    too_low = trusted == 0 and entries and from_a_proxy(request.remote_addr)
    if too_low or 0 < entries < trusted:
        current_app.extensions["proxy_warning_given"] = True
        log.warning(
            "TRUSTED_PROXIES is %d, but a request from %s had %d X-Forwarded-For entries; if "
            "proxies are in front of the app, set it to their number (1 behind the shipped "
            "nginx). %s",
            trusted,
            request.remote_addr,
            entries,
            "Until then every visitor seems to come from the proxy and shares its limits."
            if trusted == 0
            else "Until then a visitor can choose their own address.",
        )


def from_a_proxy(address):
    try:
        peer = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return peer.is_loopback or peer.is_private


def forwarded_for():
    """The X-Forwarded-For entries as they arrived (ProxyFix leaves the header as it is)."""
    value = request.headers.get("X-Forwarded-For", "")
    return [entry for entry in value.split(",") if entry.strip()]


def add_security_headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if current_app.config["PRODUCTION"]:
        response.headers.setdefault(
            "Strict-Transport-Security", "max-age=63072000; includeSubDomains"
        )
    return response
