"""The writer lease: one writer per table, on a local folder or on s3://, that expires if its holder dies.

The lease is a small JSON object ``<db>/_medembed/leases/<name>.json`` naming its owner and an expiry
time. Every change is a compare-and-swap, so two runs never both believe they hold it:

- **s3://**: conditional PUTs (``If-None-Match: *`` to create, ``If-Match: <ETag>`` to renew or take over
  an expired lease) and a conditional DELETE to release.
- **local folders**: the same operations under an exclusive ``fcntl.flock`` on a guard file next to
  the lease (a flock dies with its process, so the guard never blocks forever).

A heartbeat thread renews the lease every ``ttl/3``; a holder that was killed stops renewing and its
lease is taken over once it has expired. A holder whose renewal fails (someone took the lease over
after it stalled for longer than the ttl) marks the lease lost; ``check()`` then raises before commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

log = logging.getLogger(__name__)

EXIT_LEASE_HELD = 3  # the exit code of a run that found another writer holding the lease


class LeaseHeld(RuntimeError):
    """Another run holds the writer lease (exit code 3)."""

    exit_code = EXIT_LEASE_HELD


class LeaseLost(RuntimeError):
    """This run's lease expired and was taken over; it must not commit."""

    exit_code = EXIT_LEASE_HELD


def lease_uri(db_uri: str, name: str) -> str:
    return join(db_uri, "_medembed", "leases", f"{name}.json")


@dataclass
class Record:
    """What a lease object holds."""

    owner: str
    run_id: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires_at

    def describe(self) -> str:
        left = self.expires_at - time.time()
        return (f"run {self.run_id} (host {self.host}, pid {self.pid}, since "
                f"{datetime.fromtimestamp(self.acquired_at, timezone.utc).isoformat(timespec='seconds')}, "
                f"lease {'expired' if left <= 0 else f'expires in {left:.0f} s'})")

    def dumps(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Record:
        return cls(**json.loads(raw))


class _LocalStore:
    """Lease object in a local folder; every operation runs under an exclusive flock of a guard file."""

    def __init__(self, uri: str):
        self.path = uri[len("file://"):] if uri.startswith("file://") else uri
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.guard = self.path + ".guard"

    @contextlib.contextmanager
    def _locked(self):
        import fcntl

        fd = os.open(self.guard, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        return raw, hashlib.sha256(raw).hexdigest()

    def _write(self, raw: bytes) -> str:
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return hashlib.sha256(raw).hexdigest()

    def read(self) -> tuple[bytes, str] | None:
        with self._locked():
            return self._read()

    def create(self, raw: bytes) -> str | None:
        with self._locked():
            return None if self._read() is not None else self._write(raw)

    def replace(self, raw: bytes, token: str) -> str | None:
        with self._locked():
            cur = self._read()
            return self._write(raw) if cur is not None and cur[1] == token else None

    def delete(self, token: str) -> bool:
        with self._locked():
            cur = self._read()
            if cur is None or cur[1] != token:
                return False
            os.remove(self.path)
            return True


class _S3Store:
    """Lease object in a bucket; conditional PUT/DELETE (ETag) make every change a compare-and-swap."""

    def __init__(self, uri: str, storage: Storage):

        bucket_key = uri[len("s3://"):]
        self.bucket, self.key = bucket_key.split("/", 1)
        self.client = storage.boto3_client("s3")  # credentials: the environment

    def _failed(self, e: Exception) -> bool:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        status = getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (409, 412)

    def read(self) -> tuple[bytes, str] | None:
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None
        return r["Body"].read(), r["ETag"]

    def create(self, raw: bytes) -> str | None:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=raw, IfNoneMatch="*")["ETag"]
        except Exception as e:
            if self._failed(e):
                return None
            raise

    def replace(self, raw: bytes, token: str) -> str | None:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=raw, IfMatch=token)["ETag"]
        except Exception as e:
            if self._failed(e):
                return None
            raise

    def delete(self, token: str) -> bool:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=token)
            return True
        except Exception as e:
            if self._failed(e):
                return False
            raise


