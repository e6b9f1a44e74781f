"""A durable, bounded, ordered on-disk queue (the MQTT sink's alert outbox).

One JSON file per entry, named by a zero-padded sequence number, written to a temporary file,
fsync'd and renamed (then the directory is fsync'd), so an entry is either complete on disk
or absent; entries survive a crash or restart and are read back in sequence order. When more
than ``max_entries`` are queued the oldest are deleted with a warning.

Only one process may use a spool directory at a time (an ``fcntl`` lock enforces it).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SUFFIX = ".json"
_DIGITS = 20


class SpoolError(OSError):
    """The spool directory cannot be used."""


class Spool:
    """A FIFO of JSON objects in ``directory``.

    Args:
        directory: created if missing.
        max_entries: bound; the oldest entries are dropped beyond it.
    """

    def __init__(self, directory: str | os.PathLike[str], max_entries: int = 10000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.directory = Path(directory)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise SpoolError(e.errno, f"cannot use spool directory {self.directory}: "
                                      f"{e.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise SpoolError(e.errno, f"spool directory {self.directory} is in use by "
                                          f"another process") from None
            raise
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # an append interrupted by a crash
        self._seqs = sorted(self._scan())
        self._next = (self._seqs[-1] + 1) if self._seqs else 1
        self.dropped = 0
        if self._seqs:
            log.info("spool %s: %d entries from a previous run", self.directory,
                     len(self._seqs))

    def _scan(self) -> list[int]:
        out = []
        for p in self.directory.glob(f"*{_SUFFIX}"):
            stem = p.name[:-len(_SUFFIX)]
            if stem.isdigit():
                out.append(int(stem))
        return out

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:0{_DIGITS}d}{_SUFFIX}"

    def __len__(self) -> int:
        with self._lock:
            return len(self._seqs)

    def append(self, item: dict[str, Any]) -> int:
        """Durably add ``item`` (JSON-serialisable); returns its sequence number."""
        data = json.dumps(item, separators=(",", ":")).encode()
        with self._lock:
            seq = self._next
            self._next += 1
            path = self._path(seq)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            self._fsync_dir()
            self._seqs.append(seq)
            while len(self._seqs) > self.max_entries:
                old = self._seqs.pop(0)
                self._path(old).unlink(missing_ok=True)
                self.dropped += 1
                log.warning("spool %s is full (%d entries): dropped the oldest entry #%d",
                            self.directory, self.max_entries, old)
            return seq

    def peek(self) -> tuple[int, dict[str, Any]] | None:
        """The oldest entry ``(seq, item)``, or None when empty. Unreadable entries are
        deleted with a warning."""
        while True:
            with self._lock:
                if not self._seqs:
                    return None
                seq = self._seqs[0]
                try:
                    item = json.loads(self._path(seq).read_bytes())
                    if not isinstance(item, dict):
                        raise ValueError("not a JSON object")
                    return seq, item
                except FileNotFoundError:
                    self._seqs.pop(0)
                except (OSError, ValueError) as e:
                    log.warning("spool %s: dropping unreadable entry #%d: %s",
                                self.directory, seq, e)
                    self._seqs.pop(0)
                    self._path(seq).unlink(missing_ok=True)

    def remove(self, seq: int) -> None:
        """Delete entry ``seq`` (after it was delivered)."""
        with self._lock:
            if seq in self._seqs:
                self._seqs.remove(seq)
            self._path(seq).unlink(missing_ok=True)
            self._fsync_dir()

    def items(self) -> list[tuple[int, dict[str, Any]]]:
        """All readable entries, oldest first (for inspection and tests)."""
        with self._lock:
            seqs = list(self._seqs)
        out = []
        for s in seqs:
            try:
                out.append((s, json.loads(self._path(s).read_bytes())))
            except (OSError, ValueError):
                continue
        return out

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the directory lock (entries stay on disk)."""
        with self._lock:
            if self._lock_fd >= 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
