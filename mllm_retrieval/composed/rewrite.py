"""LLM rewrite of a composed query (CIReVL-style): reference caption + modification -> one description.

`Rewriter` asks any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, ...) to describe the
wanted image from the reference image's text and the requested change, with `prompts/rewrite.txt`. It
fails with a `RewriteError` on anything unusable — connection refused, timeout, an HTTP error, an empty or
malformed answer — after at most one retry, so that search can fall back to the rule-based composition.
"""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import urlsplit

import httpx

from ..capture.captioners.chat_http import post_with_retries
from ..capture.prompts import load_prompt
from ..errors import MllmretError

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "rewrite"
DEFAULT_TIMEOUT = 30.0
MAX_TOKENS = 96
MAX_CHARS = 500  # longer answers are cut here (a chatty model's description stays a query)
PLACEHOLDERS = ("{caption}", "{modification}")
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^(?:target(?:\s+(?:image|photo))?|description|answer|rewritten|photo|image)\s*:\s*",
                    re.IGNORECASE)


class RewriteError(MllmretError):
    """The rewriting server failed or answered nothing usable; search falls back to the rules."""


def parse_spec(spec: str, model: str | None = None) -> tuple[str, str]:
    """(base URL, model) from `--rewrite-with URL[/v1/MODEL]` and `--rewrite-model NAME`.

    The URL is split after its `/v1` path segment; what follows is the model name (it may hold slashes,
    as in meta-llama/Llama-3.1-8B-Instruct). Without a `/v1` segment the whole URL is the base URL and
    `model` must be given."""
    url = (spec or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MllmretError(f"--rewrite-with {spec!r}: give an http(s) URL such as http://127.0.0.1:8080/v1/MODEL")
    segments = parts.path.split("/")
    if "v1" in segments:
        at = segments.index("v1")
        base = f"{parts.scheme}://{parts.netloc}{'/'.join(segments[: at + 1])}"
        tail = "/".join(s for s in segments[at + 1 :] if s)
    else:
        base, tail = url.rstrip("/"), ""
    if tail and model and tail != model:
        raise MllmretError(f"--rewrite-with names model {tail!r} and --rewrite-model {model!r}: give one")
    name = tail or (model or "").strip()
    if not name:
        raise MllmretError(f"--rewrite-with {spec!r} names no model: add /v1/MODEL to the URL or give "
                           "--rewrite-model NAME")
    return base, name


class Rewriter:
    """Rewrites (reference text, modification) into one description of the target image."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = 1, backoff: float = 0.5,
                 prompt: str | None = None, max_tokens: int = MAX_TOKENS) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or os.environ.get("MLLMRET_API_KEY") or os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.retries = min(max(retries, 0), 1)  # one retry at most: a failing server is no reason to wait
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.template = load_prompt(prompt or DEFAULT_PROMPT, kind="rewrite").text
        missing = [p for p in PLACEHOLDERS if p not in self.template]
        if missing:
            raise MllmretError(f"the rewrite prompt lacks {' and '.join(missing)}: it needs both "
                               f"{' and '.join(PLACEHOLDERS)}")

    @classmethod
    def from_spec(cls, spec: str, model: str | None = None, **options) -> Rewriter:
        """A rewriter for `--rewrite-with URL[/v1/MODEL]` (see `parse_spec`)."""
        base, name = parse_spec(spec, model)
        return cls(base, name, **options)

    def __repr__(self) -> str:
        return f"Rewriter({self.base_url!r}, {self.model!r})"

    def prompt_for(self, caption: str, modification: str) -> str:
        """The rewrite prompt with the reference text and the modification filled in."""
        return (self.template.replace("{caption}", " ".join(caption.split()) or "(no description)")
                .replace("{modification}", " ".join(modification.split()) or "(no change)"))

    def rewrite(self, caption: str, modification: str) -> str:
        """One short description of the target image; RewriteError when none can be had."""
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompt_for(caption, modification)}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        url = f"{self.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            try:
                response = post_with_retries(
                    client, url, payload, self.retries, lambda *_: self.backoff, self.timeout,
                    lambda e: f"cannot connect ({type(e).__name__}: {e})")
            except (httpx.HTTPError, httpx.InvalidURL, OSError) as e:  # no point retrying
                raise RewriteError(f"{url}: {type(e).__name__}: {e}") from None
            if isinstance(response, str):
                raise RewriteError(f"{url} failed {self.retries + 1} time(s), last: {response}")
            if response.status_code >= 400:
                raise RewriteError(f"{url} refused the request: HTTP {response.status_code} "
                                   f"{response.text[:200]!r}")
            return clean_answer(_content(response))


def _content(response: httpx.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise RewriteError(f"unexpected answer from the rewrite server: {response.text[:200]!r}") from None
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return str(content)


def clean_answer(text: str) -> str:
    """The description in a model's answer: its first line past any reasoning block or lead-in ("Here is
    the description:"), without label, quotes or markdown."""
    text = _THINK.sub(" ", text or "")
    lines = [line.strip().strip("*_`#>-• ").strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    while len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    line = lines[0] if lines else ""
    line = _LABEL.sub("", line).strip().strip("\"'“”‘’").strip()
    if not re.search(r"\w", line):
        raise RewriteError("the rewrite server answered with no description")
    return line[:MAX_CHARS]
