"""A 2-worker DDP run on CPU finishes, learns, and writes a model folder that medembed and ST load as is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medembed.config import ModelConfig, load_config
from medembed.runtime import artifacts
from medembed.runtime.manifest import RunManifest
from medembed.training.config import TrainJobConfig
from tests.support.ray_retry import local_ray
from tests.support.triplets import sample_triplets_table, tiny_train_overrides, write_triplets_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_training():
    with local_ray(num_cpus=2):
        yield


def test_two_worker_run_writes_a_loadable_model_with_prompts_and_card(tmp_path, ray_training):
    from sentence_transformers import SentenceTransformer

    from medembed.embedding.card import resolve_card
    from medembed.jobs.train import train
    from medembed.training.loop import staging_dir
    from medembed.training.trainer import storage_path

    trip = write_triplets_run(tmp_path / "triplets", sample_triplets_table(n_notes=32), run_id="mine_negatives-t")
    stale = staging_dir(storage_path(str(tmp_path / "models")), "ddp")  # as a worker killed while saving leaves it
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "state.pt").write_bytes(b"\0" * 1024)
    cfg = load_config(TrainJobConfig, "train", [
        *tiny_train_overrides(trip, tmp_path, "ddp", dev_fraction=0.25, interpolate="[0.5,1.0]",
                              distill_weight=1.0, teacher_temperature=0.05),
        "model.query_prompt='query: '", "model.document_prompt='passage: '"])
    manifest = RunManifest("train", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id="ddp")
    counts = train(cfg, manifest)

    assert counts["train_triplets"] + counts["dev_triplets"] == 64
    assert counts["dev_triplets"] > 0
    assert counts["steps"] == sum(counts["steps_per_epoch"])  # one epoch of global batches of 2 x 4 rows
    assert counts["train_triplets"] // 8 <= counts["steps"] <= counts["train_triplets"] // 2
    assert counts["tail_rows_left_out"] <= 1
    assert counts["attempt_start_steps"] == [0]
    assert counts["cpu_memory_kept"] is True  # train.cpu_keep_memory reached the workers at their start
    assert counts["steps_per_s"] > 0
    assert not stale.exists()  # the run's staging directory was emptied, and nothing was left in it
    assert counts["final_loss"] < counts["first_loss"]
    assert counts["interpolation_alpha"] in (0.5, 1.0)
    assert set(counts["dev"]) == {"0.0", "0.5", "1.0"}

    model_dir = Path(counts["model_dir"])
    assert model_dir == tmp_path / "models" / "ddp" / "model"
    marker = artifacts.read_marker(str(model_dir))
    assert marker["kind"] == "model" and marker["run_id"] == "ddp" and marker["steps"] == counts["steps"]
    st_cfg = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    assert st_cfg["prompts"] == {"query": "query: ", "document": "passage: "}
    saved = json.loads((model_dir / "medembed_model.json").read_text())
    assert saved["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert saved["training"]["triplets_run_id"] == "mine_negatives-t"
    assert saved["training"]["teacher_scores"] == "cosine"  # distilled the mining scores (InfoNCE + KL)
    assert saved["training"]["interpolation_alpha"] == counts["interpolation_alpha"]
    assert "nDCG@10" in (model_dir / "README.md").read_text()

    card = resolve_card(ModelConfig(name=str(model_dir)))  # what `medembed embed --set model.name=...` resolves
    assert card.model_id == counts["model_id"] == "medembed-all_minilm_l6_v2-ddp"
    assert (card.prompts.query, card.prompts.document) == ("query: ", "passage: ")
    assert card.dim == 384 and card.base_model == "sentence-transformers/all-MiniLM-L6-v2"

    st = SentenceTransformer(str(model_dir), device="cpu")
    base = SentenceTransformer(resolve_card(ModelConfig()).path, device="cpu")
    q = st.encode_query(["fever and cough"], convert_to_tensor=True)
    assert q.shape == (1, 384)
    assert st.prompts["query"] == "query: "
    diff = max((a - b).abs().max().item() for a, b in zip(st.state_dict().values(), base.state_dict().values())
               if a.is_floating_point())
    assert diff > 0  # the weights moved
