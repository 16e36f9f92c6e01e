"""Stages that join libraries (layer L3): read -> chunk -> embed -> write.

- ``stages.embed``: the embed stage (:class:`~medembed.stages.embed.EmbedStage`: the embedder callable class
  with its constructor arguments, ``map_batches`` arguments and input checks) and the resource check of an
  embedding plan (the chunking UDF that skips unchanged documents is ``index.changes.chunk_selected_documents``);
- ``stages.one_actor``: small embed jobs in one actor (read, chunk, embed and write where the model is loaded).

The libraries below (``embedding``: models; ``index``: tables; ``ingest``: documents) do not know each other
here; the jobs (``medembed.jobs``) wire these stages.
"""

from medembed.stages.embed import EmbedStage, check_resources

__all__ = ["EmbedStage", "check_resources"]
