"""Render an email from templates/email/<name>/ and send it: over SMTP, or to the console."""

import smtplib
import sys

from flask import current_app, render_template
from flask_mail import Connection, Mail, Message


class TimeoutConnection(Connection):
    """Flask-Mail's connection with a socket timeout, so a silent server cannot hang a worker."""

    def configure_host(self):
        timeout = current_app.config["MAIL_TIMEOUT"]
        smtp_class = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = smtp_class(self.mail.server, self.mail.port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


class ConsoleConnection(Connection):
    """Prints each message instead of sending it: the default when no MAIL_SERVER is set."""

    def configure_host(self):
        return None

    def send(self, message, envelope_from=None):
        super().send(message, envelope_from)
        sys.stdout.write(f"{'-' * 30} email {'-' * 30}\n{message.as_string()}\n{'-' * 67}\n")
        sys.stdout.flush()


class SiteMail(Mail):
    def connect(self):
        state = current_app.extensions["mail"]
        if current_app.config["MAIL_SERVER"]:
            return TimeoutConnection(state)
        return ConsoleConnection(state)


def render_message(name, recipients, **context):
    """Build a Message from templates/email/<name>/{subject.txt, body.txt, body.html}."""
    config = current_app.config
    context = {"site_name": config["SITE_NAME"], "site_url": config["SITE_URL"], **context}
    subject = render_template(f"email/{name}/subject.txt", **context)
    return Message(
        subject=" ".join(subject.split()),
        recipients=recipients,
        body=render_template(f"email/{name}/body.txt", **context),
        html=render_template(f"email/{name}/body.html", **context),
    )
