"""Command-line groups: `flask content|leads|staff|backup ...`."""

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app import dates
from app.accounts import services as accounts
from app.accounts.models import ROLES
from app.backup import archive, schema
from app.backup.databases import BackupError
from app.extensions import db
from app.leads import spool, workflow
from app.leads.delivery import deliver_due, worker_name
from app.leads.models import REFERENCE
from app.posts.importer import import_directory
from app.posts.models import Post
from app.posts.uploads import make_variants
from app.types import utcnow

content = AppGroup("content", help="Manage published content.")
leads = AppGroup("leads", help="Work with leads and their notifications.")
staff = AppGroup("staff", help="Manage staff accounts.")
backup = AppGroup("backup", help="Back up and restore the database, covers and kept leads.")


def init_app(app):
    app.cli.add_command(content)
    app.cli.add_command(leads)
    app.cli.add_command(staff)
    app.cli.add_command(backup)


@content.command("import")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--update",
    is_flag=True,
    help="Also update existing posts from their files, unless changed in the web editor.",
)
def import_content(directory, update):
    """Import Markdown posts (default: CONTENT_DIR/posts) that are not in the database yet."""
    directory = directory or f"{current_app.config['CONTENT_DIR']}/posts"
    report = import_directory(directory, update=update)
    counts = {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "skipped": report.skipped,
        "refused": report.refused,
        "failed": report.errors,
    }
    click.echo(", ".join(f"{len(items)} {name}" for name, items in counts.items()) + ".")
    if report.skipped:
        click.echo("Posts already in the database were left as they are (--update updates them).")
    for slug, why in report.refused:
        click.echo(f"{slug}: not updated from its file: {why}.", err=True)
    for path, problem in report.errors:
        click.echo(f"{path}: {problem}", err=True)
    for slug, cover in report.bad_covers:
        click.echo(f"{slug}: the cover {cover} is missing or not an image.", err=True)
    if report.errors or report.refused:
        raise SystemExit(1)


@content.command("covers")
def make_cover_copies():
    """Make the WebP copies any post's cover lacks (e.g. covers uploaded before they existed)."""
    query = select(Post.cover_image).where(Post.cover_image.is_not(None)).distinct()
    covers = db.session.scalars(query).all()
    failed = [cover for cover in covers if not make_variants(cover)]
    for cover in failed:
        click.echo(f"{cover}: missing or not an image.", err=True)
    click.echo(f"{len(covers) - len(failed)} of {len(covers)} covers have their WebP copies.")
    if failed:
        raise SystemExit(1)


@leads.command("deliver")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
def deliver(once, interval):
    """Send due notification emails from the outbox; safe to run several at once."""
    worker = worker_name()
    while True:
        try:
            report = deliver_due(worker)
        except Exception:
            # The database went away, say: a worker keeps going and tries again later.
            if once:
                raise
            current_app.logger.exception("Outbox delivery failed; retrying in %s s", interval)
            time.sleep(interval)
            continue
        finally:
            db.session.remove()
        if report.stored:
            click.echo(f"{len(report.stored)} kept leads stored: {', '.join(report.stored)}.")
        if report.sent or report.retrying or report.failed:
            click.echo(f"{report.sent} sent, {report.retrying} to retry, {report.failed} failed.")
        for error in report.errors:
            click.echo(error, err=True)
        if once:
            return
        time.sleep(interval)


def read_password(from_stdin):
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def account_command(action):
    """Run an accounts function, turning its AccountError into a clean CLI error."""
    try:
        return action()
    except accounts.AccountError as error:
        raise click.ClickException(str(error)) from error


