"""Fake captioners and a fake OCR engine for pipeline tests: deterministic text, counted calls, failures."""

from __future__ import annotations

import time
from collections.abc import Sequence

from PIL import Image, ImageStat

from mllm_retrieval.capture.ocr import Line


class FakeCaptioner:
    """Answers with the tile's size and mean colour; can fail after N calls or sleep per call."""

    backend = "fake"

    def __init__(self, model: str | None = None, fail_after: int | None = None,
                 delay: float = 0.0, **_) -> None:
        self.model_id = model or "fake-model"
        self.fail_after = fail_after
        self.delay = delay
        self.calls: list[int] = []

    def params(self) -> dict:
        return {"version": 1}

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls.append(len(images))
        time.sleep(self.delay)
        out = []
        for im in images:
            r, g, b = ImageStat.Stat(im).mean
            color = max((("red", r), ("green", g), ("blue", b)), key=lambda x: x[1])[0]
            out.append(f"Tags: {color}, size{im.width}x{im.height}\nCaption: A {color} tile.")
        return out


class FakeOcr:
    """Reads a sign named after the image's main colour, plus one unsure line; counts calls."""

    backend = "fake-ocr"
    model_id = "fake-ocr-1"

    def __init__(self) -> None:
        self.calls = 0

    def params(self) -> dict:
        return {"text_score": 0.0}

    def read(self, image: Image.Image) -> list[Line]:
        self.calls += 1
        r, g, b = ImageStat.Stat(image).mean
        color = max((("red", r), ("green", g), ("blue", b)), key=lambda x: x[1])[0]
        box = ((1, 2), (30, 2), (30, 12), (1, 12))
        return [Line(f"{color.upper()}SHOP open daily", box, 0.97), Line("zebra", box, 0.3)]


class PickyCaptioner(FakeCaptioner):
    """Fails on any batch holding an image of size `refuse` (e.g. 64x48): a photo that always fails."""

    def __init__(self, refuse: str = "64x48", **kw) -> None:
        super().__init__(**kw)
        self.refuse = refuse

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        if any(f"{im.width}x{im.height}" == self.refuse for im in images):
            raise RuntimeError(f"cannot caption a {self.refuse} image")
        return super().describe(images, prompt)


class DyingCaptioner(FakeCaptioner):
    """Kills its own process (a worker dying mid-run) the first time it runs, marked by the file `marker`."""

    def __init__(self, marker: str = "", **kw) -> None:
        super().__init__(**kw)
        self.marker = marker

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        import os
        from pathlib import Path

        if self.marker and not Path(self.marker).exists():
            Path(self.marker).write_text("died once")
            os._exit(1)
        return super().describe(images, prompt)


class PoisonedCaptioner(FakeCaptioner):
    """Kills its own process whenever it is given an image of size `refuse`: a photo that crashes workers."""

    def __init__(self, refuse: str = "64x48", **kw) -> None:
        super().__init__(**kw)
        self.refuse = refuse

    def describe(self, images: Sequence[Image.Image], prompt: str) -> list[str]:
        import os

        if any(f"{im.width}x{im.height}" == self.refuse for im in images):
            os._exit(1)
        return super().describe(images, prompt)
