"""Prompts: bundled files in prompts/ by name, or any text file by path.

Most bundled prompts ask a captioner to describe an image; those named in REWRITE_PROMPTS instead ask a
chat model to rewrite a reference caption and a modification (`mllmret search --like … --rewrite-with`),
so they are listed and loaded apart (`kind="rewrite"`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..config import prompts_dir
from ..errors import PromptNotFound

DEFAULT_PROMPT = "tags_caption"
REWRITE_PROMPTS = frozenset({"rewrite"})  # bundled prompts for composed-query rewriting, not captioning


@dataclass(frozen=True)
class Prompt:
    """A prompt's name, text and content hash (the hash identifies the run)."""

    name: str
    text: str

    @property
    def sha256(self) -> str:
        """Hex sha256 of the prompt text."""
        return hashlib.sha256(self.text.encode()).hexdigest()


def available_prompts(kind: str = "caption") -> list[str]:
    """Names of the bundled prompts of a kind: caption (for `caption --prompt`) or rewrite."""
    names = sorted(p.stem for p in prompts_dir().glob("*.txt"))
    return [n for n in names if (n in REWRITE_PROMPTS) == (kind == "rewrite")]


def load_prompt(name_or_path: str = DEFAULT_PROMPT, kind: str = "caption") -> Prompt:
    """Load a bundled prompt of this kind by name, or a prompt file by path."""
    bundled = prompts_dir() / f"{name_or_path}.txt"
    if name_or_path in available_prompts("rewrite" if kind == "caption" else "caption"):
        other = "caption" if kind == "rewrite" else "rewrite"
        raise PromptNotFound(
            f"{name_or_path!r} is a {other} prompt, not a {kind} prompt: use one of "
            f"{', '.join(available_prompts(kind))} or the path of a text file"
        )
    candidate = bundled if bundled.is_file() else Path(name_or_path).expanduser()
    if not candidate.is_file():
        raise PromptNotFound(
            f"no prompt {name_or_path!r}: use one of {', '.join(available_prompts(kind))} "
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