@staff.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="editor", show_default=True)
@click.option("--name", default="", help="Name shown to other staff.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_staff(email, role, name, password_stdin):
    """Create a staff account; asks for the password twice."""
    password = read_password(password_stdin)
    user = account_command(lambda: accounts.create_user(email, password, role, name))
    click.echo(f"Created {user.role} {user.email}.")


@staff.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_staff_password(email, password_stdin):
    """Change a password; every session of the account ends."""
    password = read_password(password_stdin)
    user = account_command(lambda: accounts.set_password(email, password))
    click.echo(f"Password changed for {user.email}; their sessions have ended.")


@staff.command("disable")
@click.argument("email")
def disable_staff(email):
    """Disable an account and end its sessions."""
    user = account_command(lambda: accounts.disable_user(email))
    click.echo(f"Disabled {user.email}.")


@staff.command("list")
def list_staff():
    """List staff accounts."""
    for user in accounts.all_users():
        state = "active" if user.is_active else "disabled"
        last = dates.stamp(user.last_login_at) or "never"
        click.echo(f"{user.email:40} {user.role:7} {state:9} last login {last}")


@leads.command("purge")
@click.option(
    "--older-than",
    "days",
    required=True,
    type=click.IntRange(min=1, max=36_500),
    metavar="DAYS",
    help="Remove leads received more than this many days ago.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
def purge_leads(days, dry_run):
    """Delete old leads with their notes and emails, kept and quarantined ones too (a
    retention policy); the trail keeps that each stored one was purged."""
    cutoff = utcnow() - timedelta(days=days)
    # The spool first: it needs no database.
    try:
        kept, problems = spool.purge(cutoff, dry_run=dry_run)
    except OSError as error:
        kept, problems = 0, [f"{spool.folder()} cannot be read: {error.strerror}."]
    count = workflow.purge_leads(cutoff, dry_run=dry_run)
    noun = "lead" if count == 1 else "leads"
    before = f"received before {dates.stamp(cutoff)}"
    also = f", and {counted(kept, 'kept lead')} in the spool" if kept else ""
    if dry_run:
        click.echo(f"Dry run: {count} {noun} {before}{also} would be purged. Nothing was deleted.")
    else:
        click.echo(f"Purged {count} {noun} {before}{also}.")
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)


@leads.group("spool")
def kept_leads():
    """Leads kept on disk while the database did not take them, and quarantined ones."""


def reference_argument(context, parameter, value):
    if value is None or REFERENCE.fullmatch(value.strip()):
        return value and value.strip().upper()
    raise click.BadParameter(f"{value!r} is not a lead reference such as LC-7K4M-Q9XP.")


def spool_entries():
    try:
        return spool.entries()
    except OSError as error:
        raise click.ClickException(f"{spool.folder()} cannot be read: {error.strerror}.") from None


@kept_leads.command("list")
def list_kept_leads():
    """List kept and quarantined leads: how long each has waited, and what went wrong."""
    entries = spool_entries()
    if not entries:
        click.echo(f"No lead is kept in {spool.folder()}.")
        return
    now = utcnow()
    for entry in entries:
        place = "quarantined" if entry.quarantined else "kept"
        waited = dates.relative(entry.waiting_since, now)
        tried = f"{counted(entry.attempts, 'attempt')}: {entry.reason}" if entry.attempts else ""
        click.echo(f"{entry.path.stem:14} {place:11} {waited:16} {tried}".rstrip())
    if any(entry.quarantined for entry in entries):
        click.echo(
            f"Quarantined leads are in {spool.quarantine_folder()}. Once the cause is fixed "
            "(`flask leads spool export REFERENCE` prints a record), `flask leads spool retry "
            "REFERENCE` or `--all` gives them back to the delivery worker."
        )


@kept_leads.command("retry")
@click.argument("reference", required=False, callback=reference_argument)
@click.option("--all", "every", is_flag=True, help="Retry every quarantined lead.")
def retry_kept_leads(reference, every):
    """Move a quarantined lead (or --all) back to the spool, to be tried again."""
    if bool(reference) == every:
        raise click.UsageError("Give either a REFERENCE or --all.")
    chosen = [
        entry.path
        for entry in spool_entries()
        if entry.quarantined and (every or entry.path.stem == reference)
    ]
    if reference and not chosen:
        raise click.ClickException(
            f"No quarantined lead has the reference {reference} (`flask leads spool list`)."
        )
    for path in chosen:
        try:
            spool.retry(path)
        except OSError as error:
            raise click.ClickException(f"{path} cannot be moved: {error.strerror}.") from None
    names = ", ".join(path.stem for path in chosen)
    click.echo(
        f"{counted(len(chosen), 'lead')} back in the spool: {names}. The delivery worker "
        f"tries {'it' if len(chosen) == 1 else 'them'} again on its next run."
        if chosen
        else "No lead is quarantined."
    )


@kept_leads.command("export")
@click.argument("reference", callback=reference_argument)
def export_kept_lead(reference):
    """Print a kept or quarantined lead's record as JSON, for a person to read or fix."""
    for path in spool.places(reference):
        try:
            data = spool.contents_of(path)
        except FileNotFoundError:
            continue
        except (OSError, spool.SpoolError) as error:
            reason = spool.reason_of(error)
            raise click.ClickException(f"{path} cannot be read: {reason}.") from None
        click.echo(readable(data, path))
        return
    raise click.ClickException(f"No kept or quarantined lead has the reference {reference}.")


def readable(data, path):
    """A record as indented JSON; one that is not JSON as it is, to be fixed by hand."""
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError as error:
        click.echo(f"{path} is not valid JSON ({error}); printed as it is.", err=True)
        return data.decode(errors="replace")


@backup.command("create")
@click.argument("path", type=click.Path(path_type=Path))
def create_backup(path):
    """Write one archive of the database, uploaded covers and kept leads to PATH (a file name,
    or a folder to name it in); safe while the site runs."""
    written, manifest = backup_command(lambda: archive.create(path))
    click.echo(f"Backed up to {written} ({size(written)}): {contents(manifest)}.")


@backup.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
def verify_backup(path):
    """Read an archive through and check every file against its manifest; change nothing."""
    manifest = backup_command(lambda: archive.verify(path))
    made = dates.stamp(datetime.fromisoformat(manifest["created_at"]))
    click.echo(f"{path} is complete, made {made}: {contents(manifest)}.")


@backup.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
def restore_backup(path, force):
    """Restore an archive: the database all at once, then covers and kept leads. Stop the site
    and the delivery worker first."""
    manifest = backup_command(lambda: archive.restore(path, force=force))
    click.echo(f"Restored {path}: {contents(manifest)}.")
    revision = manifest["database"]["revision"]
    if revision != schema.head():
        click.echo(f"The database was migrated from schema revision {revision} to {schema.head()}.")


def size(path):
    kilobytes = path.stat().st_size / 1024
    return f"{kilobytes:.0f} KB" if kilobytes < 1024 else f"{kilobytes / 1024:.1f} MB"


def backup_command(action):
    try:
        return action()
    except BackupError as error:
        raise click.ClickException(str(error)) from error


CONTENTS = {
    "leads": "lead",
    "outbox_messages": "email",
    "posts": "post",
    "users": "staff account",
}
# An archive's folders, what their files are, and how the names of those counted end (a kept
# lead's count of attempts goes with it).
FILES = [
    (archive.UPLOADS, "uploaded cover", ""),
    (archive.SPOOL, "kept lead", spool.RECORD),
    (archive.QUARANTINE, "quarantined lead", spool.RECORD),
]


def contents(manifest):
    """What an archive holds, in words: "12 leads, 30 emails, ... (schema revision 0004)"."""
    rows = manifest["database"]["rows"]
    counts = [counted(rows.get(table, 0), noun) for table, noun in CONTENTS.items()]
    for folder, noun, ending in FILES:
        names = archive.names_in(manifest, folder)
        counts.append(counted(sum(name.endswith(ending) for name in names), noun))
    return f"{', '.join(counts)} (schema revision {manifest['database']['revision']})"


def counted(number, noun):
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
