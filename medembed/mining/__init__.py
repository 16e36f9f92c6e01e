"""Hard-negative mining: (query, positive) pairs -> (query, positive, negatives) triplets.

Entry points: :func:`medembed.jobs.mine_negatives.mine_negatives` (the job body for ``runner.run_job``),
:func:`medembed.mining.selection.select_negatives` (the per-query selection rule) and the config
:class:`~medembed.mining.config.MineNegativesJobConfig`. Output columns: :mod:`medembed.mining.columns`.
"""

from __future__ import annotations

from medembed.mining.config import (
           CandidatesConfig,
           MineNegativesJobConfig,
           MiningConfig,
           MiningOutputConfig,
           PairsConfig,
)
from medembed.mining.selection import Selection, SelectParams, select_negatives

__all__ = ["CandidatesConfig", "MineNegativesJobConfig", "MiningConfig", "MiningOutputConfig", "PairsConfig",
           "SelectParams", "Selection", "select_negatives"]
