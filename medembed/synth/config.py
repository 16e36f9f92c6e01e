"""Configuration of synthetic pair generation (`jobs/generate_pairs.py`, `medembed generate-pairs`).

Imports no Ray.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medembed.config import InputConfig, JobConfig, _Model


class OpenAIBackendConfig(_Model):
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM server, LiteLLM, hosted)."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="ends in /v1; /chat/completions is appended")
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="name of the environment variable holding the key (never the key)")
    timeout_s: float = Field(120.0, gt=0, description="per request (socket) timeout")
    max_retries: int = Field(5, ge=0, description="retries after the first attempt (429, 5xx, timeouts)")
    backoff_base_s: float = Field(1.0, ge=0, description="first backoff; doubles per retry, with jitter")
    backoff_max_s: float = Field(60.0, ge=0)
    max_retry_after_s: float = Field(300.0, ge=0, description="cap on a server's Retry-After")
    max_concurrency: int = Field(16, gt=0, description="requests in flight per actor")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(2048, gt=0)
    json_mode: bool = Field(False, description="send response_format={'type': 'json_object'}")


class VLLMBackendConfig(_Model):
    """In-cluster generation with ``ray.data.llm`` (needs vllm and GPUs)."""

    model_source: str = "Qwen/Qwen2.5-7B-Instruct"
    tensor_parallel_size: int = Field(1, gt=0)
    pipeline_parallel_size: int = Field(1, gt=0)
    concurrency: int = Field(1, gt=0, description="vLLM engine replicas")
    batch_size: int = Field(32, gt=0)
    max_model_len: int = Field(8192, gt=0)
    num_gpus: float = Field(1.0, ge=0, description="GPUs per engine worker")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(2048, gt=0)
    accelerator_type: str | None = None
    engine_kwargs: dict = Field(default_factory=dict, description="extra vLLM engine kwargs")


class SynthConfig(_Model):
    backend: Literal["extractive", "openai", "vllm"] = "extractive"
    prompt_version: str = Field("pairs_v1", pattern=r"^[A-Za-z0-9_.-]+$",
                                description="template medembed/synth/templates/<prompt_version>.txt")
    queries_per_note: int = Field(5, gt=0, description="queries asked for per request (per part of a long note)")
    max_note_chars: int = Field(12_000, ge=200, description="longer notes are split into parts of at most this")
    extractive_findings: int = Field(0, ge=0, description="extractive backend: up to this many of a note's "
                                     "queries are finding/conclusion sentences -> the rest of the note (claim-like "
                                     "queries, e.g. for abstracts); 0: off")
    min_relevance: float = Field(0.3, ge=0, le=1)
    min_grounding: float = Field(0.8, ge=0, le=1, description="fraction of passage 3-grams found in the note")
    output_dir: str = Field("./output/pairs", description="each run's folder <output_dir>/<run id>/ (pairs/, "
                            "ledger/, _SUCCESS.json) goes under here")
    batch_size: int = Field(32, gt=0, description="notes per actor call")
    concurrency: int = Field(1, gt=0, description="generator actors")
    actor_num_cpus: float = Field(0.25, gt=0, description="CPUs reserved per actor (I/O bound for openai)")
    batches_per_actor: int = Field(8, gt=0, description="batches an actor works on at once, for backends that "
                                   "can (openai: the requests of all of them share openai.max_concurrency); "
                                   "other backends take one at a time")
    openai: OpenAIBackendConfig = Field(default_factory=OpenAIBackendConfig)
    vllm: VLLMBackendConfig = Field(default_factory=VLLMBackendConfig)

    @model_validator(mode="after")
    def _template_exists(self) -> SynthConfig:
        if self.backend != "extractive":
            from medembed.synth.prompts import template_path

            if not template_path(self.prompt_version).is_file():
                raise ValueError(f"synth.prompt_version: no template {template_path(self.prompt_version)}")
        return self


class GeneratePairsJobConfig(JobConfig):
    """Config of `jobs/generate_pairs.py` / `medembed generate-pairs`."""

    input: InputConfig = Field(default_factory=InputConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
