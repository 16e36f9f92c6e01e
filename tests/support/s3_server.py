"""A local S3 API (moto in server mode) on 127.0.0.1, reachable from other processes (Ray workers).

``S3Server`` runs moto in threads of the test process; ``S3Process`` runs it in a process of its own
(``python -m tests.support.s3_server``), behind a gate that can start rejecting writes (HTTP 403
AccessDenied, as after a bucket-policy change) while reads go on and the stored objects stay.
"""

from __future__ import annotations

import argparse
import json
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
    flip its gate.

    With ``credentials`` ({"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...}) the server accepts only
    those: moto's IAM authentication is on, the key pair belongs to an IAM user allowed ``s3:*``, and every
    request's SigV4 signature is checked against its secret. Any other key gets 403 InvalidAccessKeyId, a wrong
    secret 403 SignatureDoesNotMatch. The pair reaches the server process through its environment, never its
    command line."""

    def __init__(self, credentials: dict[str, str] | None = None) -> None:
        super().__init__()
        self.credentials = dict(credentials or CREDENTIALS)
        self._require = credentials is not None

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self.credentials}

    def client(self, **credentials: str):
        """A boto3 client with the server's credentials, or with ``aws_access_key_id=..., aws_secret_access_key=...``."""
        import boto3

        keys = credentials or {"aws_access_key_id": self.credentials["AWS_ACCESS_KEY_ID"],
                               "aws_secret_access_key": self.credentials["AWS_SECRET_ACCESS_KEY"]}
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, **keys)

    def start(self) -> S3Process:
        self._flag = Path(tempfile.mkdtemp(prefix="s3gate")) / "deny_writes"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        args = [sys.executable, "-m", "tests.support.s3_server", "--port", str(self.port), "--deny-flag", str(self._flag)]
        if self._require:
            env.update({_REQUIRED_PREFIX + k: v for k, v in self.credentials.items()})
            args.append("--require-credentials")
        self._proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[2], env=env,
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


_REQUIRED_PREFIX = "MEDEMBED_TEST_S3_REQUIRE_"


def _require_credentials(key_id: str, secret: str) -> None:
    """Turn on moto's IAM authentication (every request signed and allowed) for one IAM user with this exact key
    pair and an ``s3:*`` policy. moto generates access keys itself, so the made key is given the pair we want."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user(REGION, "medembed-test")
    iam.put_user_policy("medembed-test", "s3-all", json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key("medembed-test")
    key.access_key_id, key.secret_access_key = key_id, secret

    # werkzeug hands moto the URL with its query decoded (prefix=a%2Fb arrives as prefix=a/b), and moto signs that:
    # every list by prefix (Lance's object_store, s3fs) would fail with SignatureDoesNotMatch. Re-encode the query
    # to SigV4's canonical form (RFC 3986 unreserved characters kept, everything else %XX) before moto signs it.
    from urllib.parse import quote, unquote, urlsplit, urlunsplit

    from moto.iam.access_control import IAMRequestBase

    aws_request = IAMRequestBase._create_aws_request

    def canonical_query_request(self):
        request = aws_request(self)
        parts = urlsplit(request.url)
        if parts.query:
            pairs = (p.partition("=") for p in parts.query.split("&"))
            query = "&".join(f"{quote(unquote(k), safe='-_.~')}={quote(unquote(v), safe='-_.~')}" for k, _, v in pairs)
            request.url = urlunsplit(parts._replace(query=query))
        return request

    IAMRequestBase._create_aws_request = canonical_query_request


def main() -> None:
    ap = argparse.ArgumentParser(description="moto S3 on 127.0.0.1 behind a write gate (tests only)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--deny-flag", required=True, help="while this file exists, writes get 403 AccessDenied")
    ap.add_argument("--require-credentials", action="store_true",
                    help=f"accept only the key pair in env {_REQUIRED_PREFIX}AWS_ACCESS_KEY_ID / _AWS_SECRET_ACCESS_KEY")
    args = ap.parse_args()
    if args.require_credentials:
        os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # read by moto.settings at import: authenticate from the first
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    if args.require_credentials:
        _require_credentials(os.environ.pop(_REQUIRED_PREFIX + "AWS_ACCESS_KEY_ID"),
                             os.environ.pop(_REQUIRED_PREFIX + "AWS_SECRET_ACCESS_KEY"))
    os.environ.setdefault("MOTO_PORT", str(args.port))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run_simple("127.0.0.1", args.port, _WriteGate(DomainDispatcherApplication(create_backend_app), args.deny_flag),
               threaded=True)


if __name__ == "__main__":
    main()
