"""`--backend import`: captions made elsewhere (`mllmret export` format), stored as they are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ...errors import BackendError


class ImportCaptioner:
    """Brings its own text: a JSONL file, or a folder of shards (`caption --shards`); opens no image.

    Each line makes or joins the run of its own backend, model, prompt and params (a line without a
    model takes `model`), so those lines, not this object, identify the runs that the text goes into."""

    backend = "import"

    def __init__(self, captions: str | Path | None = None, images: str | Path | None = None,
                 model: str | None = None) -> None:
        if captions is None:
            raise BackendError("--backend import needs --captions FILE.jsonl")
        self.captions = Path(captions)
        self.images = images
        self.model = model
        self.model_id = model or "unknown"

    def params(self) -> dict[str, Any]:
        """Nothing of its own changes the text: each line carries its run's settings."""
        return {}

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        """Not a describer: the text comes from --captions (see `store_text`)."""
        raise BackendError("--backend import describes no image: it stores the text of --captions")

    def store_text(self, store, progress: bool = True):
        """Import the file (lines naming images by path, file_name under `images`, or id) or the
        folder of shards into `store`; an ImportSummary."""
        if self.captions.is_dir():
            from ..shards import import_shards

            return import_shards(store, self.captions, progress=progress)
        from ...library.jsonl import import_jsonl

        return import_jsonl(store, self.captions, images_dir=self.images, model=self.model, progress=progress)
