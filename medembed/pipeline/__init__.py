"""The gated training pipeline: corpus -> pairs -> negatives -> train -> evaluate -> gate -> embed.

Stage configs are composed from the pipeline config (``config``), each stage's output is kept and
reused by fingerprint (``stages``), and the promotion decision is a pure function (``gate``). The
wiring is ``medembed.jobs.pipeline``. Imports no Ray, LanceDB or torch.
"""
