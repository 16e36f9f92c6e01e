"""The generator backend protocol and its registry.

A backend turns requests (one note, or one part of a long note) into :class:`Generation`s. Two
kinds exist: ``batch`` backends run inside a Ray Data actor (``generate`` on a list of requests;
``openai``, ``extractive``) and ``dataset`` backends transform a whole Ray Dataset of requests
(``vllm``, through ``ray.data.llm``). Register new ones with ``@register_backend("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from medembed.synth.config import SynthConfig
    from medembed.synth.validate import Generation


@dataclass(frozen=True)
class Request:
    note_id: str
    part_index: int
    n_parts: int
    title: str
    text: str  # the note, or this part of it


@runtime_checkable
class PairBackend(Protocol):
    """A backend that generates in-process (inside one Ray actor)."""

    mode: ClassVar[Literal["batch", "dataset"]]
    generator: str  # the registered name, recorded on every pair
    model: str
    prompt_version: str

    def generate(self, requests: list[Request]) -> list[Generation]: ...

    def close(self) -> None: ...


class BackendBase:
    """What every backend shares: its config and identity (model, prompt version), read from the config.

    Subclasses override ``model_name`` (and ``prompt_version_of`` when the prompt does not apply).
    """

    def __init__(self, cfg: SynthConfig):
        self.cfg = cfg
        self.model = self.model_name(cfg)
        self.prompt_version = self.prompt_version_of(cfg)

    @staticmethod
    def model_name(cfg: SynthConfig) -> str:
        raise NotImplementedError

    @staticmethod
    def prompt_version_of(cfg: SynthConfig) -> str:
        return cfg.prompt_version


class BackendUnavailable(RuntimeError):
    """The backend's optional dependency (e.g. vllm) is not installed."""


_REGISTRY: dict[str, type] = {}


def register_backend(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"backend {name!r} is already registered")
        cls.generator = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    # importing the modules registers the built-in backends
    from medembed.synth import extractive, openai_backend, vllm_backend  # noqa: F401


def backend_class(name: str) -> type:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown synth backend {name!r}; registered: {sorted(_REGISTRY)}") from None


def registered_backends() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def create_backend(cfg: SynthConfig, **kwargs: Any) -> Any:
    return backend_class(cfg.backend)(cfg, **kwargs)


def backend_identity(cfg: SynthConfig) -> tuple[str, str, str]:
    """(generator, model, prompt_version) of the configured backend, without constructing it."""
    cls = backend_class(cfg.backend)
    return cls.generator, cls.model_name(cfg), cls.prompt_version_of(cfg)
