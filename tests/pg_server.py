"""A real PostgreSQL server for the tests: initdb into a temporary directory, start, stop.

Binaries: ``initdb``/``pg_ctl``/``postgres`` on PATH, else the newest ``/usr/lib/postgresql/*/bin``
(Debian's ``postgresql`` package puts them only there). Missing, a test that needs them skips
with the reason, and fails under ``CI=true`` (as ``tools.require_tool``). initdb refuses to run
as root, so as root (CI) the cluster belongs to the ``postgres`` user that Debian's package
creates, or else to ``nobody``.

The server listens on 127.0.0.1 only, on a free port, its socket in the temporary directory;
fsync is off (a test cluster need not survive a crash). Every connection authenticates with a
password (scram-sha-256), as in production, so DSNs carry a password and the store's redaction
is exercised.

Fixtures: ``pg_server`` (session: one server; ``execute`` runs SQL as the superuser, e.g.
``pg_terminate_backend``) and ``pg_dsn`` (a DSN to a fresh empty database of its own, owned by
the unprivileged role ``fotawatch``, dropped afterwards). ``PgServer.create()`` starts another
server for a test that must stop or restart one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from tools import in_ci

__all__ = ["PgServer", "free_port", "pg_bindir", "pg_dsn", "pg_server"]

_TOOLS = ("initdb", "pg_ctl", "postgres")
_DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
_HINT = "apt-get install postgresql (Debian/Ubuntu)"
_ROLE = "fotawatch"  # the store's role: owns its test databases, no superuser
_ADMIN = "postgres"
_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
"""


def pg_bindir() -> Path:
    """The directory of initdb/pg_ctl/postgres; skip the test without them (fail under CI)."""
    found = _find_bindir()
    if found is not None:
        return found
    reason = f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found ({_HINT})"
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so this is an error, not a skip", pytrace=False)
    pytest.skip(reason)


def _find_bindir() -> Path | None:
    on_path = [shutil.which(tool) for tool in _TOOLS]
    if all(on_path):
        return Path(str(on_path[0])).resolve().parent
    debian = [p for p in Path("/").glob(_DEBIAN_BINDIRS.lstrip("/")) if _complete(p)]
    return max(debian, key=_major, default=None)


def _complete(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in _TOOLS)


def _major(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class _Account:
    """The OS user the server runs as; None for ourselves."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_server(cls) -> _Account:
        if os.geteuid() != 0:
            return cls()
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return cls(uid=entry.pw_uid, gid=entry.pw_gid)
        pytest.fail("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL as")

    def temp_root(self) -> Path:
        """Where the cluster's directory goes: somewhere the server's user can reach."""
        root = Path(tempfile.gettempdir()).resolve()
        reachable = all(p.stat().st_mode & stat.S_IXOTH for p in (root, *root.parents))
        return root if self.uid is None or reachable else Path("/tmp")

    def own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def run(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        as_user: dict[str, Any] = {}
        if self.uid is not None:
            as_user = {"user": self.uid, "group": self.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(  # noqa: PLW1510 - the caller reads returncode
            [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=120, **as_user,
        )  # fmt: skip


@dataclass(slots=True, kw_only=True)
class PgServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:``port``."""

    bindir: Path
    base: Path
    account: _Account
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(12))  # of role fotawatch
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))
    host: str = "127.0.0.1"
    user: str = _ROLE

    @classmethod
    def create(cls) -> PgServer:
        """initdb a new cluster and start it (stop it with ``destroy``)."""
        bindir, account = pg_bindir(), _Account.for_server()
        base = Path(tempfile.mkdtemp(prefix="fotawatch-pg-", dir=account.temp_root()))
        server = cls(bindir=bindir, base=base, account=account)
        try:
            server._initdb()
            server.start()
            server.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(_ROLE), sql.Literal(server.password)
                )
            )
        except BaseException:
            server.destroy()
            raise
        return server

    @property
    def data(self) -> Path:
        return self.base / "data"

    def dsn(self, dbname: str, *, user: str | None = None, password: str | None = None) -> str:
        """A URI DSN with the password in it, as an operator would write one."""
        who = user or self.user
        secret = password if password is not None else self._password_of(who)
        return f"postgresql://{who}:{secret}@{self.host}:{self.port}/{dbname}"

    def execute(self, query: Any, params: Any = None, *, dbname: str = "postgres") -> list[Any]:
        """Run one statement as the superuser (autocommit); the rows, if it returns any."""
        with psycopg.connect(self.dsn(dbname, user=_ADMIN), autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def create_database(self) -> str:
        """A new empty database owned by role fotawatch; its name."""
        name = f"t_{uuid.uuid4().hex}"
        self.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(_ROLE)))  # fmt: skip
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any session still connected to it."""
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self.execute(drop.format(sql.Identifier(name)))

    def start(self) -> None:
        """Start the server (on a new free port the first time) and wait until it accepts."""
        attempts = 3 if self.port == 0 else 1
        for _ in range(attempts):
            port = self.port or free_port()
            self._configure(port)
            done = self._pg_ctl("start", "-w", "-t", "60", "-l", self.base / "server.log")
            if done.returncode == 0:
                self.port = port
                return
        log = (self.base / "server.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"PostgreSQL did not start: {done.stderr.strip()}\n{log}", pytrace=False)

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` (as a crash would), ``fast`` or ``smart``."""
        self._pg_ctl("stop", "-w", "-m", mode)

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def _password_of(self, user: str) -> str:
        return self.admin_password if user == _ADMIN else self.password

    def _initdb(self) -> None:
        self.account.own(self.base)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        self.account.own(pwfile)
        done = self.account.run(
            self.bindir / "initdb", "-D", self.data, "-U", _ADMIN, f"--pwfile={pwfile}",
            "-A", "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", cwd=self.base,
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode != 0:
            pytest.fail(f"initdb failed: {done.stderr.strip()[-2000:]}", pytrace=False)

    def _configure(self, port: int) -> None:
        settings = _SETTINGS.format(port=port, socket_dir=self.base)
        (self.data / "postgresql.auto.conf").write_text(settings)

    def _pg_ctl(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.account.run(self.bindir / "pg_ctl", "-D", self.data, *args, cwd=self.base)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session, removed at its end."""
    server = PgServer.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """A DSN (with password) to a fresh empty database of this test, dropped afterwards."""
    name = pg_server.create_database()
    try:
        yield pg_server.dsn(name)
    finally:
        pg_server.drop_database(name)
