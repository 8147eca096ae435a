"""The resume journal: what one directory → (bucket, queue) pairing has uploaded and sent, in SQLite."""

from __future__ import annotations

import hashlib
import os
import queue as queue_mod
import sqlite3
import threading
from typing import Iterator


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

    ``files`` rows are written after the fact: ``uploaded`` once S3 answered the PUT, ``sent``
    once SQS accepted the message. A crash can therefore lose at most the rows of requests in
    flight, which the rerun redoes (an upload) or duplicates (one batch per sender thread).

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

    def lookup(self, rel: str):
        if self.empty:
            return None
        if self._reader is self._db:
            with self._lock:
                return self._db.execute("SELECT size, mtime_ns, etag, state, batch_id FROM files WHERE rel=?",
                                        (rel,)).fetchone()
        return self._reader.execute("SELECT size, mtime_ns, etag, state, batch_id FROM files WHERE rel=?",
                                    (rel,)).fetchone()

    def record(self, rows: list[tuple], state: str, *, wait: bool = True) -> None:
        """rows: (rel, size, mtime_ns, etag, batch_id)."""
        done = threading.Event() if wait else None
        self._pending.put((rows, state, done))
        if done:
            done.wait()

    def _write_loop(self) -> None:
        while True:
            items = [self._pending.get()]
            while True:
                try:
                    items.append(self._pending.get_nowait())
                except queue_mod.Empty:
                    break
            stop = any(item is None for item in items)
            work = [item for item in items if item is not None]
            if work:
                with self._lock:
                    self._db.execute("BEGIN")
                    for rows, state, _ in work:
                        self._db.executemany(
                            "INSERT OR REPLACE INTO files (rel, size, mtime_ns, etag, state, batch_id)"
                            " VALUES (?, ?, ?, ?, ?, ?)", [(r[0], r[1], r[2], r[3], state, r[4]) for r in rows])
                    self._db.execute("COMMIT")
                for _, _, done in work:
                    if done:
                        done.set()
            if stop:
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

    def batch_rows(self, batch_id: str) -> Iterator[tuple]:
        self.record([], "sent")  # everything recorded so far is committed
        with self._lock:
            rows = self._db.execute("SELECT rel, size, etag FROM files WHERE batch_id=? AND state='sent' ORDER BY rel",
                                    (batch_id,))
            while True:
                chunk = rows.fetchmany(1000)
                if not chunk:
                    return
                yield from chunk

    def close(self):
        self._pending.put(None)
        self._writer.join()
        with self._lock:
            if self._reader is not self._db:
                self._reader.close()
            self._db.close()
