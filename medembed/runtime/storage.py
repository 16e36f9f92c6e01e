"""The storage context: one object per job that opens local paths and ``s3://`` URIs.

:class:`Storage` is made once per job from the job config's ``s3`` section (by the runner) and handed
to everything that reads or writes: fsspec filesystems and files, Parquet, Lance datasets, LanceDB
connections, boto3 clients. It holds only non-secret settings (endpoint, region, allow_http), so it
pickles cheaply and safely into Ray tasks and actors; credentials are never read from config and never
stored on it: boto/s3fs and Lance pick them up from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE) of the process that opens the URI, when it opens it.
Settings left empty fall back to the environment too (AWS_ENDPOINT_URL[_S3], AWS_REGION/AWS_DEFAULT_REGION).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec

from medembed.config import S3Config


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts]])


_SECRETS = (("AWS_ACCESS_KEY_ID", "aws_access_key_id"), ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
            ("AWS_SESSION_TOKEN", "aws_session_token"))


@dataclass(frozen=True)
class Storage:
    """Opens paths, files, Parquet, Lance datasets and LanceDB connections, local or ``s3://``.

    ``Storage()`` uses the environment only; :meth:`from_config` adds a job's non-secret ``s3`` settings.
    """

    endpoint_url: str | None = None
    region: str | None = None
    allow_http: bool | None = None

    @classmethod
    def from_config(cls, s3: S3Config | None) -> Storage:
        """The context of a job config's ``s3`` section (None: the environment only)."""
        if s3 is None:
            return cls()
        return cls(endpoint_url=s3.endpoint_url, region=s3.region, allow_http=s3.allow_http)

    # settings, with the environment read where they are used (this process, this moment)
    def endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    def region_name(self) -> str | None:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    join = staticmethod(join)
    is_remote = staticmethod(is_remote)

    def storage_options(self, uri: str) -> dict[str, str]:
        """Lance/LanceDB storage options (object_store keys) for ``uri``; secrets come from the env, now."""
        if not uri.startswith("s3://"):
            return {}
        endpoint, region = self.endpoint(), self.region_name()
        opts = {k: v for k, v in (("aws_endpoint", endpoint), ("aws_region", region)) if v}
        allow_http = self.allow_http if self.allow_http is not None else bool(endpoint and endpoint.startswith("http://"))
        if allow_http:
            opts["allow_http"] = "true"
        for env, key in _SECRETS:
            if os.environ.get(env):
                opts[key] = os.environ[env]
        return opts

    def _client_kwargs(self) -> dict[str, str]:
        """Endpoint and region as botocore client kwargs (s3fs and boto3 take the same); no secrets."""
        return {k: v for k, v in (("endpoint_url", self.endpoint()), ("region_name", self.region_name())) if v}

    def fsspec_options(self, uri: str) -> dict[str, Any]:
        """fsspec (s3fs) options for ``uri``: endpoint and region as ``client_kwargs``; no secrets."""
        if not uri.startswith("s3://"):
            return {}
        kw = self._client_kwargs()
        return {"client_kwargs": kw} if kw else {}

    def fs(self, uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """(filesystem, path without protocol) for ``uri``."""
        return fsspec.core.url_to_fs(uri, **self.fsspec_options(uri))

    def open(self, uri: str, mode: str = "rb", **kwargs: Any) -> IO[Any]:
        """``uri`` opened as a file (a context manager); writing makes the parent folder first."""
        fs, path = self.fs(uri)
        if any(m in mode for m in "wax"):
            _make_parent(fs, path)
        return fs.open(path, mode, **kwargs)

    def exists(self, uri: str) -> bool:
        fs, path = self.fs(uri)
        return fs.exists(path)

    def read_parquet(self, uri: str) -> Any:
        """A Parquet file, or every ``.parquet`` file under a folder (sorted), as one Arrow table."""
        import pyarrow.dataset as pads

        fs, p = self.fs(uri)
        if not fs.exists(p):
            raise FileNotFoundError(f"not found: {uri}")
        files = [p] if fs.isfile(p) else sorted(f for f in fs.find(p) if f.endswith(".parquet"))
        if not files:
            raise FileNotFoundError(f"no .parquet files under {uri}")
        return pads.dataset(files, format="parquet", filesystem=fs).to_table()

    def copy_file(self, local_path: str, uri: str) -> None:
        """Upload (or copy) one local file to ``uri``, local or ``s3://``."""
        fs, path = self.fs(uri)
        _make_parent(fs, path)
        fs.put_file(local_path, path)

    def lance_options(self, uri: str) -> dict[str, str] | None:
        """:meth:`storage_options`, None when there are none (as Lance's and LanceDB's APIs take it)."""
        return self.storage_options(uri) or None

    def lance_dataset(self, uri: str, version: int | str | None = None) -> Any:
        """The Lance dataset at ``uri`` (at ``version``), or None if there is none yet."""
        import lance

        try:
            return lance.dataset(uri, version=version, storage_options=self.lance_options(uri))
        except (ValueError, FileNotFoundError, OSError) as e:
            if "not found" in str(e).lower() or "does not exist" in str(e).lower() or isinstance(e, FileNotFoundError):
                return None
            raise

    def lancedb_connect(self, uri: str) -> Any:
        """A LanceDB connection to the database folder ``uri``."""
        import lancedb

        return lancedb.connect(uri, storage_options=self.lance_options(uri))

    def boto3_client(self, service: str = "s3") -> Any:
        """A boto3 client with this context's endpoint and region (credentials: the environment)."""
        import boto3

        return boto3.client(service, **self._client_kwargs())


def _make_parent(fs: fsspec.AbstractFileSystem, path: str) -> None:
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path:
        fs.makedirs(parent, exist_ok=True)


DEFAULT_STORAGE = Storage()  # the environment only (no settings from config)


def fill_cache_folder(target: Path, fill: Callable[[Path], None], marker: str) -> bool:
    """Make the cache folder ``target`` once, atomically: ``fill(tmp)`` writes into a temp folder beside it, which is
    renamed into place with a ``.complete`` marker (``marker`` its text). Processes racing for the same folder each
    fill their own temp folder; the first rename wins and the others drop theirs. Returns False when ``target``
    was complete already (nothing done)."""
    if (target / ".complete").exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dl_", dir=target.parent))
    try:
        fill(tmp)
        (tmp / ".complete").write_text(marker)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return True
