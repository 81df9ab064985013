"""Flask extensions, created unbound and initialised by the application factory."""

import ipaddress
import math
import time
from pathlib import Path

from flask import current_app
from flask_compress import Compress
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase

from app import database_deadline
from app.mail import SiteMail

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def include_in_autogenerate(object, name, type_, reflected, compare_to):
    """Leave out the PostgreSQL-only search index made by hand in migration 0003."""
    return not (type_ == "index" and reflected and name == "ix_leads_search")


# hide_parameters: a logged database error never carries what a visitor typed.
# No pool_pre_ping: app/database_deadline.py pings each pooled connection before use instead
# (one PostgreSQL closed is replaced, rather than failing a lead being sent), where a time
# limit can cut a ping that a host gone silent would hold for minutes.
db = SQLAlchemy(model_class=Base, engine_options={"hide_parameters": True})
# What "the database cannot be reached now" looks like: refused, dropped, timed out connecting
# (DATABASE_CONNECT_TIMEOUT), or no pooled connection free within the pool's timeout.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)


def cause_of(error):
    """The driver's exception behind a DBAPI error; a pool timeout is its own cause."""
    return getattr(error, "orig", error)


migrate = Migrate(render_as_batch=True, compare_type=True, include_object=include_in_autogenerate)
compress = Compress()
mail = SiteMail()


def client_network():
    """Who rate limits count a request against: the client's IPv4 address, or the /64 of its
    IPv6 address, the block one household or server is given, so that moving to another
    address inside it gains nothing."""
    address = get_remote_address()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 4:
        return address
    if parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False).network_address)


limiter = Limiter(key_func=client_network)


def shared_key(*parts):
    """A counter's key parts in the shared store, under RATELIMIT_KEY_PREFIX when one is set."""
    return [part for part in (current_app.config["RATELIMIT_KEY_PREFIX"], *parts) if part]


def seconds_until(reset_time):
    """Whole seconds, at least one, until a limit's window (limits' reset_time) lets a hit in."""
    return max(1, math.ceil(reset_time - time.time()))


login_manager = LoginManager()
csrf = CSRFProtect()


def init_app(app):
    db.init_app(app)
    with app.app_context():
        database_deadline.init_engine(db.engine)
    # The scripts beside the package, so `flask db` works from any directory.
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    compress.init_app(app)
    mail.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    csrf.init_app(app)
