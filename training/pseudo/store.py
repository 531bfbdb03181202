"""The label store: every teacher answer, kept in one SQLite file so no call is paid twice.

A labelling run is long (hundreds of videos, two paid calls each) and may be killed at
any moment, so each outcome is written in its own transaction (WAL journal): after a kill
every finished video is in the file and no half row is. The primary key is the
:class:`LabelKey` (content hash, prompt version, provider, model, sampling), the exact
identity of a call; a rerun looks each key up before calling.

Final outcomes (labelled, refused) are kept: a later :meth:`LabelStore.put` for the same
key leaves them alone unless ``force``; a failed outcome is replaced by the next try. A
replacement keeps what the outcome it replaces was billed (its tokens and cost are added
to the new row's), so the rows add up to everything paid, failed tries included.
The store holds what the records hold: answers, token counts, costs, errors. Every text
column passes through the run's :class:`~training.pseudo.redact.Redactor` on its way in,
so a key the server echoed into an answer, a reasoning or an error is never written.

The same content under a second video id (a duplicated file in a dataset) is not paid
for again: the run records the second id as an alias of the stored call
(:meth:`LabelStore.add_alias`), and :meth:`LabelStore.labels` lists the outcome once per
id, so training finds the label under either name. An outcome stored under one id and
replaced under another (the first id's try failed, its duplicate's succeeded) keeps the
first id as an alias: every id the call was made for stays listed.

Example:
    >>> with LabelStore.open(Path("labels.sqlite")) as store:  # doctest: +SKIP
    ...     store.put(key, "v1", outcome)
    ...     store.get(key).outcome.status
    <Status.LABELLED: 'labelled'>
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from training.pseudo.records import (
    LabelKey,
    LabelOutcome,
    Status,
    StoredLabel,
    Usage,
    Verdict,
)
from training.pseudo.redact import Redactor

SCHEMA_VERSION = 1
FINAL = (Status.LABELLED, Status.REFUSED)
"""Outcomes a rerun keeps (a refusal is an answer too: asking again is paying again)."""
KEY_COLUMNS = ("content_hash", "prompt_version", "provider", "model", "sampling")
_COLUMNS = (*KEY_COLUMNS, "video_id", "status", "label", "confidence", "reasoning",
            "provisional", "responses", "input_tokens", "output_tokens", "cost_usd",
            "attempts", "error", "seconds", "created", "call_seconds")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    content_hash TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    sampling TEXT NOT NULL,
    video_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('labelled', 'refused', 'failed')),
    label TEXT CHECK (label IN ('negative', 'positive')),
    confidence REAL,
    reasoning TEXT,
    provisional TEXT,
    responses TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL,
    attempts INTEGER NOT NULL,
    error TEXT,
    seconds REAL NOT NULL,
    created TEXT NOT NULL,
    call_seconds REAL,
    PRIMARY KEY (content_hash, prompt_version, provider, model, sampling),
    CHECK ((status = 'labelled') = (label IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS labels_video ON labels (video_id);
"""

_ALIASES = """
CREATE TABLE IF NOT EXISTS aliases (
    content_hash TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    sampling TEXT NOT NULL,
    video_id TEXT NOT NULL,
    PRIMARY KEY (content_hash, prompt_version, provider, model, sampling, video_id)
);
"""


