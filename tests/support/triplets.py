"""Builders of nested training triplets (the mine-negatives output format) from the bundled sample notes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medembed.mining import columns as M
from medembed.runtime import artifacts
from tests.support.builders import inverse_cloze


def sample_triplets_table(n_notes: int | None = 32, per_note: int = 2, num_negatives: int = 4) -> pa.Table:
    """Inverse-cloze triplets: sentence -> the next two sentences; negatives are positives of the next notes."""
    base = inverse_cloze(n_notes, per_note)
    rows = []
    for j, (note, query, pos) in enumerate(base):
        others = [b for b in base[j + 1:] + base[:j] if b[0] != note][:num_negatives]
        rows.append({M.QUERY: query, M.POSITIVE: pos, M.NEGATIVES: [o[2] for o in others],
                     M.QUERY_ID: f"q{j:04d}", M.QUERY_NOTE_ID: note, M.POSITIVE_ID: M.positive_id(pos),
                     M.NEGATIVE_IDS: [M.positive_id(o[2]) for o in others], M.NEGATIVE_NOTE_IDS: [o[0] for o in others],
                     M.POSITIVE_SCORE: 0.9, M.NEGATIVE_SCORES: [0.5] * len(others), M.N_NEGATIVES: len(others),
                     M.SHORTFALL_REASON: None})
    return pa.Table.from_pylist(rows, schema=M.NESTED_SCHEMA)


def write_triplets_run(root: Path, table: pa.Table, run_id: str = "mine_negatives-test") -> Path:
    """A complete mine-negatives output folder ``<root>/<run id>/triplets`` holding ``table``."""
    out = root / run_id / "triplets"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "part-00000.parquet")
    artifacts.mark_complete(str(out), "triplets", run_id, {"rows": table.num_rows, "format": "nested"})
    return out


def tiny_train_overrides(triplets: Path, out: Path, run_name: str, model: str = "bundled:all-MiniLM-L6-v2",
                         **train: object) -> list[str]:
    """``--set`` overrides of a tiny CPU fine-tuning run (few steps, 32 tokens) of the bundled model, or of
    ``model`` (the fault tests pass ``tiny_model_path``)."""
    settings = {"triplets.path": str(triplets), "model.name": model,
                "output.dir": str(out / "models"), "output.run_dir": str(out / "runs"), "output.run_name": run_name,
                "train.num_workers": 2, "train.batch_size": 4, "train.num_negatives": 1,
                "train.query_max_length": 32, "train.passage_max_length": 32, "train.learning_rate": 1e-4,
                "train.checkpoint_every": 2, "train.dev_fraction": 0.0, "train.interpolate": None,
                "train.max_failures": 1,
                "ray.num_cpus": 2}
    settings.update({f"train.{k}": v for k, v in train.items()})
    return [f"{k}={'null' if v is None else v}" for k, v in settings.items()]


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints Ray Train has registered for the run (its snapshot file)."""
    snap = run_dir / "checkpoint_manager_snapshot.json"
    if not snap.exists():
        return []
    try:
        data = json.loads(snap.read_text())
    except ValueError:  # being written
        return []
    return sorted(int(r["metrics"]["step"]) for r in data.get("checkpoint_results", []))
