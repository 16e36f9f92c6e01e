"""Ingestion: sources -> normalized documents as a streaming Ray Dataset, bad rows quarantined."""

from __future__ import annotations

from medembed.ingest.sources import ReadTask, resolve_tasks, sample_corpus_path
from medembed.ingest.stage import ReadPlan, documents_accepted, plan_read, read_documents, read_quarantine_counts

__all__ = ["ReadPlan", "ReadTask", "documents_accepted", "plan_read", "read_documents", "read_quarantine_counts",
           "resolve_tasks", "sample_corpus_path"]