class StoreError(ValueError):
    """A file that is not a label store this version can use; the message names it."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LabelStore:
    """One SQLite label store. Not shared across threads; several processes may write it
    (SQLite locks; each put is one statement)."""

    def __init__(self, path: Path, connection: sqlite3.Connection,
                 redact: Redactor | None = None) -> None:
        self.path = path
        self._db = connection
        self.redact = redact or Redactor()

    @classmethod
    def open(cls, path: Path | str, redact: Redactor | None = None) -> LabelStore:
        """Open the store at ``path``, creating it (and its folder) when absent;
        ``redact`` blanks the run's secrets from every text :meth:`put` writes.

        Raises :class:`StoreError` when the file is not an SQLite database, not a label
        store, or a store of a schema this version does not know.
        """
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"label store {path} is a folder; pass a file path such as "
                             f"{path / 'labels.sqlite'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses
            # no committed transaction (only a power cut might lose the last ones)
            cls._prepare(path, db)
        except sqlite3.OperationalError as error:
            db.close()
            if "locked" not in str(error):
                raise StoreError(f"label store {path} cannot be opened ({error})") from None
            raise StoreError(f"label store {path} stayed locked by another process for "
                             "30 s; wait for it or pass another --out") from None
        except sqlite3.DatabaseError as error:
            db.close()
            raise StoreError(f"{path} is not a label store ({error}): pass another --out, "
                             "or move that file away") from None
        except BaseException:
            db.close()
            raise
        return cls(path, db, redact)

    @staticmethod
    def _prepare(path: Path, db: sqlite3.Connection) -> None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE "
                                               "type = 'table'")}
        if tables and "meta" not in tables:
            raise StoreError(f"{path} is an SQLite file but not a label store (tables: "
                             f"{sorted(tables)}): pass another --out")
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            found = row[0] if row else None
            if found != str(SCHEMA_VERSION):
                raise StoreError(f"label store {path} has schema version {found}; this "
                                 f"hidemo reads version {SCHEMA_VERSION}: use the hidemo "
                                 "that wrote it (or a newer one), or pass another --out")
            if "aliases" not in tables:  # stores made before aliases existed gain the table
                db.executescript(f"BEGIN IMMEDIATE; {_ALIASES} COMMIT;")
            columns = {row[1] for row in db.execute("PRAGMA table_info(labels)")}
            if "call_seconds" not in columns:  # older rows: not measured (NULL)
                db.execute("ALTER TABLE labels ADD COLUMN call_seconds REAL")
            return
        # One transaction: a store is either created whole or not at all.
        db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} {_ALIASES} INSERT OR IGNORE INTO meta "
                         f"(name, value) VALUES ('schema_version', '{SCHEMA_VERSION}'); "
                         "COMMIT;")

    def get(self, key: LabelKey) -> StoredLabel | None:
        """The stored outcome for ``key``, or None."""
        where = " AND ".join(f"{name} = ?" for name in KEY_COLUMNS)
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM labels WHERE {where}",
                               key.as_tuple()).fetchone()
        return None if row is None else _from_row(row)

    def put(self, key: LabelKey, video_id: str, outcome: LabelOutcome,
            force: bool = False) -> bool:
        """Store ``outcome`` (redacted) for ``key`` in one transaction; True when written.

        A key with a final outcome (labelled, refused) keeps it unless ``force``; a failed
        one is replaced. A replaced row's billed usage is added to the new row's, and its
        video id, when it is another one, becomes an alias. Raises ValueError for an
        inconsistent outcome (labelled without a verdict, or a verdict on a refusal or
        failure).
        """
        if (outcome.status is Status.LABELLED) != (outcome.verdict is not None):
            raise ValueError(f"a {outcome.status} outcome for video {video_id!r} must "
                             f"{'' if outcome.status is Status.LABELLED else 'not '}carry a "
                             "verdict")
        outcome = self.redact.outcome(outcome)
        where = " AND ".join(f"{name} = ?" for name in KEY_COLUMNS)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            before = self._db.execute(
                f"SELECT video_id, status, input_tokens, output_tokens, cost_usd FROM labels "
                f"WHERE {where}", key.as_tuple()).fetchone()
            if before is not None and not force and Status(before[1]) in FINAL:
                self._db.execute("COMMIT")
                return False
            usage = outcome.usage
            if before is not None:  # what the replaced outcome was billed stays counted
                usage = usage + Usage(before[2], before[3], before[4])
            self._write(key, video_id, outcome, usage)
            if before is not None and before[0] != video_id:
                self._db.execute(
                    f"INSERT OR IGNORE INTO aliases ({', '.join(KEY_COLUMNS)}, video_id) "
                    f"VALUES ({', '.join('?' * (len(KEY_COLUMNS) + 1))})",
                    (*key.as_tuple(), before[0]))
            self._db.execute(f"DELETE FROM aliases WHERE {where} AND video_id = ?",
                             (*key.as_tuple(), video_id))  # now the row's own id
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return True

    def _write(self, key: LabelKey, video_id: str, outcome: LabelOutcome,
               usage: Usage) -> None:
        verdict = outcome.verdict
        values = (*key.as_tuple(), video_id, str(outcome.status),
                  verdict.label if verdict else None,
                  verdict.confidence if verdict else None,
                  verdict.reasoning if verdict else None,
                  outcome.provisional.model_dump_json() if outcome.provisional else None,
                  json.dumps(list(outcome.responses)), usage.input_tokens,
                  usage.output_tokens, usage.cost_usd, outcome.attempts, outcome.error,
                  outcome.seconds, _now(), outcome.call_seconds)
        updates = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS
                            if name not in KEY_COLUMNS)
        self._db.execute(f"INSERT INTO labels ({', '.join(_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(_COLUMNS))}) ON CONFLICT "
                         f"({', '.join(KEY_COLUMNS)}) DO UPDATE SET {updates}", values)

    def add_alias(self, key: LabelKey, video_id: str) -> None:
        """Record ``video_id`` as another name of the call stored under ``key`` (same
        content, same prompt, provider, model and sampling), so :meth:`labels` lists its
        outcome under that id too. No-op for the id the row already has."""
        self._db.execute(
            f"INSERT OR IGNORE INTO aliases ({', '.join(KEY_COLUMNS)}, video_id) "
            f"SELECT {', '.join(KEY_COLUMNS)}, ? FROM labels WHERE "
            + " AND ".join(f"{name} = ?" for name in KEY_COLUMNS) + " AND video_id != ?",
            (video_id, *key.as_tuple(), video_id))

    def labels(self, provider: str | None = None, model: str | None = None,
               prompt_version: str | None = None,
               status: Status | str | None = None) -> list[StoredLabel]:
        """Every stored outcome matching the filters (None = any), oldest first; an
        outcome with aliases once per video id (its own first, then its aliases)."""
        filters = {"provider": provider, "model": model, "prompt_version": prompt_version,
                   "status": None if status is None else str(Status(status))}
        chosen = {name: value for name, value in filters.items() if value is not None}
        where = (" WHERE " + " AND ".join(f"labels.{name} = ?" for name in chosen)) \
            if chosen else ""
        own = ", ".join(f"labels.{name}" for name in _COLUMNS)
        aliased = ", ".join("aliases.video_id" if name == "video_id" else f"labels.{name}"
                            for name in _COLUMNS)
        join = " AND ".join(f"aliases.{name} = labels.{name}" for name in KEY_COLUMNS)
        rows = self._db.execute(
            f"SELECT {own}, labels.rowid AS row_order, 0 AS alias FROM labels{where} "
            f"UNION ALL SELECT {aliased}, labels.rowid, 1 FROM labels JOIN aliases ON {join}"
            f"{where} ORDER BY created, row_order, alias", (*chosen.values(), *chosen.values()))
        return [_from_row(row[:len(_COLUMNS)]) for row in rows]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _from_row(row: tuple) -> StoredLabel:
    record = dict(zip(_COLUMNS, row, strict=True))
    verdict = None
    if record["label"] is not None:
        verdict = Verdict(label=record["label"], confidence=record["confidence"],
                          reasoning=record["reasoning"])
    provisional = record["provisional"]
    outcome = LabelOutcome(
        status=Status(record["status"]), verdict=verdict,
        provisional=Verdict.model_validate_json(provisional) if provisional else None,
        responses=tuple(json.loads(record["responses"])),
        usage=Usage(record["input_tokens"], record["output_tokens"], record["cost_usd"]),
        attempts=record["attempts"], error=record["error"], seconds=record["seconds"],
        call_seconds=record["call_seconds"])
    key = LabelKey(*(record[name] for name in KEY_COLUMNS))
    return StoredLabel(key, record["video_id"], outcome, record["created"])
