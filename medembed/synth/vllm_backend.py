"""In-cluster generation with vLLM through ``ray.data.llm`` (GPU clusters).

vllm is an optional dependency: it is imported only when the processor is built. The pieces that
need no GPU (the processor config, the per-row chat messages and sampling parameters, and turning
engine rows into :class:`Generation`s) are plain functions, unit tested on CPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from medembed.synth import columns as C
from medembed.synth.base import BackendBase, BackendUnavailable, register_backend
from medembed.synth.config import SynthConfig
from medembed.synth.prompts import load_template
from medembed.synth.validate import Generation

# columns of a request row (one note part) in the dataset handed to the processor
R_TITLE, R_TEXT, R_N_PARTS = "title", "text", "n_parts"
INFERENCE_ERROR = "__inference_error__"


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def engine_kwargs(cfg: SynthConfig) -> dict[str, Any]:
    v = cfg.vllm
    kw = {"tensor_parallel_size": v.tensor_parallel_size, "pipeline_parallel_size": v.pipeline_parallel_size,
          "max_model_len": v.max_model_len, "gpu_memory_utilization": v.gpu_memory_utilization,
          "enable_prefix_caching": True}  # the system prompt and instructions are shared by every request
    kw.update(v.engine_kwargs)
    return kw


def processor_config(cfg: SynthConfig) -> Any:
    """The ``vLLMEngineProcessorConfig`` for this job (constructing it needs no vllm)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    v = cfg.vllm
    kwargs: dict[str, Any] = dict(model_source=v.model_source, engine_kwargs=engine_kwargs(cfg),
                                  concurrency=v.concurrency, batch_size=v.batch_size, should_continue_on_error=True)
    if v.accelerator_type:
        kwargs["accelerator_type"] = v.accelerator_type
    if v.num_gpus != 1.0:
        kwargs["placement_group_config"] = {"bundle_per_worker": {"GPU": v.num_gpus}}
    return vLLMEngineProcessorConfig(**kwargs)


class Preprocess:
    """Row -> chat messages + sampling params (a picklable callable for ``build_processor``)."""

    def __init__(self, cfg: SynthConfig):
        self.template = load_template(cfg.prompt_version)
        self.n = cfg.queries_per_note
        self.sampling = {"temperature": cfg.vllm.temperature, "max_tokens": cfg.vllm.max_tokens}

    def __call__(self, row: dict) -> dict:
        msgs = self.template.messages(title=row.get(R_TITLE) or "", note=row[R_TEXT], n=self.n,
                                      part_index=int(row[C.PART_INDEX]), n_parts=int(row[R_N_PARTS]))
        return {**row, "messages": msgs, "sampling_params": dict(self.sampling)}


def generation_of(row: dict, max_tokens: int) -> Generation:
    """An engine output row -> Generation. vLLM rows carry no finish_reason: a row that used all
    ``max_tokens`` is reported as finish_reason "length"."""
    err = row.get(INFERENCE_ERROR)
    if err:
        text = str(err)
        low = text.lower()
        reason = C.F_TRUNCATED if ("context length" in low or "max_model_len" in low) else C.F_HTTP_ERROR
        return Generation(error=reason, detail="engine error: " + " ".join(text.split())[:200], attempts=1)
    n_gen = int(row.get("num_generated_tokens") or 0)
    return Generation(content=row.get("generated_text") or "", finish_reason="length" if n_gen >= max_tokens else "stop",
                      attempts=1)


def build_vllm_processor(cfg: SynthConfig) -> Any:
    if not vllm_available():
        raise BackendUnavailable("synth.backend=vllm needs vllm (pip install 'medembed[vllm]') and GPUs")
    from ray.data.llm import build_processor

    return build_processor(processor_config(cfg), preprocess=Preprocess(cfg))


@register_backend("vllm")
class VLLMBackend(BackendBase):
    """A dataset backend: ``transform`` runs the vLLM processor over a dataset of request rows."""

    mode = "dataset"

    @staticmethod
    def model_name(cfg: SynthConfig) -> str:
        return cfg.vllm.model_source

    def transform(self, requests_ds: Any) -> Any:
        """Request rows (note_id, part_index, n_parts, title, text) -> the same rows + engine outputs."""
        return build_vllm_processor(self.cfg)(requests_ds)

    def close(self) -> None:
        pass
