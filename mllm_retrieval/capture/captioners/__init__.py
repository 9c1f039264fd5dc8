"""Captioning backends: transformers (local models), openai (any compatible server), import (captions
made elsewhere)."""

from .base import Captioner, backend_options, backends, get_captioner, register, unregister

__all__ = ["Captioner", "backend_options", "backends", "get_captioner", "register", "unregister"]
