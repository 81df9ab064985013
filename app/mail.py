"""Render an email from templates/email/<name>/ and send it: over SMTP, or to the console."""

import smtplib
import sys
from email import policy
from email.charset import QP, Charset
from email.header import Header

from flask import current_app, render_template
from flask_mail import Connection, Mail, Message

from app.validation import drop_invisible

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
        if self.subject and ENCODED_WORD_START in self.subject:
            keep_literally(message, "Subject", self.subject)
        return message


# How an RFC 2047 encoded word starts. Flask-Mail leaves an ASCII subject as it is, so a
# lead's name such as "=?utf-8?b?QWRtaW4=?=" in it would be decoded by the staff member's
# mail client and read "Admin". (Flask-Mail encodes display names already.)
ENCODED_WORD_START = "=?"


def keep_literally(message, name, text):
    """Set a header to `text` encoded as a whole, so that decoding it gives back `text`.

    Stored raw: set as usual, the header would be parsed (decoded) and written back as the
    ASCII it decodes to.
    """
    del message[name]
    message.set_raw(name, Header(text, "utf-8").encode())


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
    """Text fit for a header: no invisible characters (a name may hide bidi controls), and
    line breaks and runs of whitespace become single spaces."""
    return " ".join(drop_invisible(text).split())
