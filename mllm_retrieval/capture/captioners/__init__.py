"""Captioning backends: transformers (local models), openai (any compatible server)."""

from .base import Captioner, backends, get_captioner, register, unregister

__all__ = ["Captioner", "backends", "get_captioner", "register", "unregister"]
