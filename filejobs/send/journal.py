"""The resume journal: what one directory → (bucket, queue) pairing has uploaded and sent, in SQLite."""

from __future__ import annotations

import hashlib
import os
import queue as queue_mod
import sqlite3
import threading
from typing import Iterable, Iterator

from ..records import SENT, JournalRow, RecordError

_COLUMNS = "rel, size, mtime_ns, etag, state, batch_id"


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "filejobs")


def journal_path(state_dir: str, config, queue_url: str) -> str:
    """One journal per (directory, bucket, prefixes, queue): ``config`` is a SendConfig."""
    ident = "\0".join([os.path.realpath(config.directory), config.bucket, config.input_prefix,
                       config.output_prefix, queue_url])
    return os.path.join(state_dir, hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".sqlite")


class Journal:
    """What this directory → (bucket, queue) pairing has uploaded and sent, on disk (flat memory).

    Rows are written after the fact: ``uploaded`` once S3 answered the PUT, ``sent`` once SQS
    accepted the message. A crash can therefore lose at most the rows of requests in flight, which
    the rerun redoes (an upload) or duplicates (one batch per sender thread).

    One writer thread commits whatever rows are waiting in a single transaction (group commit),
    so thousands of uploads a second do not queue behind one commit each; ``record(wait=True)``
    returns once its rows are durable. Lookups use their own connection (SQLite's WAL lets a
    reader run beside the writer), so the directory walk never waits for a commit.
    """

    def __init__(self, path: str | None):
        self.path = path or ":memory:"
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS files (rel TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                             " etag TEXT, state TEXT, batch_id TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
            #: An empty journal (a first run) needs no lookups at all.
            self.empty = self._db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None
        self._reader = (sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                        if path else self._db)
        self._pending: queue_mod.Queue = queue_mod.Queue()
        self._writer = threading.Thread(target=self._write_loop, daemon=True, name="journal")
        self._writer.start()

    def lookup(self, rel: str) -> JournalRow | None:
        """The row of ``rel``; None when there is none or it cannot be read (the file is sent again)."""
        if self.empty:
            return None
        query = f"SELECT {_COLUMNS} FROM files WHERE rel=?"
        if self._reader is self._db:
            with self._lock:
                found = self._db.execute(query, (rel,)).fetchone()
        else:
            found = self._reader.execute(query, (rel,)).fetchone()
        try:
            return JournalRow.from_tuple(found) if found else None
        except RecordError:
            return None

    def record(self, rows: Iterable[JournalRow], *, wait: bool = True) -> None:
        """Write ``rows`` (replacing earlier rows of the same files); ``wait``: until durable."""
        done = threading.Event() if wait else None
        self._pending.put(([row.as_tuple() for row in rows], done))
        if done:
            done.wait()

    def flush(self) -> None:
        """Return once everything recorded so far is committed."""
        self.record([])

    def _write_loop(self) -> None:
        while True:
            items = [self._pending.get()]
            while True:
                try:
                    items.append(self._pending.get_nowait())
                except queue_mod.Empty:
                    break
            work = [item for item in items if item is not None]
            if work:
                with self._lock:
                    self._db.execute("BEGIN")
                    for rows, _ in work:
                        self._db.executemany(f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                                             rows)
                    self._db.execute("COMMIT")
                for _, done in work:
                    if done:
                        done.set()
            if len(work) < len(items):  # close() was among them
                return

    def get_meta(self, k: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return row[0] if row else None

    def set_meta(self, k: str, v: str | None) -> None:
        with self._lock:
            if v is None:
                self._db.execute("DELETE FROM meta WHERE k=?", (k,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))

    def sent_totals(self, batch_id: str) -> tuple[int, int]:
        """(files, bytes) of ``batch_id`` recorded as sent."""
        self.flush()
        with self._lock:
            count, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files"
                                            " WHERE batch_id=? AND state=?", (batch_id, SENT)).fetchone()
        return count, total

    def sent_rows(self, batch_id: str) -> Iterator[JournalRow]:
        """The files of ``batch_id`` recorded as sent, by name, a thousand rows at a time."""
        self.flush()
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM files WHERE batch_id=? AND state=? ORDER BY rel",
                                    (batch_id, SENT))
            while True:
                chunk = rows.fetchmany(1000)
                if not chunk:
                    return
                yield from (JournalRow.from_tuple(row) for row in chunk)

    def close(self):
        self._pending.put(None)
        self._writer.join()
        with self._lock:
            if self._reader is not self._db:
                self._reader.close()
            self._db.close()
