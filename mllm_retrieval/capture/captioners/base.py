"""The captioner interface and the backend registry (`--backend` values are registry keys)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from PIL import Image

from ...errors import BackendError, UnknownBackend


class Captioner(Protocol):
    """Describes images: one answer per image, in order."""

    backend: str
    model_id: str

    def params(self) -> dict[str, Any]:
        """Settings that change the output; with model and prompt they identify a run."""
        ...

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        """The model's raw answer for each image."""
        ...


# Optional: a captioner may define check() -> None, called before any work to fail fast, and
# store_text(store, progress) -> ImportSummary when its text comes with it (import): it is then
# stored as it is, and no image is opened.


Factory = Callable[..., Captioner]
_REGISTRY: dict[str, str | Factory] = {
    "transformers": "mllm_retrieval.capture.captioners.hf:TransformersCaptioner",
    "openai": "mllm_retrieval.capture.captioners.openai_compat:OpenAICaptioner",
    "import": "mllm_retrieval.capture.captioners.jsonl_import:ImportCaptioner",
}


def register(name: str, factory: str | Factory) -> None:
    """Register a backend: a factory, or "module:attr" imported on first use."""
    _REGISTRY[name] = factory


def unregister(name: str) -> None:
    """Remove a backend (tests use this to clean up fakes)."""
    _REGISTRY.pop(name, None)


def backends() -> list[str]:
    """Names of registered backends."""
    return sorted(_REGISTRY)


def factory(backend: str) -> str | Factory:
    """The registry entry of `backend` as registered ("module:attr" or a callable), for another process."""
    try:
        return _REGISTRY[backend]
    except KeyError:
        raise UnknownBackend(f"unknown backend {backend!r}: use one of {', '.join(backends())}") from None


def _factory(backend: str) -> Factory:
    entry = factory(backend)
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def backend_options(backend: str) -> frozenset[str] | None:
    """The options a backend declares (its factory's keyword parameters); None when it takes any."""
    params = inspect.signature(_factory(backend)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def get_captioner(backend: str, **options: Any) -> Captioner:
    """Build the captioner registered under `backend`; an option it does not declare is an error.

    Heavy imports happen here, not earlier."""
    declared = backend_options(backend)
    unknown = [] if declared is None else sorted(set(options) - declared)
    if unknown:
        raise BackendError(f"backend {backend!r} has no option {', '.join(unknown)} "
                           f"(it takes {', '.join(sorted(declared)) or 'none'})")
    return _factory(backend)(**options)
