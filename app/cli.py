"""Command-line groups: `flask content ...`, `flask leads ...`."""

import time

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import db
from app.leads.delivery import deliver_due, worker_name
from app.posts.importer import import_directory

content = AppGroup("content", help="Manage published content.")
leads = AppGroup("leads", help="Work with leads and their notifications.")


def init_app(app):
    app.cli.add_command(content)
    app.cli.add_command(leads)


@content.command("import")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
def import_content(directory):
    """Import Markdown posts (default: CONTENT_DIR/posts); idempotent by slug."""
    directory = directory or f"{current_app.config['CONTENT_DIR']}/posts"
    report = import_directory(directory)
    click.echo(
        f"{len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.errors)} failed."
    )
    for path, problem in report.errors:
        click.echo(f"{path}: {problem}", err=True)
    if report.errors:
        raise SystemExit(1)


@leads.command("deliver")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between polls.")
def deliver(once, interval):
    """Send due notification emails from the outbox; safe to run several at once."""
    worker = worker_name()
    while True:
        report = deliver_due(worker)
        db.session.remove()
        if report.sent or report.retrying or report.failed:
            click.echo(f"{report.sent} sent, {report.retrying} to retry, {report.failed} failed.")
        for error in report.errors:
            click.echo(error, err=True)
        if once:
            return
        time.sleep(interval)
