"""Ingestion sources on a local Ray instance: the real PMC-Patients files mapped by config, a saved
Hugging Face dataset, and the bundled synthetic sample."""

from __future__ import annotations

import pytest

from medembed import schema as S
from medembed.config import EmbedJobConfig, InputConfig, load_config
from medembed.ingest import read_documents, read_quarantine_counts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def docs_of(cfg: InputConfig, qdir) -> dict[str, dict]:
    rows = read_documents(cfg, str(qdir)).take_all()
    ids = [r[S.DOC_ID] for r in rows]
    assert len(ids) == len(set(ids))
    return {r[S.DOC_ID]: r for r in rows}


@pytest.mark.realdata
def test_pmc_patients_csv_and_jsonl_map_by_config_alone(ray_local, shared_data, tmp_path):
    cfg = load_config(EmbedJobConfig, "embed_pmc_patients").input
    jsonl = docs_of(cfg.model_copy(update={"uri": str(shared_data / "pmc_patients" / "notes.jsonl")}), tmp_path / "q1")
    csv = docs_of(cfg.model_copy(update={"uri": str(shared_data / "pmc_patients" / "PMC-Patients-sample-1000.csv")}),
                  tmp_path / "q2")
    assert len(jsonl) == len(csv) == 1000
    assert read_quarantine_counts(str(tmp_path / "q1")) == {} and read_quarantine_counts(str(tmp_path / "q2")) == {}
    assert jsonl.keys() == csv.keys()
    for k in ("7665777-1", "8699387-1"):
        assert jsonl[k][S.TEXT] == csv[k][S.TEXT] and jsonl[k][S.TITLE] == csv[k][S.TITLE]
    assert jsonl["7665777-1"][S.TEXT].startswith("This 60-year-old male was hospitalized")
    assert '"PMID": "33492400"' in jsonl["7665777-1"][S.METADATA]
    assert csv["7665777-1"][S.SOURCE].endswith("PMC-Patients-sample-1000.csv:line 2")


def test_saved_hf_dataset_is_read_like_a_file(ray_local, tmp_path):
    import datasets

    rows = {"uid": ["a", "b", "c", "a"], "body": ["first note", "second note", "", "dup"], "t": ["A", "B", "C", "D"]}
    path = tmp_path / "hfds"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    cfg = InputConfig(uri=str(path), id_field="uid", text_fields=["body"], title_field="t")
    docs = docs_of(cfg, tmp_path / "q")
    assert sorted(docs) == ["a", "b"]
    assert docs["b"][S.TEXT] == "second note" and docs["b"][S.SOURCE] == f"hf:{path}/train:row 1"
    assert read_quarantine_counts(str(tmp_path / "q")) == {S.R_DUPLICATE_ID: 1, S.R_EMPTY_TEXT: 1}
    # a DatasetDict picks the configured split
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dd"))
    docs = docs_of(InputConfig(uri=str(tmp_path / "dd"), id_field="uid", text_fields=["body"], hf_split="test"),
                   tmp_path / "q2")
    assert sorted(docs) == ["a", "b"]
    with pytest.raises(ValueError, match="split 'train' not found"):
        docs_of(InputConfig(uri=str(tmp_path / "dd"), id_field="uid", text_fields=["body"]), tmp_path / "q3")


def test_bundled_sample_corpus_is_synthetic_and_clean(ray_local, tmp_path):
    from medembed.sample_corpus import default_path, write_sample

    header = default_path().read_text().splitlines()[0]
    assert "SYNTHETIC" in header
    regenerated = write_sample(tmp_path / "s.jsonl")
    assert regenerated.read_text() == default_path().read_text()  # the shipped file is what the generator writes
    cfg = load_config(EmbedJobConfig, "embed").input
    docs = docs_of(cfg, tmp_path / "q")
    assert len(docs) == 200 and read_quarantine_counts(str(tmp_path / "q")) == {}
