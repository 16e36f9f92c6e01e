"""What every generator backend shares: the request, the protocol, the base class and the registration
decorator. The backend modules import this (never ``synth.backends``, the registry that imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

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


REGISTRY: dict[str, type] = {}


def register_backend(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"backend {name!r} is already registered")
        cls.generator = name
        REGISTRY[name] = cls
        return cls

    return deco