def _store(uri: str, storage: Storage) -> Any:
    if uri.startswith("s3://"):
        return _S3Store(uri, storage)
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"writer leases work on local folders and s3:// only, not {uri}")
    return _LocalStore(uri)


class WriterLease:
    """The exclusive writer lease of one table (or serving name); a context manager.

    ``acquire(wait_s)`` retries every ``poll_s`` for up to ``wait_s`` seconds, then raises
    :class:`LeaseHeld` naming the holder. An expired lease is taken over.
    """

    def __init__(self, db_uri: str, name: str, run_id: str, *, ttl_s: float = 60.0, storage: Storage = DEFAULT_STORAGE):
        if ttl_s <= 0:
            raise ValueError("lease ttl must be positive")
        self.uri = lease_uri(db_uri, name)
        self.name, self.run_id, self.ttl_s = name, run_id, ttl_s
        self.store = _store(self.uri, storage)
        self.owner = f"{run_id}/{uuid.uuid4().hex}"
        self.token: str | None = None
        self.record: Record | None = None
        self.lost = threading.Event()
        self.took_over: dict[str, Any] | None = None  # the expired lease this run took over, if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _new_record(self) -> Record:
        now = time.time()
        acquired = self.record.acquired_at if self.record else now
        return Record(self.owner, self.run_id, socket.gethostname(), os.getpid(), acquired, now + self.ttl_s)

    def try_acquire(self) -> Record | None:
        """Take the lease if it is free or expired; return None on success, else the holder's record."""
        rec = self._new_record()
        token = self.store.create(rec.dumps())
        if token is None:
            cur = self.store.read()
            if cur is None:  # released between our create and read: try again next poll
                return Record("?", "?", "?", 0, time.time(), time.time())
            holder = Record.loads(cur[0])
            if not holder.expired():
                return holder
            token = self.store.replace(rec.dumps(), cur[1])  # compare-and-swap on the expired lease
            if token is None:
                return holder
            self.took_over = {"run_id": holder.run_id, "host": holder.host, "pid": holder.pid,
                              "expired_for_s": round(time.time() - holder.expires_at, 3)}
            log.warning("took over the expired writer lease of %s", holder.describe())
        self.token, self.record = token, rec
        return None

    def acquire(self, wait_s: float = 0.0, poll_s: float = 1.0) -> WriterLease:
        deadline = time.monotonic() + wait_s
        while True:
            holder = self.try_acquire()
            if holder is None:
                break
            if time.monotonic() >= deadline:
                raise LeaseHeld(f"another writer holds the lease on {self.name!r} ({self.uri}): {holder.describe()}; "
                                f"waited {wait_s:g} s (sync.lease_wait_s)")
            time.sleep(min(poll_s, max(0.05, deadline - time.monotonic())))
        log.info("writer lease on %r acquired (%s, ttl %g s)", self.name, self.uri, self.ttl_s)
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def renew(self) -> bool:
        """Extend the lease by ``ttl``; False (and ``lost`` set) when it is no longer ours."""
        with self._lock:
            if self.token is None or self.lost.is_set():
                return False
            rec = self._new_record()
            token = self.store.replace(rec.dumps(), self.token)
            if token is None:
                self.lost.set()
                log.error("writer lease on %r was lost (taken over after it expired)", self.name)
                return False
            self.token, self.record = token, rec
            return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.renew():
                    return
            except Exception as e:  # a transient store error: retry at the next beat, the ttl covers it
                log.warning("lease heartbeat failed: %s", e)

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this run still holds an unexpired lease (call before committing)."""
        if self.token is None or self.lost.is_set() or (self.record and self.record.expired()):
            raise LeaseLost(f"the writer lease on {self.name!r} is no longer held by run {self.run_id}; not committing")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            if self.token is not None and not self.lost.is_set():
                if not self.store.delete(self.token):
                    log.warning("writer lease on %r was not ours any more at release", self.name)
            self.token = None

    def __enter__(self) -> WriterLease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
