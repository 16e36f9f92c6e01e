from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ray

from medembed.synth import columns as C
from medembed.synth.config import SynthConfig
from medembed.synth.generate import generate_pairs_from_docs
from medembed.synth.ledger import complete_runs, read_ledger, read_pairs
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.integration

SECRET = "sk-integration-SECRET-987654321"
from tests.support.paths import REPO  # noqa: E402

ROOT = str(REPO)


@pytest.fixture(scope="module")
def ray_local():
    os.environ["SYNTH_IT_KEY"] = SECRET  # workers of the local instance inherit it
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    if started:
        ray.shutdown()


def _note(i: int, fault: str = "") -> str:
    return (f"Patient {i} is a {30 + i}-year-old with dyspnea for {i + 2} days. Chest radiograph showed "
            f"bilateral infiltrates in case {i}. {fault} She was treated with oxygen and recovered by day {i + 5}.")


def _long_note(i: int) -> str:
    return " ".join(f"Observation {k} for patient {i} noted stable vital signs on ward round {k}." for k in range(8))


FAULTS = {10: "FAULT:malformed", 11: "FAULT:truncated", 12: "FAULT:refusal", 13: "FAULT:empty", 14: "FAULT:slow",
          15: "FAULT:500:3", 16: "FAULT:429:1", 17: "FAULT:500:1", 19: "FAULT:lowrel"}


def _docs() -> list[dict]:
    docs = []
    for i in range(20):
        text = _long_note(i) if i == 18 else _note(i, FAULTS.get(i, ""))
        docs.append({"doc_id": f"n{i:02d}", "title": f"Case {i}", "text": text, "metadata": "{}", "source": f"t:{i}"})
    return docs


def _cfg(srv: FakeOpenAIServer, out: Path) -> SynthConfig:
    return SynthConfig(backend="openai", output_dir=str(out), max_note_chars=400, batch_size=5, concurrency=2,
                       openai={"base_url": srv.url, "model": "fake-llm", "api_key_env": "SYNTH_IT_KEY",
                               "timeout_s": 0.5, "max_retries": 2, "backoff_base_s": 0.05, "max_concurrency": 4})


def _ledger_by_note(out: Path) -> dict[str, dict]:
    return {r[C.NOTE_ID]: r for r in read_ledger(str(out)).to_pylist()}


