"""Photographers' files made in the test: HEIC through pillow-heif, a real DNG (a Bayer mosaic, with or
without a bitmap preview) written with tifffile; the optional libraries skip locally and fail in CI."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

DNG_VERSION, UNIQUE_MODEL, COLOR_MATRIX, ILLUMINANT, AS_SHOT_NEUTRAL = 50706, 50708, 50721, 50778, 50728
CFA_DIM, CFA_PATTERN, WHITE_LEVEL, BLACK_LEVEL, ORIENTATION = 33421, 33422, 50717, 50714, 274


def need(module: str, extra: str) -> ModuleType:
    """The optional library; skipped when missing, a failure in CI (CI=true), where .ci/run installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} not installed (pip install -e '.[{extra}]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must run these tests (.ci/run installs the README's extras)")
        pytest.skip(reason)


def make_dng(path: Path, size: tuple[int, int] = (64, 96), preview: np.ndarray | None = None,
             orientation: int = 1) -> Path:
    """A DNG 1.4 whose RGGB mosaic shows a red left half and a blue right half; with `preview`, IFD0 is
    that RGB bitmap preview and the mosaic is its SubIFD (as cameras and Adobe's converter write them)."""
    tifffile = need("tifffile", "dev")
    h, w = size
    left = np.arange(w) < w // 2
    cfa = np.full((h, w), 300, np.uint16)  # green sites
    cfa[0::2, 0::2] = np.where(left[0::2], 3000, 200)  # red sites
    cfa[1::2, 1::2] = np.where(left[1::2], 200, 3000)  # blue sites
    identity = (10000, 10000, 0, 10000, 0, 10000, 0, 10000, 10000, 0, 10000, 10000, 10000, 10000)
    dng = [(DNG_VERSION, "B", 4, (1, 4, 0, 0)), (UNIQUE_MODEL, "s", 0, "mllmret test"),
           (COLOR_MATRIX, "2i", 9, identity + (10000,) * 4), (ILLUMINANT, "H", 1, 21),
           (AS_SHOT_NEUTRAL, "2I", 3, (1, 1) * 3), (ORIENTATION, "H", 1, orientation)]
    mosaic = [(CFA_DIM, "H", 2, (2, 2)), (CFA_PATTERN, "B", 4, (0, 1, 1, 2)), (WHITE_LEVEL, "I", 1, 4095),
              (BLACK_LEVEL, "H", 1, 0)]
    with tifffile.TiffWriter(path) as tif:
        if preview is not None:
            tif.write(preview, photometric="rgb", subfiletype=1, subifds=1, extratags=dng)
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=mosaic)
        else:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=dng + mosaic)
    return path
