"""Filesystem and object-store options for local paths and ``s3://`` URIs.

Credentials are never read from config: boto/s3fs and Lance pick them up from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE). Only non-secret
settings (endpoint, region, allow_http) come from :class:`medembed.config.S3Config` or env.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec

from medembed.config import S3Config


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _endpoint(s3: S3Config | None) -> str | None:
    return (s3.endpoint_url if s3 else None) or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")


def _region(s3: S3Config | None) -> str | None:
    return (s3.region if s3 else None) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def lance_storage_options(uri: str, s3: S3Config | None = None) -> dict[str, str]:
    """Storage options for Lance/LanceDB (object_store keys). Secrets are taken from the env."""
    if not uri.startswith("s3://"):
        return {}
    endpoint, region = _endpoint(s3), _region(s3)
    opts = {k: v for k, v in (("aws_endpoint", endpoint), ("aws_region", region)) if v}
    allow_http = s3.allow_http if s3 and s3.allow_http is not None else bool(endpoint and endpoint.startswith("http://"))
    if allow_http:
        opts["allow_http"] = "true"
    for env, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"), ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
                     ("AWS_SESSION_TOKEN", "aws_session_token")):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    return opts


def fsspec_options(uri: str, s3: S3Config | None = None) -> dict[str, Any]:
    if not uri.startswith("s3://"):
        return {}
    client_kwargs = {k: v for k, v in (("endpoint_url", _endpoint(s3)), ("region_name", _region(s3))) if v}
    return {"client_kwargs": client_kwargs} if client_kwargs else {}


def filesystem(uri: str, s3: S3Config | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without protocol) for ``uri``."""
    fs, path = fsspec.core.url_to_fs(uri, **fsspec_options(uri, s3))
    return fs, path


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts]])


def read_parquet(path: str, s3: S3Config | None = None) -> Any:
    """A Parquet file, or every ``.parquet`` file under a folder (sorted), as one Arrow table."""
    import pyarrow.dataset as pads

    fs, p = filesystem(path, s3)
    if not fs.exists(p):
        raise FileNotFoundError(f"not found: {path}")
    files = [p] if fs.isfile(p) else sorted(f for f in fs.find(p) if f.endswith(".parquet"))
    if not files:
        raise FileNotFoundError(f"no .parquet files under {path}")
    return pads.dataset(files, format="parquet", filesystem=fs).to_table()


def copy_file(local_path: str, uri: str, s3: S3Config | None = None) -> None:
    """Upload (or copy) one local file to ``uri``, local or ``s3://``."""
    fs, path = filesystem(uri, s3)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.put_file(local_path, path)


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
