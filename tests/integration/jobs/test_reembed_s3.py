"""`medembed reembed` against a real S3 API (moto on 127.0.0.1): the lease by conditional PUTs, the sync and
the serving pointer in the bucket."""

from __future__ import annotations

import argparse
import json
import time

import pytest

from medembed.index import serving
from medembed.index.lease import LeaseHeld, WriterLease
from tests.support.s3_server import S3Process, S3Server, s3_environment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BUCKET = "medembed-reembed"
DB = f"s3://{BUCKET}/lancedb"
TABLE = "notes__all_minilm_l6_v2"


def note(i: int, edition: int = 0) -> dict:
    return {"id": f"d{i:02d}", "title": f"Case {i}",
            "text": f"Patient {i}, edition {edition}: " + " ".join(f"term{(i + k * (edition + 1)) % 31}" for k in range(12))}


def put_corpus(server: S3Server, notes: list[dict]) -> None:
    server.client().put_object(Bucket=BUCKET, Key="corpus/notes.jsonl",
                               Body="".join(json.dumps(n) + "\n" for n in notes).encode())


@pytest.fixture(scope="module")
def s3():
    with s3_environment(S3Process(), BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def ray_s3(s3):
    """A local Ray instance started after the S3 env is set, so its workers reach the server."""
    import ray

    from medembed.config import RayConfig
    from medembed.runtime.ray_setup import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray(RayConfig(num_cpus=2))
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


def run(tmp, name: str, *extra: str) -> tuple[int, dict]:
    from medembed.app.registry import by_name
    from medembed.app.runner import run_job

    sets = [f"input.uri=s3://{BUCKET}/corpus/", f"store.uri={DB}", "store.corpus_name=notes",
            f"output.run_dir={tmp / 'runs'}", f"output.run_name={name}", "chunking.max_tokens=32",
            "chunking.overlap_tokens=4", *extra]
    code = run_job(by_name("reembed"), argparse.Namespace(config=None, overrides=sets, print_config=False, verbose=False))
    return code, json.loads((tmp / "runs" / name / "manifest.json").read_text())


def test_lease_on_s3_is_exclusive_and_expires(s3):
    a = WriterLease(DB, "solo", "run-a", ttl_s=8.0)
    assert a.try_acquire() is None  # no heartbeat: a holder that died
    with pytest.raises(LeaseHeld, match="run-a"):
        WriterLease(DB, "solo", "run-b", ttl_s=30).acquire(wait_s=0)
    time.sleep(max(0.0, a.record.expires_at - time.time()) + 0.2)
    with WriterLease(DB, "solo", "run-b", ttl_s=30).acquire() as b:
        assert b.took_over["run_id"] == "run-a"
        assert a.renew() is False  # the conditional PUT of the old holder fails
        body = json.loads(s3.client().get_object(Bucket=BUCKET, Key="lancedb/_medembed/leases/solo.json")["Body"].read())
        assert body["run_id"] == "run-b"
    assert "lancedb/_medembed/leases/solo.json" not in set(s3.keys(BUCKET))


def test_sync_and_serving_pointer_on_s3(s3, ray_s3, tmp_path):
    put_corpus(s3, [note(i) for i in range(8)])
    code, m = run(tmp_path, "s3-first")
    assert code == 0, m.get("error")
    assert m["counts"]["documents_new"] == 8
    keys = set(s3.keys(BUCKET))
    assert "lancedb/_medembed/serving/notes.json" in keys
    assert "lancedb/_medembed/leases/notes.json" not in keys  # released
    first = serving.read_pointer(DB, "notes")
    assert first.current.table == TABLE

    put_corpus(s3, [note(i, edition=1 if i == 2 else 0) for i in range(8) if i != 5] + [note(9)])
    code, m = run(tmp_path, "s3-second")
    assert code == 0, m.get("error")
    c = m["counts"]
    assert (c["documents_new"], c["documents_changed"], c["documents_unchanged"], c["documents_deleted"]) == (1, 1, 6, 1)
    assert m["versions"]["after_commit"] == m["versions"]["before"] + 1
    ptr = serving.read_pointer(DB, "notes")
    assert ptr.current.version == m["versions"]["after"] and ptr.history[-1].key == first.current.key

    from medembed.index.search import Retriever

    r = Retriever.open(DB, "notes")
    assert {d for d in r.rows()["doc_id"]} == {f"d{i:02d}" for i in (0, 1, 2, 3, 4, 6, 7, 9)}

    # another writer holds the lease: the run exits 3 and changes nothing
    with WriterLease(DB, "notes", "other-writer", ttl_s=60).acquire():
        code, m = run(tmp_path, "s3-blocked")
    assert code == 3 and "other-writer" in m["error"]
    assert serving.read_pointer(DB, "notes").current == ptr.current
