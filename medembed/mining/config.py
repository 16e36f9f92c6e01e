"""Configuration of hard-negative mining (`jobs/mine_negatives.py`, `medembed mine-negatives`).

Imports no Ray, LanceDB or torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medembed.config import EmbedConfig, JobConfig, ModelConfig, OutputConfig, _Model

DEFAULT_LEXICAL_WEIGHT = 0.43  # the hybrid teacher's BM25 weight (bench/RESULTS.md, quality_finetune)


class PairsConfig(_Model):
    path: str = Field("./output/pairs", description="pairs Parquet file or folder, or a `generate-pairs` "
                      "synth.output_dir (then the pairs of its complete runs)")
    limit: int | None = Field(None, gt=0, description="mine at most this many pairs (debugging)")


class CandidatesConfig(_Model):
    """Candidate passages: the pairs' positives (deduplicated by text) plus, optionally, a corpus table."""

    uri: str = Field("./lancedb", description="LanceDB database holding `table`")
    table: str | None = Field(None, description="an existing table built by `medembed embed` with the same model; "
                              "its chunks join the candidates (not re-embedded)")
    store_uri: str = Field("./output/mining/lancedb", description="LanceDB database the candidate table is written to")
    store_table: str | None = Field(None, description="default: mining_candidates__<model slug>; rebuilt every run")
    retrieval: Literal["auto", "exact", "ann"] = Field(
        "auto", description="exact: brute force in each actor (deterministic); ann: the table's vector index; "
                            "auto: ann when the candidate table has a vector index")
    ann_min_rows: int = Field(100_000, ge=0, description="build an IVF_PQ index once the candidate table has this many rows")
    nprobes: int = Field(20, gt=0, description="IVF partitions probed per ANN query")
    commit_every: int = Field(64, gt=0, description="commit written candidate fragments in groups of this many")
    refine_factor: int | None = Field(10, gt=0, description="ANN: re-rank refine_factor*top_k hits with exact scores")


class MiningConfig(_Model):
    top_k: int | None = Field(None, gt=0, description="candidates retrieved per query; default max_rank + 32 "
                              "(room for the positive and same-note passages)")
    min_rank: int = Field(0, ge=0, description="skip this many hardest surviving candidates (ST range_min)")
    max_rank: int = Field(100, gt=0, description="surviving candidates past this rank are not used (ST range_max)")
    num_negatives: int = Field(5, gt=0)
    relative_margin: float | None = Field(0.05, ge=0, description="drop candidates scoring above "
                                          "pos - |pos| * relative_margin (ST; NV-Retriever recommends 0.05)")
    absolute_margin: float | None = Field(None, description="drop candidates scoring above pos - absolute_margin")
    exclude_same_note: bool = Field(True, description="never pick passages of the query's own note")
    teacher: Literal["dense", "hybrid"] = Field(
        "dense", description="how candidates are scored and ranked: dense = cosine of the model's vectors; "
        "hybrid = z(cosine) + lexical_weight * z(BM25), both z-normalized over all candidates of the query "
        "(exact: each actor holds all candidate vectors and a BM25 index, and scores a batch against every "
        "candidate, batch_size x candidates x 4 bytes); the scores are written with the triplets for "
        "train.distill_weight")
    lexical_weight: float = Field(DEFAULT_LEXICAL_WEIGHT, gt=0, description="weight of BM25 in the hybrid teacher")
    batch_size: int = Field(256, gt=0, description="queries per actor call")
    num_actors: int = Field(1, gt=0, description="mining actor pool size")
    one_actor_max_pairs: int = Field(
        10_000, ge=0, description="up to this many pairs the job runs in ONE actor (embed.num_cpus/num_gpus, or "
        "mining's when larger) that loads the model once, embeds the positives and mines: no second actor "
        "start-up or model load. Above it: an embedding pool of embed.num_actors, then a mining pool of "
        "mining.num_actors. 0: always the pools")
    in_driver_max_pairs: int = Field(
        2_000, ge=0, description="up to this many pairs (and no GPU asked for) that one worker runs in the job's "
        "driver process instead of an actor: no process start or second import of torch, which cost more than "
        "the model work on tiny inputs. 0: always an actor")
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _window(self) -> MiningConfig:
        if self.min_rank >= self.max_rank:
            raise ValueError("mining.min_rank must be smaller than mining.max_rank")
        if self.num_negatives > self.max_rank - self.min_rank:
            raise ValueError(f"mining.num_negatives={self.num_negatives} does not fit the rank window "
                             f"[{self.min_rank}, {self.max_rank})")
        if self.teacher == "hybrid" and self.relative_margin is not None:
            if "relative_margin" in self.model_fields_set:
                raise ValueError("mining.relative_margin assumes cosine scores; with mining.teacher=hybrid set "
                                 "mining.relative_margin=null and use mining.absolute_margin (in standard "
                                 "deviations of the query's scores)")
            self.relative_margin = None  # the cosine default does not apply to hybrid scores
        if self.top_k is not None and self.top_k <= self.max_rank:
            raise ValueError("mining.top_k must exceed mining.max_rank (the positive takes a slot)")
        return self

    @property
    def retrieve_k(self) -> int:
        return self.top_k or self.max_rank + 32


class MiningOutputConfig(OutputConfig):
    dir: str = Field("./output/triplets", description="triplets go to <dir>/<run id>/triplets/*.parquet")
    format: Literal["nested", "flat"] = Field("nested", description="nested: one row per query with a negatives "
                                              "list; flat: one row per (query, positive, negative)")
    hub_repo: str | None = Field(None, description="also push the triplets to this HF Hub dataset repo "
                                 "(token from env HF_TOKEN only)")
    hub_private: bool = True


class MineNegativesJobConfig(JobConfig):
    """Config of `jobs/mine_negatives.py` / `medembed mine-negatives`."""

    pairs: PairsConfig = Field(default_factory=PairsConfig)
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    output: MiningOutputConfig = Field(default_factory=MiningOutputConfig)

    @model_validator(mode="after")
    def _hybrid_exact(self) -> MineNegativesJobConfig:
        if self.mining.teacher == "hybrid" and self.candidates.retrieval == "ann":
            raise ValueError("mining.teacher=hybrid scores every candidate of a query: it needs "
                             "candidates.retrieval exact or auto, not ann")
        return self
