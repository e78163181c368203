"""Engine and session factory. SQLite runs in WAL mode with a busy timeout, so the service's
processes (API, SIP workers, ASR workers, scheduler) can share one database file."""
from __future__ import annotations

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_engines: dict[str, Engine] = {}


def _sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL (None for in-memory databases)."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - create_engine reports a bad URL
        return None
    db = u.database or ""
    if not db or db == ":memory:" or db.startswith("file:") or (u.query or {}).get("mode") == "memory":
        return None
    return db


def secure_sqlite_files(url: str) -> None:
    """The database file is created 0600 before SQLite opens it (SQLite gives its -wal and -shm
    files the database file's mode), and an existing database, WAL and shared-memory file are set
    to 0600: they hold every case, identity included."""
    import os

    path = _sqlite_path(url)
    if path is None:
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        return  # no such folder, read-only: SQLite reports it on connect
    for p in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            if os.stat(p).st_mode & 0o777 != 0o600:
                os.chmod(p, 0o600)
        except OSError:  # absent, or not ours
            pass


def make_engine(url: str) -> Engine:
    if url in _engines:
        return _engines[url]
    kwargs: dict = {"future": True}
    if url.startswith("sqlite"):
        secure_sqlite_files(url)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # pysqlite's own transaction handling is off; SQLAlchemy emits BEGIN below
            # (conn.info["begin_mode"] = "IMMEDIATE" before the first statement takes the write lock early).
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            mode = conn.info.pop("begin_mode", None) or conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

    _engines[url] = engine
    return engine


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=make_engine(url), expire_on_commit=False, future=True)


def write_session(factory: sessionmaker[Session]) -> Session:
    """A session whose transaction takes the write lock at its first statement (SQLite:
    ``BEGIN IMMEDIATE``, which waits up to the busy timeout instead of failing when a read
    transaction later wants to write; other backends: an ordinary transaction)."""
    s = factory()
    if s.get_bind().dialect.name == "sqlite":
        s.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    return s


def dispose_all() -> None:
    for e in _engines.values():
        e.dispose()
    _engines.clear()
