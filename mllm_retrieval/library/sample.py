"""The bundled sample: real photos from scikit-image's wheel, described by hand in sample/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import MllmretError
from .jsonl import ImportSummary, import_jsonl
from .store import Store

CAPTIONS = Path(__file__).parent / "sample" / "captions.jsonl"
QUERIES = ("cat", "red motorcycle", "space shuttle", "coffee -tea", "helmet")


def sample_images_dir() -> Path:
    """The folder of photos that scikit-image installs (skimage/data)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise MllmretError(
            "the demo photos come with scikit-image: pip install 'mllm-retrieval[sample]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_sample(store: Store) -> ImportSummary:
    """Import the bundled captions for the scikit-image photos into the store."""
    return import_jsonl(store, CAPTIONS, images_dir=sample_images_dir(), progress=False)
