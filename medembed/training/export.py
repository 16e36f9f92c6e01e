"""The trained model as a sentence-transformers folder: weights, saved prompts, medembed card, README."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medembed.embedding.card import ModelCard, Prompts

log = logging.getLogger(__name__)


def save_model(st_model: Any, folder: str | Path, card: ModelCard, training: dict[str, Any]) -> Path:
    """Save ``st_model`` with ``card``'s prompts (query/document) so ``resolve_card`` and
    ``SentenceTransformer.encode_query``/``encode_document`` use them unchanged."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    st_model.prompts = {"query": card.prompts.query, "document": card.prompts.document}
    st_model.default_prompt_name = None
    st_model.max_seq_length = card.max_seq_length
    st_model.save(str(folder))
    card.save(folder, training=training)
    (folder / "README.md").write_text(readme(card, training), encoding="utf-8")
    log.info("saved model %s to %s", card.model_id, folder)
    return folder


def output_card(base: ModelCard, model_id: str, max_seq_length: int) -> ModelCard:
    """The card of a model fine-tuned from ``base``: same prompts, dimension and similarity."""
    return ModelCard(source=model_id, path="", model_id=model_id, revision="", dim=base.dim,
                     max_seq_length=max_seq_length, prompts=Prompts(base.prompts.query, base.prompts.document),
                     similarity=base.similarity, base_model=base.model_id)


def readme(card: ModelCard, training: dict[str, Any]) -> str:
    """A human-readable model card."""
    hp = training.get("hyperparameters", {})
    dev = training.get("dev", {})
    lines = [
        f"# {card.model_id}", "",
        f"A medical text embedding model fine-tuned by medembed from `{card.base_model}` with a contrastive "
        "(InfoNCE) loss over in-batch and mined hard negatives.", "",
        "## Use", "", "```python", "from sentence_transformers import SentenceTransformer", "",
        "model = SentenceTransformer('<this folder>')",
        "q = model.encode_query(['chest pain after exercise'])  # adds the saved query prompt",
        "d = model.encode_document(['Patient reports exertional angina ...'])", "```", "",
        "With medembed: `medembed embed --set model.name=<this folder>`.", "",
        "## Model", "",
        f"- base model: `{card.base_model}`", f"- dimension: {card.dim}, similarity: {card.similarity}",
        f"- max sequence length: {card.max_seq_length}",
        f"- query prompt: {json.dumps(card.prompts.query)}", f"- document prompt: {json.dumps(card.prompts.document)}",
        "", "## Training", "",
        f"- triplets: `{training.get('triplets_path')}` (run {training.get('triplets_run_id')})",
        f"- triplets used: {training.get('train_triplets')} train / {training.get('dev_triplets')} dev "
        "(split by source note)",
        f"- steps: {training.get('steps')}, workers: {hp.get('num_workers')}, global batch: "
        f"{(hp.get('batch_size') or 0) * (hp.get('num_workers') or 0)}, hard negatives per query: "
        f"{hp.get('num_negatives')}, temperature: {hp.get('temperature')}",
        f"- learning rate {hp.get('learning_rate')} (warmup {hp.get('warmup_ratio')}, cosine), weight decay "
        f"{hp.get('weight_decay')}, epochs {hp.get('epochs')}, seed {hp.get('seed')}",
        f"- loss: first {_fmt(training.get('first_loss'))}, final {_fmt(training.get('final_loss'))}",
        f"- interpolation with the base: alpha = {training.get('interpolation_alpha')}", "",
        "## Dev results (held-out notes)", "",
    ]
    if dev:
        lines += ["| alpha | nDCG@10 | Recall@10 | MRR@10 |", "|---|---|---|---|"]
        for a, m in sorted(dev.items(), key=lambda kv: float(kv[0])):
            lines.append(f"| {a} | {_fmt(m.get('ndcg_at_10'))} | {_fmt(m.get('recall_at_10'))} | "
                         f"{_fmt(m.get('mrr_at_10'))} |")
    else:
        lines.append("No dev evaluation (train.interpolate is null or the dev split is empty).")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
