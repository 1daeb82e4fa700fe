"""Durable merchandiser feedback (accept / reject / add a tag for a product) in SQLite.

Each write is its own committed transaction with ``synchronous=FULL``, so an acknowledged answer
survives a crash or restart. Rows keep the product text, so a later training run can rebuild
(product, tag, label) pairs without the original catalog.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagindex.errors import InputError

logger = logging.getLogger(__name__)

ACTIONS = ("accept", "reject", "add")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    product_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    attributes TEXT NOT NULL,
    tag TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'add')),
    score REAL,
    user TEXT,
    comment TEXT,
    index_fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS feedback_product ON feedback (product_id);
CREATE INDEX IF NOT EXISTS feedback_tag ON feedback (tag);
"""


@dataclass
class FeedbackRecord:
    """One judgement of one tag for one product."""

    product_id: str
    title: str
    tag: str
    action: str
    description: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    user: str | None = None
    comment: str | None = None
    index_fingerprint: str | None = None
    id: int | None = None
    created: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "product_id": self.product_id,
            "title": self.title,
            "description": self.description,
            "attributes": self.attributes,
            "tag": self.tag,
            "action": self.action,
            "score": self.score,
            "user": self.user,
            "comment": self.comment,
            "index_fingerprint": self.index_fingerprint,
        }


class FeedbackStore:
    """Append-only feedback table in one SQLite file, safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: writes are rare and tiny, and SQLite serialises them anyway.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)

    def add(self, records: list[FeedbackRecord]) -> list[FeedbackRecord]:
        """Stores records in one transaction; returns them with ``id`` and ``created`` set."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for r in records:
            if r.action not in ACTIONS:
                raise ValueError(f"action must be one of {ACTIONS}, not '{r.action}'")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for r in records:
                    cur = self._conn.execute(
                        "INSERT INTO feedback (created, product_id, title, description, attributes, tag, "
                        "action, score, user, comment, index_fingerprint) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    )
                    r.id = cur.lastrowid
                    r.created = created
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return records

    def records(
        self, limit: int = 100, product_id: str | None = None, tag: str | None = None, after_id: int = 0
    ) -> list[FeedbackRecord]:
        """Records in insertion order, optionally filtered, starting after ``after_id``.

        Raises:
            InputError: ``after_id`` or ``limit`` is outside SQLite's signed 64-bit integers.
        """
        for name, value in (("after_id", after_id), ("limit", limit)):
            if not -(2**63) <= value < 2**63:
                raise InputError(f"{name} {value} is outside the 64-bit integer range of row ids")
        sql = "SELECT * FROM feedback WHERE id > ?"
        args: list[Any] = [after_id]
        if product_id is not None:
            sql += " AND product_id = ?"
            args.append(product_id)
        if tag is not None:
            sql += " AND tag = ?"
            args.append(tag)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            cur = self._conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [_record(dict(zip(names, row, strict=True))) for row in rows]

    def __iter__(self) -> Iterator[FeedbackRecord]:
        after = 0
        while batch := self.records(limit=1000, after_id=after):
            yield from batch
            after = batch[-1].id or after

    def export_products(self) -> list[dict[str, Any]]:
        """Feedback as a products file for training: one row per product, the latest judgement of
        each (product, tag) deciding; ``tags`` = accepted or added, ``rejected`` = rejected.

        Rows follow the products format (id, title, description, attributes, tags), so
        ``load_products`` reads them; ``rejected`` is extra, for hard negatives.
        """
        latest: dict[str, dict[str, str]] = {}
        product: dict[str, FeedbackRecord] = {}
        for r in self:  # insertion order, so later judgements overwrite earlier ones
            latest.setdefault(r.product_id, {})[r.tag] = r.action
            product[r.product_id] = r
        rows = []
        for pid, actions in latest.items():
            p = product[pid]
            rows.append(
                {
                    "id": pid,
                    "title": p.title,
                    "description": p.description,
                    "attributes": p.attributes,
                    "tags": [t for t, a in actions.items() if a in ("accept", "add")],
                    "rejected": [t for t, a in actions.items() if a == "reject"],
                }
            )
        return rows

    def delete(self, ids: list[int] | tuple[int, ...] | Any) -> list[int]:
        """Deletes rows by id in one transaction; returns the ids that existed (sorted)."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                found = [
                    r[0] for r in self._conn.execute(f"SELECT id FROM feedback WHERE id IN ({marks})", wanted)
                ]
                self._conn.execute(f"DELETE FROM feedback WHERE id IN ({marks})", wanted)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return sorted(found)

    def ids(self) -> set[int]:
        """Every stored row id."""
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT id FROM feedback")}

    def product_ids(self) -> set[str]:
        """Ids of every product with at least one judgement."""
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT DISTINCT product_id FROM feedback")}

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def ping(self) -> None:
        """Raises sqlite3.Error when the database is unusable."""
        with self._lock:
            self._conn.execute("SELECT 1 FROM feedback LIMIT 1").fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _record(row: dict[str, Any]) -> FeedbackRecord:
    row["attributes"] = json.loads(row["attributes"])
    return FeedbackRecord(**row)
