"""Prompts: bundled files in prompts/ by name, or any text file by path."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .config import prompts_dir
from .errors import PromptNotFound

DEFAULT_PROMPT = "tags_caption"


@dataclass(frozen=True)
class Prompt:
    """A prompt's name, text and content hash (the hash identifies the run)."""

    name: str
    text: str

    @property
    def sha256(self) -> str:
        """Hex sha256 of the prompt text."""
        return hashlib.sha256(self.text.encode()).hexdigest()


def available_prompts() -> list[str]:
    """Names of the bundled prompts."""
    return sorted(p.stem for p in prompts_dir().glob("*.txt"))


def load_prompt(name_or_path: str = DEFAULT_PROMPT) -> Prompt:
    """Load a bundled prompt by name, or a prompt file by path."""
    bundled = prompts_dir() / f"{name_or_path}.txt"
    candidate = bundled if bundled.is_file() else Path(name_or_path).expanduser()
    if not candidate.is_file():
        raise PromptNotFound(
            f"no prompt {name_or_path!r}: use one of {', '.join(available_prompts())} "
            "or the path of a text file"
        )
    try:
        text = candidate.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise PromptNotFound(f"cannot read prompt file {str(candidate)!r}: {e}") from e
    if not text:
        raise PromptNotFound(f"prompt file {str(candidate)!r} is empty")
    name = name_or_path if candidate == bundled else candidate.stem
    return Prompt(name=name, text=text)
