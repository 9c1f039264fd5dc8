"""Where mllmret keeps its data: MLLMRET_DATA_DIR and MLLMRET_DB override the defaults."""

from __future__ import annotations

import os
from pathlib import Path

import click

DB_NAME = "mllmret.db"


def data_dir() -> Path:
    """The user data directory, created on first use."""
    env = os.environ.get("MLLMRET_DATA_DIR")
    path = Path(env) if env else Path(click.get_app_dir("mllmret"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    """The default database: $MLLMRET_DB, else mllmret.db in the data directory."""
    env = os.environ.get("MLLMRET_DB")
    return Path(env) if env else data_dir() / DB_NAME


def eval_dir(name: str) -> Path:
    """Where `mllmret eval` writes a set's results.json and plots when --out is not given."""
    return data_dir() / "eval" / name


def composer_path(kind: str = "tirg") -> Path:
    """Where `mllmret train-composer --kind KIND` saves, and `--composer learned` looks, by default."""
    return data_dir() / "composers" / ("fashioniq-encoder" if kind == "encoder" else "fashioniq.safetensors")


def prompts_dir() -> Path:
    """The folder of bundled prompt files."""
    return Path(__file__).parent / "prompts"
