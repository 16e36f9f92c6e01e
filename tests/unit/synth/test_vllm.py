from __future__ import annotations

import json

import pytest

from medembed.synth import columns as C
from medembed.synth.backends import BackendUnavailable, backend_identity, create_backend
from medembed.synth.config import SynthConfig
from medembed.synth.validate import outcome_of
from medembed.synth.vllm_backend import (
    INFERENCE_ERROR,
    Preprocess,
    build_vllm_processor,
    generation_of,
    processor_config,
    vllm_available,
)

CFG = SynthConfig(backend="vllm", queries_per_note=3,
                  vllm={"model_source": "Qwen/Qwen2.5-7B-Instruct", "tensor_parallel_size": 2, "concurrency": 3,
                        "batch_size": 16, "max_model_len": 4096, "max_tokens": 300, "temperature": 0.2,
                        "engine_kwargs": {"enforce_eager": True}})
NOTE = "Chest CT showed a 3 cm mass in the right upper lobe. Biopsy confirmed adenocarcinoma."


def test_processor_config():
    pc = processor_config(CFG)
    assert pc.model_source == "Qwen/Qwen2.5-7B-Instruct"
    assert (pc.concurrency, pc.batch_size, pc.should_continue_on_error) == (3, 16, True)
    assert pc.engine_kwargs["tensor_parallel_size"] == 2 and pc.engine_kwargs["max_model_len"] == 4096
    assert pc.engine_kwargs["enforce_eager"] is True and pc.engine_kwargs["enable_prefix_caching"] is True
    assert pc.placement_group_config is None
    half = processor_config(SynthConfig(backend="vllm", vllm={"num_gpus": 0.5}))
    assert half.placement_group_config["bundle_per_worker"]["GPU"] == 0.5


def test_preprocess_renders_chat_messages_and_sampling():
    row = {C.NOTE_ID: "n1", C.PART_INDEX: 0, "n_parts": 1, "title": "Lung mass", "text": NOTE}
    out = Preprocess(CFG)(row)
    assert out[C.NOTE_ID] == "n1" and out["text"] == NOTE  # original columns carried over
    assert out["sampling_params"] == {"temperature": 0.2, "max_tokens": 300}
    assert [m["role"] for m in out["messages"]] == ["system", "user"]
    assert out["messages"][1]["content"].endswith(f"Title: Lung mass\nNote (part 1 of 1):\n{NOTE}\n")
    assert "write 3 diverse search queries" in out["messages"][1]["content"]


def test_engine_rows_to_outcomes():
    pairs = {"pairs": [{"query": "lung biopsy result", "query_type": "diagnosis",
                        "passage": "Biopsy confirmed adenocarcinoma.", "relevance": 0.95}]}
    ok = generation_of({"generated_text": json.dumps(pairs), "num_generated_tokens": 40}, 300)
    out = outcome_of(ok, NOTE, 0, min_relevance=0.3, min_grounding=0.8, seen_queries=set())
    assert out.reason is None and [p["query"] for p in out.pairs] == ["lung biopsy result"]
    cut = generation_of({"generated_text": json.dumps(pairs)[:50], "num_generated_tokens": 300}, 300)
    assert cut.finish_reason == "length"
    assert outcome_of(cut, NOTE, 0, min_relevance=0.3, min_grounding=0.8, seen_queries=set()).reason == C.F_TRUNCATED
    err = generation_of({INFERENCE_ERROR: "prompt is longer than max_model_len", "generated_text": ""}, 300)
    assert (err.error, err.detail) == (C.F_TRUNCATED, "engine error: prompt is longer than max_model_len")
    assert generation_of({INFERENCE_ERROR: "CUDA error", "generated_text": ""}, 300).error == C.F_HTTP_ERROR
    refusal = generation_of({"generated_text": "I cannot do that.", "num_generated_tokens": 5}, 300)
    assert outcome_of(refusal, NOTE, 0, min_relevance=0.3, min_grounding=0.8, seen_queries=set()).reason == C.F_REFUSAL


def test_identity_and_guarded_import():
    assert backend_identity(CFG) == ("vllm", "Qwen/Qwen2.5-7B-Instruct", "pairs_v1")
    backend = create_backend(CFG)  # constructing the backend needs no vllm
    assert backend.mode == "dataset"
    if not vllm_available():
        with pytest.raises(BackendUnavailable, match="needs vllm"):
            build_vllm_processor(CFG)
