"""Render an email from templates/email/<name>/ and send it: over SMTP, or to the console."""

import smtplib
import sys
from email import policy
from email.charset import QP, Charset

from flask import current_app, render_template
from flask_mail import Connection, Mail, Message

# Flask-Mail sends UTF-8 bodies as 8bit, so a long paragraph becomes one line longer than
# SMTP's limit of 998 characters, which servers refuse or break. Quoted-printable wraps it.
BODY_CHARSET = Charset("utf-8")
BODY_CHARSET.body_encoding = QP
# Flask-Mail encodes each header itself; refolding it again is what goes wrong (see SiteMessage).
AS_ENCODED = policy.SMTP.clone(refold_source="none")


class SiteMessage(Message):
    """Flask-Mail's message, flattened without refolding the headers Flask-Mail encoded.

    To refold a long header, Python 3.11's email package decodes its display name and can
    write it back unquoted: a name such as "Lovelace, Ada" or "Support: x@evil.example"
    then reads as more addresses in From or Reply-To.
    """

    def _message(self):
        message = super()._message()
        message.policy = AS_ENCODED
        return message


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

    def __exit__(self, exc_type, exc_value, traceback):
        # After a failure, close without a QUIT: the server may be gone, and QUIT's own
        # error would replace the one that explains what went wrong.
        if exc_type is not None and self.host is not None:
            self.host.close()
        else:
            super().__exit__(exc_type, exc_value, traceback)


CONSOLE_HEADERS = ("Message-ID", "From", "To", "Reply-To", "Subject")


class ConsoleConnection(Connection):
    """Prints each message instead of sending it: the default when no MAIL_SERVER is set."""

    def configure_host(self):
        return None

    def send(self, message, envelope_from=None):
        super().send(message, envelope_from)
        headers = message._message()
        lines = [f"{name}: {headers[name]}" for name in CONSOLE_HEADERS if headers[name]]
        rule = "-" * 72
        sys.stdout.write(f"{rule}\n" + "\n".join(lines) + f"\n\n{message.body}\n{rule}\n")
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
    return SiteMessage(
        subject=one_line(render_template(f"email/{name}/subject.txt", **context)),
        recipients=recipients,
        charset=BODY_CHARSET,
        body=render_template(f"email/{name}/body.txt", **context),
        html=render_template(f"email/{name}/body.html", **context),
    )


def one_line(text):
    """Text fit for a header: line breaks and runs of whitespace become single spaces."""
    return " ".join(text.split())
