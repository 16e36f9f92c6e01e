"""Typed configuration: one pydantic model per stage, composed per job, loaded from YAML.

Overrides are dotted ``key=value`` strings (``model.name=BAAI/bge-base-en-v1.5``); values are
parsed as YAML scalars, so ``embed.num_actors=4`` is an int and ``store.fts=false`` a bool.
An invalid config raises :class:`ConfigError` naming the field, before any work starts.

This module imports no Ray, LanceDB or torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_MODEL = "bundled:all-MiniLM-L6-v2"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class S3Config(_Model):
    """Non-secret S3 settings. Credentials come only from the environment (AWS_* variables)."""

    endpoint_url: str | None = Field(None, description="S3 API endpoint; default: AWS_ENDPOINT_URL or AWS")
    region: str | None = Field(None, description="default: AWS_REGION / AWS_DEFAULT_REGION")
    allow_http: bool | None = Field(None, description="allow http:// endpoints (local S3 servers)")


class InputConfig(_Model):
    """Where the corpus is and how its fields map onto documents."""

    uri: str | None = Field(None, description="file, directory, glob, s3:// URI, hf://datasets/NAME or a "
                            "saved `datasets` folder; empty: the bundled synthetic sample corpus")
    format: Literal["auto", "jsonl", "csv", "parquet", "hf"] = "auto"
    id_field: str = "id"
    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    title_field: str | None = "title"
    metadata_fields: list[str] = Field(default_factory=list)
    hf_split: str = "train"
    max_chars: int = Field(200_000, gt=0, description="longer documents are quarantined as too_long")
    rows_per_block: int = Field(2048, gt=0, description="rows per block emitted by the readers")
    limit: int | None = Field(None, gt=0, description="read at most this many rows per source (debugging)")


class ChunkConfig(_Model):
    max_tokens: int | None = Field(None, gt=8, description="tokens per chunk; default: the model's max_seq_length")
    overlap_tokens: int = Field(32, ge=0)
    batch_size: int = Field(256, gt=0, description="documents per chunking call")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per read+chunk task; with embedder actors "
                            "holding the rest, leave at least this much free or the read stage cannot start")

    @model_validator(mode="after")
    def _overlap_lt_max(self) -> ChunkConfig:
        if self.max_tokens is not None and self.overlap_tokens >= self.max_tokens:
            raise ValueError("chunking.overlap_tokens must be smaller than chunking.max_tokens")
        return self


class ModelConfig(_Model):
    name: str = Field(DEFAULT_MODEL, description="bundled:all-MiniLM-L6-v2, a local folder, a hub id, an s3:// URI "
                      "or an MLflow registry model, models:/<name>@<alias> (needs tracking.mlflow_uri)")
    revision: str | None = None
    device: str = Field("auto", description="auto, cpu, cuda, cuda:0, mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 elsewhere; vectors are always float32")
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="torch (PyTorch), onnx (ONNX Runtime, optimized graph) or onnx-int8 (dynamic int8); "
        "onnx* export once per model revision into cache_dir and need a passed quality check to write tables")
    max_seq_length: int | None = Field(None, gt=8)
    query_prompt: str | None = Field(None, description="override the model family's query instruction")
    document_prompt: str | None = Field(None, description="override the model family's document prefix")
    cache_dir: str = Field(os.path.join("~", ".cache", "medembed", "models"))


class EmbedConfig(_Model):
    batch_size: int = Field(512, gt=0, description="rows handed to one embedder call (bucketed inside)")
    token_budget: int | None = Field(None, gt=0, description="max padded tokens per forward pass; default: 16384 "
                                     "on a GPU, 2048 on CPU (large passes of short texts are slower on CPU caches)")
    num_actors: int = Field(1, gt=0, description="embedder actor pool size")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per embedder actor (1 on GPU clusters)")
    num_cpus: float = Field(1.0, gt=0)
    torch_threads: int | None = Field(None, gt=0, description="intra-op threads per actor; default: all cores")
    cpu_keep_memory: bool = Field(True, description="CPU embedder actors start with glibc keeping freed memory "
                                  "(MALLOC_* environment): 1.02-1.06x the docs/s on CPU, far fewer page faults")
    block_mib: float = Field(1.0, gt=0, description="target size of the blocks flowing between stages; each "
                             "embedded block becomes one Lance fragment (smaller: earlier, more frequent commits)")
    wave_mib: float = Field(256.0, ge=0, description="input read per Ray Data execution (MiB of files as stored; "
                            "~850k chunks of JSONL notes): a long run is a series of executions, one committer across "
                            "them. Each runs in a wave runner process of its own, which holds the state Ray Data "
                            "keeps per block for a whole execution and exits after it (the driver only commits), so "
                            "this bounds that process's memory. Each starts its actor pools anew (model load); GPU "
                            "clusters set it higher. 0: one execution")
    writer_actors: int = Field(1, gt=0, description="Lance writer actors (each writes data files of embedded "
                               "blocks; the driver commits them). One core writes ~60k chunks/s of 384-dim vectors "
                               "(measured): on paper one writer per ~45 L4s or ~6 H200s at bge-base speed "
                               "(bench/RESULTS.md, 100M chunks on 64 GPUs)")
    stall_timeout_s: float = Field(1800.0, ge=0, description="fail the job when no embedded block reaches the "
                                   "writer for this long (a lost actor can hang an actor pool); 0: wait forever")
    one_actor_max_mib: float = Field(1.0, ge=0, description="input files up to this size (MiB, all files): one "
                                     "actor reads, chunks, embeds and writes the data files, with no Ray Data "
                                     "pipeline, writer actor or per-block commits (Ray's fixed costs dominate "
                                     "small jobs); 0: always stream")


class StoreConfig(_Model):
    uri: str = Field("./lancedb", description="LanceDB database: a local folder or s3://bucket/prefix")
    table: str | None = Field(None, description="default: <corpus_name>__<model slug>")
    corpus_name: str = Field("corpus", pattern=r"^[A-Za-z0-9_.-]+$")
    ann_min_rows: int = Field(100_000, ge=0, description="build an ANN index once the table has this many rows")
    ann_metric: Literal["cosine", "dot", "l2"] = "cosine"
    ann_index: Literal["IVF_PQ", "IVF_HNSW_SQ", "IVF_RQ"] = Field(
        "IVF_RQ", description="vector index type: IVF_RQ (default: the best recall per build second and byte, "
        "bench/index_recall.py), IVF_HNSW_SQ or IVF_PQ")
    ann_retrain_fraction: float = Field(0.1, gt=0, description="retrain the vector index (new centroids, one "
                                        "index) once the rows added plus removed since its last training exceed "
                                        "this fraction of the rows it was trained on; below, new rows go into a "
                                        "delta index")
    ann_max_deltas: int = Field(4, ge=0, description="merge the delta indexes into the trained one (same "
                                "centroids, no retraining) once there would be more than this many (a search "
                                "visits each: +0.5 ms p50 per delta at 1M rows)")
    fts: bool = Field(True, description="build a full-text index on text (for fts and hybrid search)")
    commit_every: int = Field(64, gt=0, description="commit written fragments in groups of this many")
    compact: bool = Field(True, description="compact small fragments at the end of a run")
    index_off_driver_rows: int = Field(100_000, ge=0, description="from this many rows, compaction, index "
                                       "maintenance and the verification's sample searches run in a Ray task of "
                                       "their own (a worker process that exits after), not in the job's driver: "
                                       "their memory grows with the table (0: always; below: in the driver, which "
                                       "saves a small job the task's start)")
    index_num_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for that task (Lance's builders use "
                                  "the node's threads whatever this says)")
    index_memory_gb: float | None = Field(None, gt=0, description="memory Ray reserves for that task (GiB), so a "
                                          "cluster places it on a node that has it; null: no reservation")


LOCAL_NODE_IP = "127.0.0.2"


class RayConfig(_Model):
    address: str | None = Field(None, description="cluster address; default: RAY_ADDRESS, else a local instance")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for a local instance")
    node_ip_address: str = Field(LOCAL_NODE_IP, pattern=r"^127\.", description="loopback address of a local "
                                 "instance (not 127.0.0.1, which Ray rewrites to the machine's network address)")
    dashboard: bool | None = Field(None, description="a local instance starts Ray's dashboard on loopback "
                                   "(127.0.0.1, port 8265 or the next free one): Ray's State API needs it, and Ray "
                                   "Train's placement-group cleaner polls that API every second (without it: a "
                                   "warning each time, and no cleanup of a dead run's placement group). Costs ~1-2 s "
                                   "of start-up. null: on for the jobs that train (train, pipeline), off for the rest")


class OutputConfig(_Model):
    run_dir: str = Field("./runs", description="run manifests and quarantine files go under here")
    run_name: str | None = None


class TrackingConfig(_Model):
    """MLflow tracking (off unless ``mlflow_uri`` is set; needs the ``tracking`` extra)."""

    mlflow_uri: str | None = Field(None, description="MLflow tracking URI: sqlite:///path/mlflow.db (local, "
                                   "offline, holds the Model Registry) or http(s)://server; null: no tracking")
    experiment: str = Field("medembed", min_length=1, description="MLflow experiment the runs go to")
    artifact_location: str | None = Field(None, description="artifact root of a newly created experiment; default "
                                          "for sqlite:///DIR/NAME.db: DIR/mlartifacts (else the server's default)")
    registered_model: str = Field("medembed", min_length=1, description="Model Registry name the pipeline "
                                  "registers its candidates under")
    alias: str = Field("champion", min_length=1, description="registry alias moved to a candidate that passes "
                       "the gate (jobs follow it with model.name=models:/<registered_model>@<alias>)")


class JobConfig(_Model):
    """What every job config has: S3 settings (non-secret; the runner makes the job's storage context from them),
    Ray, MLflow tracking and where the run's manifest goes. Each job's config class adds its own sections (and may
    narrow ``output`` to a subclass of :class:`OutputConfig`)."""

    s3: S3Config = Field(default_factory=S3Config)
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking and Model Registry "
                                     "(optional; off unless tracking.mlflow_uri is set)")
    output: OutputConfig = Field(default_factory=OutputConfig)


class EmbedJobConfig(JobConfig):
    """Config of `jobs/embed.py` / `medembed embed`."""

    input: InputConfig = Field(default_factory=InputConfig)
    chunking: ChunkConfig = Field(default_factory=ChunkConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)


C = TypeVar("C", bound=BaseModel)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        cur = nxt
    cur[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty field name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
# Renamed shipped configs: old name -> new name; the old name still loads, with a deprecation warning, for one release.
DEPRECATED_CONFIGS = {"embed_local": "embed"}


def shipped_configs() -> list[str]:
    """Names of the configs shipped inside the package (``medembed/configs/<name>.yaml``)."""
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """A config file: an existing path, else a shipped config by name (``embed_pmc_patients``)."""
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.is_file():
        return p
    shipped = SHIPPED_CONFIGS / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    if p.parent == Path(".") and shipped.is_file():
        return shipped
    if p.parent == Path(".") and p.stem in DEPRECATED_CONFIGS and p.suffix in ("", ".yaml", ".yml"):
        new = DEPRECATED_CONFIGS[p.stem]
        logging.getLogger(__name__).warning("config %r is deprecated and will be removed in the next release; use "
                                            "%r (the same file)", str(name_or_path), new)
        return SHIPPED_CONFIGS / f"{new}.yaml"
    raise ConfigError(f"config file not found: {name_or_path} (a YAML path, or a shipped config: "
                      f"{', '.join(shipped_configs())})")


ConfigCheck = Callable[[Mapping[str, Any], Path], None]


def load_config(cls: type[C], path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None,
                checks: Sequence[ConfigCheck] = ()) -> C:
    """Load ``cls`` from a YAML file or shipped config name (optional) plus dotted overrides.

    ``checks`` see the raw mapping (file contents plus overrides) and the file before validation, when a file is
    given; a ``ValueError`` one raises becomes a ConfigError (the runner passes the checks of the layers above,
    e.g. the benchmark instrument's refusal in production presets). Raises ConfigError on any problem, naming
    the file or field.
    """
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = find_config(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        data = loaded or {}
        origin = str(p)
    for ov in overrides or []:
        key, value = parse_override(ov)
        _set_dotted(data, key, value)
    if overrides:
        origin += " + overrides"
    if path is not None:
        for check in checks:
            try:
                check(data, p)
            except ValueError as e:
                raise ConfigError(str(e)) from None
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin)) from None

