"""The source URL, parsed once into one object, and the redaction of its passwords from every message.

No error repeats a password from a URL: messages end up in terminals and CI logs.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from src.pipeline import config

# What to do about a driver's cause, by the words it says it in (SQLite's own messages).
HINTS = {
    "database is locked": "another process holds a lock on the file (an open write transaction, e.g. "
    "BEGIN EXCLUSIVE); run gather again once it has committed or ended",
    "file is not a database": "the file is not a SQLite database: point the source URL at the source's "
    ".sqlite file; `make source` builds the demo one",
    "unable to open database file": "the file cannot be opened: check its permissions and its folder's",
}


class SourceError(RuntimeError):
    """The source cannot be read as the snapshot needs it."""


@dataclass(frozen=True)
class SourceURL:
    """A parsed source URL: what to connect to, and how to name it without its password."""

    url: str
    parsed: sa.URL
    shown: str  # safe to print
    sqlite_path: Path | None  # the existing file of a SQLite source

    @property
    def backend(self) -> str:
        return self.parsed.get_backend_name()

    def error(self, text: str) -> SourceError:
        # A driver may quote its connection string (password included) back,
        # over several lines: one line, never a password.
        hints = [hint for cause, hint in HINTS.items() if cause in text]
        line = " ".join(text.split()) + "".join(f" ({hint})" for hint in hints)
        return SourceError(redacted(line, self.url))


def parse_url(url: str) -> SourceURL:
    """Parse the source URL `url`; a missing SQLite file is an error, not a new empty database."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        # Not quoted back: any part of an unparsed URL may be the password.
        raise SourceError(
            f"the source URL is not a database URL; set {config.SOURCE_URL_ENV} to one like "
            "postgresql://user@host/database or sqlite:///path/to/source.sqlite"
        ) from None
    shown = shown_url(url)
    sqlite_path = None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        problem = directory_problem(parsed)
        if problem is not None:
            raise SourceError(redacted(f"the source {problem} (the demo's is data/source/source.sqlite)", url))
        if not database or database == ":memory:" or not Path(database).is_file():
            raise SourceError(
                redacted(
                    f"source database not found: {database or shown} (build the demo with `make source`, "
                    "or ingest a table: `python -m src.tools.ingest`)",
                    url,
                )
            )
        sqlite_path = Path(database).resolve()
    return SourceURL(url, parsed, shown, sqlite_path)


def directory_problem(parsed: sa.URL) -> str | None:
    """What is wrong with a SQLite URL whose path is a directory (a file is meant), else None."""
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and Path(database).is_dir():
        return f"database {database} is a directory, not a SQLite file: point the URL at the .sqlite file inside it"
    return None


def shown_url(url: str) -> str:
    """`url` as safe to print: without its passwords, or nothing of it if it does not parse."""
    try:
        return redacted(sa.engine.make_url(url).render_as_string(hide_password=True), url)
    except (sa.exc.ArgumentError, ValueError):
        return "<url>"


def redacted(message: str, url: str) -> str:
    """`message` without the URL or its passwords: errors end up in terminals and CI logs.

    A password may sit in the user part (`user:secret@host`) or in a query
    parameter (`?password=secret`, libpq's `sslpassword`), plain or URL-encoded.
    """
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return message.replace(url, "<url>")  # not even parsed: any part of it may be the secret
    passwords = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if "password" in key.lower():
            passwords.extend([value] if isinstance(value, str) else value)
    # The raw text as written, in case its encoding differs from what quote() gives back.
    passwords += re.findall(r"(?i)[?&][^=&]*password[^=&]*=([^&#]*)", url)
    passwords += re.findall(r"^[^:/]+://[^:/@?]*:([^@/?]*)@", url)
    passwords = [password for password in passwords if password]
    secrets = {url} if passwords else set()  # a URL without a password is worth showing
    for password in passwords:
        secrets |= {
            password,
            urllib.parse.unquote_plus(password),
            urllib.parse.quote(password, safe=""),
            urllib.parse.quote_plus(password),
        }
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
