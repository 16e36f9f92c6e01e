"""Synthetic (query, passage) pair generation from clinical notes (MedEmbed recipe).

Entry points: :func:`medembed.synth.generate.generate_pairs` (whole job from a
:class:`~medembed.synth.config.GeneratePairsJobConfig`) and
:func:`medembed.synth.generate.generate_pairs_from_docs` (a Ray Dataset of documents).
Outputs are read back with :func:`medembed.synth.ledger.read_pairs`.
"""

from __future__ import annotations

from medembed.synth.backends import BackendUnavailable, PairBackend, register_backend, registered_backends
from medembed.synth.config import GeneratePairsJobConfig, OpenAIBackendConfig, SynthConfig, VLLMBackendConfig

__all__ = [
           "BackendUnavailable",
           "GeneratePairsJobConfig",
           "OpenAIBackendConfig",
           "PairBackend",
           "SynthConfig",
           "VLLMBackendConfig",
           "register_backend",
           "registered_backends",
]
