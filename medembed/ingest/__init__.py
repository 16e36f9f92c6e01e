"""Ingestion: sources -> normalized documents as a streaming Ray Dataset, bad rows quarantined."""

from __future__ import annotations

from medembed.ingest.pipeline import documents_accepted, read_documents, read_quarantine_counts
from medembed.ingest.sources import ReadTask, resolve_tasks, sample_corpus_path

__all__ = ["read_documents", "read_quarantine_counts", "documents_accepted", "ReadTask", "resolve_tasks", "sample_corpus_path"]
