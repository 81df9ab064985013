"""Command-line groups: `flask content ...`."""

import click
from flask import current_app
from flask.cli import AppGroup

from app.posts.importer import import_directory

content = AppGroup("content", help="Manage published content.")


def init_app(app):
    app.cli.add_command(content)


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
