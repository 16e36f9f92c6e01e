"""Contrastive fine-tuning on mined triplets with Ray Train: data (split by note), batching, loss, the worker
loop, the trainer, interpolation with the base model and the exported model folder."""
