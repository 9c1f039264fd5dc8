"""Running the `mllmret` command line in-process for tests."""

from __future__ import annotations

from typer.testing import CliRunner

from mllm_retrieval.cli import app

runner = CliRunner()


def mllmret(*args, ok=True):
    """`mllmret ARGS...` (each argument str()-ed); asserts exit code 0 unless ok=False."""
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + str(result.exception)
    return result
