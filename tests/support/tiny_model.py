"""A tiny sentence-transformers model for the tests whose subject is a run's mechanics, not its model: fault and
resume tests of training. One BERT layer of width 32 on the bundled model's tokenizer and vocabulary, randomly
initialised with a fixed seed: a checkpoint (weights and optimizer state) is ~12 MB instead of the bundled model's
259 MB, and a step costs next to nothing, so such a test's time is the run's restarts and resumes, what it tests.

Quality tests and everything that compares with the bundled model keep using the bundled model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

KEEP = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json",
        "sentence_bert_config.json", "config_sentence_transformers.json")
WIDTH = 32


def build_tiny_model(bundled: Path, out: Path) -> Path:
    """Write the tiny model into ``out`` (a folder ``model.name`` accepts) and return it."""
    import torch
    from transformers import BertConfig, BertModel

    out.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        shutil.copy(bundled / name, out / name)
    (out / "2_Normalize").mkdir(exist_ok=True)
    pooling = json.loads((bundled / "1_Pooling" / "config.json").read_text())
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "word_embedding_dimension": WIDTH}))
    config = BertConfig(**{**json.loads((bundled / "config.json").read_text()), "hidden_size": WIDTH,
                           "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 2 * WIDTH})
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    return out
