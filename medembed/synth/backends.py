"""The generator backend registry (the protocol and base class: ``synth.base``).

A backend turns requests (one note, or one part of a long note) into :class:`Generation`s. Two
kinds exist: ``batch`` backends run inside a Ray Data actor (``generate`` on a list of requests;
``openai``, ``extractive``) and ``dataset`` backends transform a whole Ray Dataset of requests
(``vllm``, through ``ray.data.llm``). Register new ones with ``@register_backend("name")``.
The built-in backends are imported by name when first asked for: they import ``synth.base``, not
this module, so there is no import circle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medembed.synth.base import REGISTRY, BackendBase, BackendUnavailable, PairBackend, Request, register_backend

if TYPE_CHECKING:
    from medembed.synth.config import SynthConfig

__all__ = ["BUILTIN", "BackendBase", "BackendUnavailable", "PairBackend", "Request", "backend_class",
           "backend_identity", "create_backend", "register_backend", "registered_backends"]

# name -> the module whose import registers it
BUILTIN = {"extractive": "medembed.synth.extractive", "openai": "medembed.synth.openai_backend",
           "vllm": "medembed.synth.vllm_backend"}


def backend_class(name: str) -> type:
    if name not in REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown synth backend {name!r}; registered: {registered_backends()}") from None


def registered_backends() -> list[str]:
    return sorted(set(REGISTRY) | set(BUILTIN))


def create_backend(cfg: SynthConfig, **kwargs: Any) -> Any:
    return backend_class(cfg.backend)(cfg, **kwargs)


def backend_identity(cfg: SynthConfig) -> tuple[str, str, str]:
    """(generator, model, prompt_version) of the configured backend, without constructing it."""
    cls = backend_class(cfg.backend)
    return cls.generator, cls.model_name(cfg), cls.prompt_version_of(cfg)
