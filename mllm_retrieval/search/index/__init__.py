"""Keyword search engines behind one small interface."""

from .base import ENGINES, Engine, get_engine

__all__ = ["ENGINES", "Engine", "get_engine"]
