"""Config of the nightly re-embedding job (``medembed reembed``) and its ``sync`` section.

Imports no Ray, LanceDB or torch.

Exit codes of ``medembed reembed`` (for schedulers):

- 0: the serving name serves today's corpus (or already did: nothing changed, nothing written)
- 1: failed; what searches see is untouched
- 2: invalid config
- 3: another run holds the writer lease of this serving name (after waiting ``sync.lease_wait_s``)
- 4: finished, but some input was quarantined (unreadable file or object, corrupt rows); the good
  data is served, and while a whole source or records without a readable id were lost, no document
  was deleted from the table (their deletion waits for a clean run)
"""

from __future__ import annotations

from pydantic import Field

from medembed.config import EmbedJobConfig, _Model

EXIT_LEASE_HELD = 3
EXIT_QUARANTINED = 4


class SyncConfig(_Model):
    """How a re-embedding run syncs a table, switches the serving name and cleans up."""

    serving_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$",
                                     description="stable name readers resolve (default: store.corpus_name)")
    partitions: int = Field(8, gt=0, description="hash partitions of the change-detection join on Ray")
    lease_ttl_s: float = Field(60.0, gt=0, description="the writer lease expires this long after its last heartbeat")
    lease_wait_s: float = Field(0.0, ge=0, description="wait this long for another writer's lease, then exit 3")
    verify_sample: int = Field(3, ge=0, description="stored vectors searched for themselves before a switch")
    keep_history: int = Field(5, ge=0, description="previous serving targets remembered (rollback, kept by cleanup)")
    retention_days: float = Field(7.0, ge=0, description="untagged versions and unserved tables older than this "
                                  "are removed after a switch (versions tagged for serving are kept)")
    cleanup: bool = Field(True, description="remove old versions and tables after a switch")


class ReembedJobConfig(EmbedJobConfig):
    """Config of `jobs/reembed.py` / `medembed reembed` (the embed job's sections plus ``sync``).

    Exit codes: 0 ok, 1 failed, 2 bad config, 3 another writer holds the lease, 4 finished with
    quarantined input (see the module docstring).
    """

    sync: SyncConfig = Field(default_factory=SyncConfig)
