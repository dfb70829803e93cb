"""The connection to one database file: creation, pragmas (WAL), transactions, errors, migration.

Every write is a short ``BEGIN IMMEDIATE`` transaction (`ConnMixin._tx`), so readers never block
and writers queue instead of failing; SQLite errors become `StoreError` with a hint (`_error`).
"""
from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from .. import config
from ..errors import StoreError
from .schema import MIGRATIONS, SCHEMA_VERSION, run_script

#: WAL pages between automatic checkpoints (32 MiB of WAL at most, then truncated to 64 MiB)
CHECKPOINT_PAGES = 8192


def host() -> str:
    """This machine's name, as recorded with workers, attempts and actors."""
    return socket.gethostname()


def actor_name(role: str = "api") -> str:
    """Who did it, for the events table: ``role:user@host:pid``."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        user = str(os.getuid())
    return f"{role}:{user}@{host()}:{os.getpid()}"


class ConnMixin:
    """The connection (``self.conn``) of a `Store` and what it needs: pragmas, transactions, the schema."""

    def __init__(self, path: Path | str, *, migrate: bool = True):
        self.path = Path(path)
        self.conn = self._connect()
        if migrate:
            self.migrate()

    def _connect(self) -> sqlite3.Connection:
        """Open the file (created private if new) with nbjobs' pragmas; a clear `StoreError` if it cannot."""
        path = self.path
        try:
            config.make_private_dir(path.parent)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise StoreError(
                f"cannot create the nbjobs database in {path.parent} ({exc.strerror}); "
                "set NBJOBS_HOME to a folder you can write"
            ) from None
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot read and write {path}; fix its permissions or set NBJOBS_HOME elsewhere")
        try:
            # every statement of the store stays prepared (sqlite3 keeps 128 by default; the store has more)
            conn = sqlite3.connect(path, timeout=config.BUSY_TIMEOUT, isolation_level=None,
                                   check_same_thread=False, cached_statements=512)
            conn.row_factory = sqlite3.Row
            mode = self._set_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: fsync only at checkpoints
            # a checkpoint costs two fsyncs (2-10 ms here); every 1,000 pages (SQLite's default) that
            # was every ~30 jobs, a third of the queue's time.  Workers also checkpoint when idle.
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={CHECKPOINT_PAGES * 4096 * 2}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(config.BUSY_TIMEOUT * 1000)}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        if mode.lower() != "wal":
            raise StoreError(f"{path} cannot use WAL mode (got {mode}); put NBJOBS_HOME on a local disk")
        return conn

    @staticmethod
    def _set_wal(conn: sqlite3.Connection) -> str:
        """``PRAGMA journal_mode=WAL``, retried while another process converts a new database:
        SQLite answers the losers of that race SQLITE_BUSY at once, without the busy timeout."""
        deadline = time.monotonic() + config.BUSY_TIMEOUT
        while True:
            try:
                return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """The `StoreError` for a SQLite error, with what to do about it."""
        msg = str(exc)
        if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
            return StoreError(f"{self.path} is not a readable nbjobs database ({msg}); move it aside "
                              "(nbjobs then starts a new one) or restore a backup")
        if "locked" in msg or "busy" in msg:
            return StoreError(f"{self.path} stayed locked by another process for {config.BUSY_TIMEOUT:.0f} s "
                              f"({msg}); retry, or stop the process holding it")
        if "readonly" in msg or "unable to open" in msg or "disk I/O" in msg:
            return StoreError(f"cannot write {self.path} ({msg}); check its permissions and free disk space")
        return StoreError(f"{self.path}: {msg}")

    def close(self) -> None:
        """Close the connection (the object is unusable after)."""
        self.conn.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database now (PASSIVE: never waits for readers); workers call it
        when idle, so the fsyncs happen off the submit and claim paths."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def _tx(self) -> "_Tx":
        """A short write transaction (``with self._tx() as conn:``).  BEGIN IMMEDIATE takes the
        write lock up front, so the reads inside it see exactly the rows it then updates: this is
        what makes a claim atomic across processes.  An exception rolls it back."""
        return _Tx(self)

    def _q(self, sql: str, params: Iterable[Any] | dict = ()) -> list[sqlite3.Row]:
        """Run one read and return its rows (SQLite errors become `StoreError`)."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    # --- schema -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """The database's schema version (``PRAGMA user_version``)."""
        return self._q("PRAGMA user_version")[0][0]

    def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`, one forward step at a time.  Returns the version."""
        current = self.version
        if current > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer nbjobs (schema {current}, this one knows "
                             f"{SCHEMA_VERSION}); upgrade nbjobs: pip install -U nbjobs")
        if current == SCHEMA_VERSION:
            return current
        # a step may rebuild a table others reference (v15: jobs): with foreign keys on, dropping the
        # old one would cascade.  They are checked before the commit instead.  (A no-op in a transaction.)
        self.conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with self._tx() as conn:
                current = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
                apply_migrations(conn, current, SCHEMA_VERSION)
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StoreError(f"{self.path}: migrating to schema {SCHEMA_VERSION} would break "
                                     f"{len(broken)} references (first: {tuple(broken[0])}); nothing was changed")
        finally:
            self.conn.execute("PRAGMA foreign_keys=ON")
        return SCHEMA_VERSION

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap 'anything new?' check."""
        return self._q("PRAGMA data_version")[0][0]


def apply_migrations(conn: sqlite3.Connection, current: int, target: int) -> None:
    """Apply ``MIGRATIONS[current:target]`` in ``conn``'s open transaction, moving ``user_version``
    one step at a time (the tests also use it to make a home of an older version)."""
    for step in range(current, target):
        migration = MIGRATIONS[step]
        if callable(migration):  # a Python step (v8: the search index)
            migration(conn)
        else:
            run_script(conn, migration)
        conn.execute(f"PRAGMA user_version={step + 1}")


class _Tx:
    """`ConnMixin._tx`: a context manager class (a generator-based one costs more per transaction)."""

    __slots__ = ("store",)

    def __init__(self, store: ConnMixin):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.store.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.store._error(exc) from None
        return self.store.conn

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        conn = self.store.conn
        if kind is not None:
            conn.execute("ROLLBACK")
            return False
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            conn.execute("ROLLBACK")
            raise self.store._error(error) from None
        return False
