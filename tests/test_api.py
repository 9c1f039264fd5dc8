"""The public API: every package lists what it exports, and every name it lists can be imported."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["mllm_retrieval", *(f"mllm_retrieval.{p}" for p in (
    "capture", "library", "metadata", "search", "evaluation", "composed", "web"))]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_imports(name):
    package = importlib.import_module(name)
    assert package.__all__
    for export in package.__all__:
        assert getattr(package, export) is not None, export


def test_the_command_line_starts_without_numpy_torch_or_the_web_stack():
    code = ("import sys; from mllm_retrieval.cli import app; "
            "print([m for m in ('numpy', 'torch', 'fastapi', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
