"""The storage context: one object opens local paths and s3:// URIs (a loopback moto server) alike: files,
Parquet, Lance datasets, LanceDB connections; it pickles small and carries no secret."""

from __future__ import annotations

import logging
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medembed.config import S3Config
from medembed.runtime.storage import DEFAULT_STORAGE, Storage
from tests.support.s3_server import CREDENTIALS, REGION, S3Server

BUCKET = "medembed-storage"
SECRET = "s3cr3t-never-stored"


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("moto", reason="moto not installed")
    pytest.importorskip("s3fs", reason="s3fs not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with S3Server() as srv:
        srv.client().create_bucket(Bucket=BUCKET)
        yield srv


@pytest.fixture
def s3_env(server, monkeypatch):
    """Credentials only in the environment (as in a job); the endpoint and region come from config."""
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return Storage.from_config(S3Config(endpoint_url=server.endpoint, region=REGION))


def _roots(tmp_path, request) -> tuple[Storage, str]:
    if request.param == "local":
        return DEFAULT_STORAGE, str(tmp_path / "root")
    return request.getfixturevalue("s3_env"), f"s3://{BUCKET}/{tmp_path.name}"


@pytest.fixture(params=["local", "s3"])
def where(tmp_path, request) -> tuple[Storage, str]:
    return _roots(tmp_path, request)


def test_open_write_read_exists(where):
    st, root = where
    uri = st.join(root, "a", "b.txt")
    assert not st.exists(uri)
    with st.open(uri, "w", encoding="utf-8") as f:  # the parent folder is made
        f.write("hello")
    assert st.exists(uri)
    with st.open(uri, "r", encoding="utf-8") as f:
        assert f.read() == "hello"
    fs, path = st.fs(uri)
    assert fs.cat_file(path) == b"hello"


def test_read_parquet_file_or_folder_and_copy_file(where, tmp_path):
    st, root = where
    local = tmp_path / "part.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), local)
    st.copy_file(str(local), st.join(root, "t", "part-1.parquet"))
    st.copy_file(str(local), st.join(root, "t", "part-0.parquet"))
    assert st.read_parquet(st.join(root, "t", "part-1.parquet"))["x"].to_pylist() == [1, 2]
    assert st.read_parquet(st.join(root, "t"))["x"].to_pylist() == [1, 2, 1, 2]
    with pytest.raises(FileNotFoundError, match="not found"):
        st.read_parquet(st.join(root, "nothing"))


def test_lance_dataset_and_lancedb_connect(where):
    import lance

    st, root = where
    db = st.join(root, "db")
    uri = st.join(db, "t.lance")
    assert st.lance_dataset(uri) is None  # none yet
    lance.write_dataset(pa.table({"id": ["a", "b", "c"]}), uri, storage_options=st.lance_options(uri))
    lance.write_dataset(pa.table({"id": ["d"]}), uri, mode="append", storage_options=st.lance_options(uri))
    assert st.lance_dataset(uri).count_rows() == 4
    assert st.lance_dataset(uri, version=1).count_rows() == 3
    conn = st.lancedb_connect(db)
    assert conn.open_table("t").count_rows() == 4


def test_options_local_and_s3(s3_env, server):
    assert DEFAULT_STORAGE.storage_options("/tmp/x") == {} and DEFAULT_STORAGE.fsspec_options("/tmp/x") == {}
    opts = s3_env.storage_options("s3://b/x")
    assert opts["aws_endpoint"] == server.endpoint and opts["aws_region"] == REGION and opts["allow_http"] == "true"
    assert opts["aws_secret_access_key"] == CREDENTIALS["AWS_SECRET_ACCESS_KEY"]  # from the env, when opened
    assert s3_env.fsspec_options("s3://b/x") == {"client_kwargs": {"endpoint_url": server.endpoint,
                                                                    "region_name": REGION}}
    assert Storage(allow_http=False, endpoint_url="http://x").storage_options("s3://b").get("allow_http") is None


def test_settings_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert Storage().endpoint() == "http://127.0.0.1:9" and Storage().region_name() == "eu-west-1"
    assert Storage(endpoint_url="http://127.0.0.1:8").endpoint() == "http://127.0.0.1:8"
    assert Storage.from_config(None) == Storage() == DEFAULT_STORAGE


def test_pickles_small_and_carries_no_secret(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-NEVER-STORED")
    st = Storage.from_config(S3Config(endpoint_url="http://127.0.0.1:1", region=REGION, allow_http=True))
    assert st.storage_options("s3://b/x")["aws_secret_access_key"] == SECRET  # read from the env when used ...
    blob = pickle.dumps(st)
    assert SECRET.encode() not in blob and b"AKIA-NEVER-STORED" not in blob  # ... never held
    assert SECRET not in repr(st)
    assert len(blob) < 300
    assert pickle.loads(blob) == st
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")  # another process, another environment: nothing travels along
    assert "aws_secret_access_key" not in pickle.loads(blob).storage_options("s3://b/x")


def test_is_frozen():
    with pytest.raises(AttributeError):
        DEFAULT_STORAGE.endpoint_url = "http://elsewhere"  # type: ignore[misc]
