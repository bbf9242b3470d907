"""A bench database on the local PostgreSQL server: connection parameters, its URL, the Django environment
against it, and dropping, creating, migrating and analysing it.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg2
import psycopg2.extensions

from bench.harness import LOOPBACK, REPO_ROOT, SetupError, run_checked

DEFAULT_PG_URL = f"postgres://postgres@{LOOPBACK}:5432"


@dataclass(frozen=True)
class Database:
    """One database (`name`) on the PostgreSQL server at `pg_url` (a URL without a database, loopback only)."""

    pg_url: str = DEFAULT_PG_URL
    name: str = "rlhf_bench"

    def params(self, dbname: str | None = None) -> dict[str, Any]:
        """psycopg2 connection parameters for this database (or `dbname` on the same server); refuses anything
        but the loopback interface."""
        url = urlparse(self.pg_url)
        host = url.hostname or LOOPBACK
        if host not in {LOOPBACK, "localhost"}:
            raise SetupError(f"--pg-url must point at {LOOPBACK}; got {host!r}")
        params: dict[str, Any] = {"host": LOOPBACK, "port": url.port or 5432, "dbname": dbname or self.name}
        params["user"] = unquote(url.username or "postgres")
        if url.password:
            params["password"] = unquote(url.password)
        return params

    def url(self) -> str:
        """The DATABASE_URL of this database, on the loopback address as `params` connects."""
        url = urlparse(self.pg_url)
        return url._replace(netloc=url.netloc.replace("localhost", LOOPBACK), path=f"/{self.name}").geturl()

    def connect(self, dbname: str | None = None) -> psycopg2.extensions.connection:
        return psycopg2.connect(**self.params(dbname))

    def recreate(self, *, create: bool = True) -> None:
        """Drop the database (closing whatever is still connected to it) and, unless `create` is off, create it
        again, empty."""
        admin = self.connect("postgres")
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                name = psycopg2.extensions.quote_ident(self.name, cursor)
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                if create:
                    cursor.execute(f"CREATE DATABASE {name}")
        finally:
            admin.close()

    def drop(self) -> None:
        self.recreate(create=False)

    def migrate(self, env: dict[str, str]) -> None:
        """`manage.py migrate` with `env` (see django_environment), which must point at this database."""
        run_checked([sys.executable, "manage.py", "migrate", "--noinput"], env, "migrate")

    def analyze(self) -> None:
        """Fresh planner statistics, as autovacuum keeps them in a live database (tables grow during a run)."""
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute("ANALYZE")
        finally:
            conn.close()


def django_environment(database: Database, **extra: str) -> dict[str, str]:
    """The environment of a bench's Django processes: production settings (DEBUG off, plain HTTP on the loopback
    interface) against `database`, then `extra` on top."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="backend.settings.production",
        SECRET_KEY=secrets.token_hex(25),
        DEBUG="0",
        ALLOWED_HOSTS=f"{LOOPBACK},localhost",
        SECURE_COOKIES="0",
        DATABASE_URL=database.url(),
        CELERY_BROKER_URL=f"redis://{LOOPBACK}:6379/0",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env
