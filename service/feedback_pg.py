"""Merchandiser feedback in Postgres, shared by every replica of the service.

Same interface and semantics as :class:`tagindex.service.feedback.FeedbackStore` (SQLite): each
``add`` is one committed transaction, rows keep the product text, ``records`` pages by id. Chosen by
:func:`open_feedback_store` when ``TAGINDEX_FEEDBACK_URL`` is a ``postgresql://`` URL; SQLite stays
the embedded default. Needs ``tagindex[postgres]`` (psycopg 3).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from tagindex.service.feedback import ACTIONS, FeedbackRecord, FeedbackStore

from tagindex.errors import InputError

logger = logging.getLogger(__name__)

# Two replicas starting together must not both create the table: the DDL runs under this advisory lock.
_DDL_LOCK = 0x7461_6769  # "tagi"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY,
    created TEXT NOT NULL,
    product_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    attributes JSONB NOT NULL,
    tag TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'add')),
    score DOUBLE PRECISION,
    "user" TEXT,
    comment TEXT,
    index_fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS feedback_product ON feedback (product_id);
CREATE INDEX IF NOT EXISTS feedback_tag ON feedback (tag);
"""
_COLUMNS = (
    'id, created, product_id, title, description, attributes, tag, action, score, "user", comment, '
    "index_fingerprint"
)


class FeedbackBackend(Protocol):
    """What the service needs from a feedback store (SQLite or Postgres)."""

    def add(self, records: list[FeedbackRecord]) -> list[FeedbackRecord]: ...

    def records(
        self, limit: int = 100, product_id: str | None = None, tag: str | None = None, after_id: int = 0
    ) -> list[FeedbackRecord]: ...

    def __iter__(self) -> Iterator[FeedbackRecord]: ...

    def export_products(self) -> list[dict[str, Any]]: ...

    def count(self) -> int: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


class PostgresFeedbackStore(FeedbackStore):
    """Append-only feedback table in a Postgres database, safe to share between threads and replicas.

    One connection guarded by a lock (writes are rare and tiny); a connection lost to a database
    restart is reopened on the next call.
    """

    def __init__(self, url: str, connect_timeout: int = 10) -> None:  # noqa: D107
        try:
            import psycopg
        except ImportError as exc:
            raise InputError(f"a postgresql:// feedback URL needs tagindex[postgres]: {exc}") from None
        self._psycopg = psycopg
        self.url = url
        self.path = Path(_redact(url))  # shown in logs in place of the SQLite file
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
            except self._psycopg.OperationalError as exc:
                where = _redact(self.url)
                raise ConnectionError(f"cannot connect to feedback database {where}: {exc}") from None
        return self._conn

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """Runs ``work(connection)`` under the lock; a broken connection is reopened once."""
        with self._lock:
            try:
                return work(self._connection())
            except self._psycopg.OperationalError:
                if self._conn is not None and not self._conn.closed:
                    raise
                logger.warning("feedback database connection lost; reconnecting to %s", _redact(self.url))
                self._conn = None
                return work(self._connection())

    def add(self, records: list[FeedbackRecord]) -> list[FeedbackRecord]:
        """Stores records in one transaction; returns them with ``id`` and ``created`` set."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for r in records:
            if r.action not in ACTIONS:
                raise ValueError(f"action must be one of {ACTIONS}, not '{r.action}'")

        def insert(conn: Any) -> None:
            with conn.transaction():
                for r in records:
                    row = conn.execute(
                        "INSERT INTO feedback (created, product_id, title, description, attributes, tag, "
                        'action, score, "user", comment, index_fingerprint) '
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                        (
                            created,
                            r.product_id,
                            r.title,
                            r.description,
                            json.dumps(r.attributes, ensure_ascii=False),
                            r.tag,
                            r.action,
                            r.score,
                            r.user,
                            r.comment,
                            r.index_fingerprint,
                        ),
                    ).fetchone()
                    r.id = int(row[0])
                    r.created = created

        self._run(insert)
        return records

    def records(
        self, limit: int = 100, product_id: str | None = None, tag: str | None = None, after_id: int = 0
    ) -> list[FeedbackRecord]:
        """Records in id order, optionally filtered, starting after ``after_id``."""
        sql = f"SELECT {_COLUMNS} FROM feedback WHERE id > %s"
        args: list[Any] = [after_id]
        if product_id is not None:
            sql += " AND product_id = %s"
            args.append(product_id)
        if tag is not None:
            sql += " AND tag = %s"
            args.append(tag)
        sql += " ORDER BY id LIMIT %s"
        args.append(limit)
        rows = self._run(lambda conn: conn.execute(sql, args).fetchall())
        names = [c.strip().strip('"') for c in _COLUMNS.split(",")]
        return [FeedbackRecord(**dict(zip(names, row, strict=True))) for row in rows]

    def count(self) -> int:
        return int(self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]))

    def ping(self) -> None:
        """Raises ConnectionError when the database is unreachable or unusable."""
        try:
            self._run(lambda conn: conn.execute("SELECT 1 FROM feedback LIMIT 1").fetchall())
        except self._psycopg.Error as exc:
            raise ConnectionError(f"feedback database {_redact(self.url)}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


def _redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def open_feedback_store(target: str | Path) -> FeedbackBackend:
    """The feedback store a setting names: ``postgresql://...`` (or ``postgres://``) opens Postgres,
    ``sqlite:///path`` or a plain path opens SQLite.

    Raises:
        InputError: An unknown URL scheme, or Postgres without psycopg installed.
        ConnectionError: The Postgres server cannot be reached.
    """
    text = str(target)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresFeedbackStore(text)
    if scheme == "sqlite":
        return FeedbackStore(text.split("://", 1)[1])
    if scheme:
        raise InputError(f"feedback store '{_redact(text)}': unknown scheme '{scheme}' (postgresql, sqlite)")
    return FeedbackStore(text)