def test_openai_pipeline_exact_outcomes_and_resume(ray_local, tmp_path):
    out = tmp_path / "pairs"
    with FakeOpenAIServer(api_key=SECRET, retry_after_s=1, slow_s=1.5) as srv:
        cfg = _cfg(srv, out)
        s1 = generate_pairs_from_docs(ray.data.from_items(_docs()), cfg, run_id="r1")
        assert s1["output_dir"] == str(out / "r1")  # one folder per run: <synth.output_dir>/<run id>
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
            "r1/_SUCCESS.json", "r1/ledger/part-00000.parquet", "r1/pairs/part-00000.parquet"]
        assert len(_long_note(18)) > 400
        assert (s1["notes_in"], s1["notes_skipped_done"], s1["notes_ok"], s1["notes_failed"]) == (20, 0, 13, 7)
        assert s1["failures_by_reason"] == {"malformed_output": 1, "refusal": 1, "timeout": 1, "empty": 2,
                                            "http_error": 1, "truncated": 1}
        assert s1["dropped_by_rule"] == {"invalid_schema": 0, "low_relevance": 2, "ungrounded": 0,
                                         "duplicate_query": 0}
        led = _ledger_by_note(out)
        assert len(led) == 20
        expect_reason = {"n10": "malformed_output", "n11": "truncated", "n12": "refusal", "n13": "empty",
                         "n14": "timeout", "n15": "http_error", "n19": "empty"}
        assert {n: r[C.REASON] for n, r in led.items() if r[C.STATUS] == C.S_FAILED} == expect_reason
        assert {n: r[C.ATTEMPTS] for n, r in led.items() if r[C.ATTEMPTS] != 1} == {
            "n14": 3, "n15": 3, "n16": 2, "n17": 2, "n18": 2}  # n18: two parts, one request each
        assert led["n18"][C.N_PARTS] == 2 and led["n18"][C.N_PAIRS] == 4
        assert srv.calls_with("FAULT:429:1") == 2 and srv.calls_with("FAULT:500:3") == 3
        pairs = read_pairs(str(out))
        assert pairs.num_rows == s1["pairs_out"] == 12 * 2 + 4
        by_note: dict[str, int] = {}
        for n in pairs[C.NOTE_ID].to_pylist():
            by_note[n] = by_note.get(n, 0) + 1
        assert sorted(by_note) == sorted(n for n, r in led.items() if r[C.STATUS] == C.S_OK)
        assert sorted(set(pairs[C.PART_INDEX].to_pylist())) == [0, 1]
        row = pairs.to_pylist()[0]
        assert (row[C.GENERATOR], row[C.MODEL], row[C.PROMPT_VERSION]) == ("openai", "fake-llm", "pairs_v1")

        # a crashed run (no _SUCCESS) is ignored; a run written before issue 23 (runs/<run id>/) still counts
        (out / "runs").mkdir()
        (out / "r1").rename(out / "runs" / "r1")
        stale = out / "00000000T000000Z-crash" / "pairs"
        stale.mkdir(parents=True)
        (stale / "junk.parquet").write_bytes(b"not parquet")

        # rerun: done notes skipped, failed notes retried; n15's 4th call succeeds now
        s2 = generate_pairs_from_docs(ray.data.from_items(_docs()), cfg, run_id="r2")
        assert (s2["notes_in"], s2["notes_skipped_done"], s2["notes_ok"], s2["pairs_out"]) == (20, 13, 1, 2)
        assert s2["failures_by_reason"]["http_error"] == 0 and s2["notes_failed"] == 6
        assert srv.calls_with("FAULT:500:3") == 4 and srv.calls_with("FAULT:429:1") == 2  # n16 not asked again
        s3 = generate_pairs_from_docs(ray.data.from_items(_docs()), cfg, run_id="r3")
        assert (s3["notes_skipped_done"], s3["notes_ok"], s3["pairs_out"]) == (14, 0, 0)

    assert complete_runs(str(out)) == ["runs/r1", "r2", "r3"]
    pairs = read_pairs(str(out))
    ids = pairs[C.PAIR_ID].to_pylist()
    assert len(ids) == len(set(ids)) == 30  # no duplicates across runs

    # the API key is nowhere in the outputs, manifests or Ray's logs
    leaked = [p for p in out.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked += [p for p in logs.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
    assert SECRET not in json.dumps([s1, s2, s3])


def test_extractive_pipeline_and_vllm_path(ray_local, tmp_path, monkeypatch):
    docs = _docs()[:8]
    ext = generate_pairs_from_docs(ray.data.from_items(docs), SynthConfig(output_dir=str(tmp_path / "ext"),
                                                                          batch_size=4, concurrency=2), run_id="e")
    assert (ext["notes_ok"], ext["notes_failed"], ext["pairs_out"]) == (8, 0, 8 * 5)

    # the dataset-backend (vllm) path on CPU: the engine is replaced by a function that answers like the fake
    from medembed.synth.vllm_backend import VLLMBackend

    def fake_transform(self, ds):
        def engine(row):
            from tests.support.openai_server import good_pairs

            text = json.dumps({"pairs": good_pairs(row["text"])})
            if "FAULT:truncated" in row["text"]:
                return {**row, "generated_text": text[:30], "num_generated_tokens": self.cfg.vllm.max_tokens}
            return {**row, "generated_text": text, "num_generated_tokens": 50}

        return ds.map(engine)

    monkeypatch.setattr(VLLMBackend, "transform", fake_transform)
    cfg = SynthConfig(backend="vllm", output_dir=str(tmp_path / "vllm"), max_note_chars=400,
                      vllm={"model_source": "fake/model"})
    docs = _docs()[8:19]  # n08..n18: n11 truncated, n18 two parts; the other fault markers do nothing here
    s = generate_pairs_from_docs(ray.data.from_items(docs), cfg, run_id="v1")
    assert (s["notes_in"], s["notes_ok"], s["failures_by_reason"]["truncated"]) == (11, 10, 1)
    assert s["pairs_out"] == 9 * 2 + 4
    led = _ledger_by_note(tmp_path / "vllm")
    assert led["n11"][C.REASON] == "truncated" and led["n18"][C.N_PARTS] == 2
    again = generate_pairs_from_docs(ray.data.from_items(docs), cfg, run_id="v2")
    assert (again["notes_skipped_done"], again["notes_ok"]) == (10, 0)
