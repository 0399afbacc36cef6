"""A throwaway PostgreSQL cluster for tests: `initdb` in a temporary folder, a Unix socket only.

The server listens on no TCP address at all (listen_addresses=''), only on a
socket in its own folder, so nothing outside the test can reach it. fsync is
off: a crash loses a cluster that is thrown away anyway. Under root, initdb
and postgres refuse to run, so they run as the `postgres` user (runuser) in
folders it owns. Start and stop times are kept on the cluster object, for the
report. Under CI=true missing server binaries fail the test: .ci/run installs
them, and a skip would hide that it did not.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "postgres"
# Debian's packages keep the server binaries off PATH, one folder per major version.
DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
PORT = 5432  # only names the socket file (.s.PGSQL.5432) in the cluster's own folder
START_TIMEOUT_S = 60


def server_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: PATH first, else Debian's newest."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []

    def major(path: str) -> int:
        match = re.search(r"/(\d+)/bin$", path)
        return int(match.group(1)) if match else 0

    candidates += [Path(path) for path in sorted(glob.glob(DEBIAN_BIN_DIRS), key=major, reverse=True)]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


@dataclass
class Cluster:
    bin_dir: Path
    base: Path  # owns data/, socket/ and server.log
    initdb_args: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)  # seconds: initdb, start, stop

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    def url(self, database: str = SUPERUSER, user: str = SUPERUSER, password: str | None = None) -> str:
        """A postgresql:// URL through the socket (SQLAlchemy and libpq both read it)."""
        auth = user if password is None else f"{user}:{urllib.parse.quote(password, safe='')}"
        return f"postgresql://{auth}@/{database}?host={urllib.parse.quote(str(self.socket_dir), safe='')}"

    def _run(self, args: list[str]) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.base)
        if result.returncode != 0:
            log = self.base / "server.log"
            raise RuntimeError(
                f"{' '.join(args[:2])} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
                + (f"\n--- server.log\n{log.read_text()}" if log.exists() else "")
            )

    def init(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SUPERUSER)
            for path in (self.base, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        started = time.perf_counter()
        # Trust on the socket for the superuser only: the tests' other roles log
        # in with a password, as a real deployment's would.
        self._run(
            [
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=reject",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
                *self.initdb_args,
            ]
        )
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all {SUPERUSER} trust\nlocal all all scram-sha-256\n")
        self.timings["initdb"] = time.perf_counter() - started

    def start(self) -> None:
        options = " ".join(
            [
                "-c listen_addresses=''",
                f"-c unix_socket_directories='{self.socket_dir}'",
                f"-p {PORT}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                # Tables created and filled in one transaction, and rewrites such as
                # CLUSTER, then write no WAL: loads are faster and the folder smaller.
                "-c wal_level=minimal",
                "-c max_wal_senders=0",
            ]
        )
        started = time.perf_counter()
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.base / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ]
        )
        self.timings["start"] = time.perf_counter() - started

    def stop(self) -> None:
        started = time.perf_counter()
        self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
        self.timings["stop"] = time.perf_counter() - started

    def execute(self, *statements: str, database: str = SUPERUSER) -> list[tuple]:
        """Run statements as the superuser (autocommit: VACUUM refuses a transaction); the last one's rows."""
        import psycopg  # the tests that need no cluster do not pay for it

        rows: list[tuple] = []
        with psycopg.connect(self.url(database), autocommit=True) as connection:
            for statement in statements:
                cursor = connection.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def create_database(self, name: str, owner: str = SUPERUSER, locale: str | None = None) -> str:
        """A new database owned by `owner` (so it may create tables in it); `locale` overrides the collation."""
        collation = f" TEMPLATE template0 LOCALE_PROVIDER libc LOCALE '{locale}'" if locale else ""
        self.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"{collation}')
        return name

    def create_role(self, name: str, password: str) -> None:
        self.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")

    def report(self) -> str:
        return "PostgreSQL cluster: " + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in self.timings.items())


def binaries_or_skip() -> Path:
    folder = server_bin_dir()
    if folder is None:
        message = f"PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor in {DEBIAN_BIN_DIRS}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@contextmanager
def running_cluster(*initdb_args: str) -> Iterator[Cluster]:
    """A started cluster in a new temporary folder; stopped and removed afterwards.

    The folder is made with tempfile, not pytest's tmp_path: pytest's is private
    to the current user, and the server runs as another.
    """
    bin_dir = binaries_or_skip()
    base = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    cluster = Cluster(bin_dir, base, initdb_args)
    try:
        cluster.init()
        cluster.start()
        print(cluster.report())
        try:
            yield cluster
        finally:
            cluster.stop()
            print(cluster.report())
    finally:
        shutil.rmtree(base, ignore_errors=True)
