"""Configuration of the gated pipeline (`jobs/pipeline.py`, `medembed pipeline`).

Each stage section, named by the job the stage runs (``generate_pairs``, ``mine_negatives``, ``train``,
``evaluate``, ``embed``), holds overrides of that job's own config (the old section names ``pairs`` and
``negatives`` still load, with a deprecation warning, for one release);
the pipeline fills in what joins the stages (input corpus, base model, paths between stages) and
validates every composed stage config before any work starts. Imports no Ray, LanceDB or torch.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field, model_validator

from medembed.config import InputConfig, JobConfig, ModelConfig, OutputConfig, _Model

DEPRECATED_SECTIONS = {"pairs": "generate_pairs", "negatives": "mine_negatives"}  # old -> new, one release


class GateConfig(_Model):
    """Promote the candidate only when it is not worse than the current model on every gate dataset."""

    datasets: list[str] | None = Field(None, description="evaluated datasets the gate looks at (names); "
                                       "default: every evaluated dataset")
    metric: str = Field("ndcg_at_10", description="a score key of the results, e.g. ndcg_at_10, recall_at_100")
    tolerance: float = Field(0.0, ge=0, description="the candidate may trail the current model by at most this "
                             "much (absolute, on the metric's 0-1 scale) on each gate dataset")
    require_labelled: bool = Field(False, description="refuse a gate without a labelled retrieval set (a BEIR "
                                   "folder or s3:// URI of judged queries in evaluate.datasets): the synthetic "
                                   "pairs-dev split alone rises easily while real retrieval can fall; production "
                                   "presets set this")


class PipelineOutputConfig(OutputConfig):
    dir: str = Field("./output/pipeline", description="stage outputs go to <dir>/<pipeline run id>/<stage>/...; "
                     "stage records to <dir>/<pipeline run id>/stages/<stage>/_SUCCESS.json")


class PipelineJobConfig(JobConfig):
    """Config of `jobs/pipeline.py` / `medembed pipeline`."""

    input: InputConfig = Field(default_factory=InputConfig, description="the corpus: pairs come from it and the "
                               "promoted model embeds it")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the current (base) model: fine-tuned, "
                               "and the model the candidate must not be worse than")
    dev_fraction: float = Field(0.2, gt=0, lt=1, description="share of notes (by hash of the note id) held out of "
                                "training; the gate's pairs-dev set is their queries")
    generate_pairs: dict[str, Any] = Field(default_factory=dict, description="overrides of the generate-pairs "
                                           "config")
    mine_negatives: dict[str, Any] = Field(default_factory=dict, description="overrides of the mine-negatives "
                                           "config")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of the train config")
    evaluate: dict[str, Any] = Field(default_factory=dict, description="overrides of the evaluate config (e.g. extra "
                                     "BEIR datasets)")
    gate: GateConfig = Field(default_factory=GateConfig)
    embed: dict[str, Any] = Field(default_factory=dict, description="overrides of the embed config (store, embed)")
    output: PipelineOutputConfig = Field(default_factory=PipelineOutputConfig)

    @model_validator(mode="before")
    @classmethod
    def _renamed_sections(cls, data: Any) -> Any:
        """The stage sections' old names (``pairs``, ``negatives``), for one release."""
        if isinstance(data, dict):
            for old, new in DEPRECATED_SECTIONS.items():
                if old in data:  # merged over the new section (an old-style --set on a new-style config file)
                    from medembed.pipeline.stages import deep_merge

                    logging.getLogger(__name__).warning(
                        "pipeline config section %r is deprecated and will be removed in the next release; call it %r",
                        old, new)
                    merged = deep_merge(data.get(new) or {}, data[old]) if isinstance(data[old], dict) else data[old]
                    data = {**{k: v for k, v in data.items() if k != old}, new: merged}
        return data

    @model_validator(mode="after")
    def _stages_valid(self) -> PipelineJobConfig:
        from medembed.pipeline.stages import validate_stage_configs

        validate_stage_configs(self)
        from medembed.pipeline.gate import gate_sets

        gate_sets(self)  # unknown gate dataset names, or no labelled set where one is required, fail here
        return self
