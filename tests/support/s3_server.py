"""A local S3 API (moto in server mode) on 127.0.0.1, reachable from other processes (Ray workers).

``S3Server`` runs moto in threads of the test process; ``S3Process`` runs it in a process of its own
(``python -m tests.support.s3_server``), behind a gate that can start rejecting writes (HTTP 403
AccessDenied, as after a bucket-policy change) while reads go on and the stored objects stay.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ray_cluster import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"


class S3Server:
    """``moto.server.ThreadedMotoServer`` on a free loopback port; ``env`` points AWS clients at it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def upload_dir(self, local: str | os.PathLike[str], bucket: str, prefix: str) -> list[str]:
        """Upload every file under ``local`` to ``s3://bucket/prefix/...``; return the keys."""
        s3 = self.client()
        root = Path(local)
        keys = []
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{f.relative_to(root).as_posix()}"
            s3.upload_file(str(f), bucket, key)
            keys.append(key)
        return keys

    def keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class S3Process(S3Server):
    """moto in its own process: a Lance call that waits on S3 while holding the GIL (a fragment's filtered row
    count) would deadlock a server running in the test process's threads. ``deny_writes`` / ``allow_writes``
    flip its gate."""

    def start(self) -> S3Process:
        self._flag = Path(tempfile.mkdtemp(prefix="s3gate")) / "deny_writes"
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.support.s3_server", "--port", str(self.port),
                                       "--deny-flag", str(self._flag)], cwd=Path(__file__).resolve().parents[2],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)

    def deny_writes(self) -> None:
        self._flag.touch()

    def allow_writes(self) -> None:
        self._flag.unlink(missing_ok=True)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        shutil.rmtree(self._flag.parent, ignore_errors=True)


@contextmanager
def s3_environment(server: S3Server, *buckets: str) -> Iterator[S3Server]:
    """Start ``server``, point this process's AWS settings at it (undone at the end), create ``buckets``."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import pytest

    server.start()
    mp = pytest.MonkeyPatch()
    for k, v in server.env.items():
        mp.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        mp.delenv(k, raising=False)
    try:
        for b in buckets:
            server.client().create_bucket(Bucket=b)
        yield server
    finally:
        mp.undo()
        server.stop()


_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
           b"<Message>Access Denied (writes rejected by the test gate)</Message></Error>")


class _WriteGate:
    """WSGI middleware: while ``flag`` exists, every request but GET/HEAD gets 403 AccessDenied."""

    def __init__(self, app, flag: str):
        self.app, self.flag = app, flag

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD") and os.path.exists(self.flag):
            from werkzeug.wsgi import get_input_stream

            get_input_stream(environ).read()  # drain the body: the connection stays usable (keep-alive)
            start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                             ("Content-Length", str(len(_DENIED)))])
            return [_DENIED]
        return self.app(environ, start_response)


def main() -> None:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    ap = argparse.ArgumentParser(description="moto S3 on 127.0.0.1 behind a write gate (tests only)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--deny-flag", required=True, help="while this file exists, writes get 403 AccessDenied")
    args = ap.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run_simple("127.0.0.1", args.port, _WriteGate(DomainDispatcherApplication(create_backend_app), args.deny_flag),
               threaded=True)


if __name__ == "__main__":
    main()
