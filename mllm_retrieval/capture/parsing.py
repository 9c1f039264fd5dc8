"""Turn whatever a model wrote into tags and a caption; never raises, never loses the text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TAG_LABELS = ("tags", "tag", "keywords", "keyword", "key words", "labels", "objects", "hashtags")
CAPTION_LABELS = ("caption", "captions", "description", "summary", "sentence")
MAX_TAG_WORDS = 5
MAX_TAG_CHARS = 60

_LABEL = "|".join(re.escape(x) for x in sorted(TAG_LABELS + CAPTION_LABELS, key=len, reverse=True))
_LABEL_LINE = re.compile(
    rf"^\s*(?:#+\s*|>\s*|[-*+]\s+|\d+[.)]\s+)?[*_`\s]*({_LABEL})\s*[*_`]*\s*"
    rf"(?:\([^)]*\))?\s*(?:[:：=-]|$)[*_`\s]*(.*)$",
    re.IGNORECASE,
)
_INLINE_LABEL = re.compile(
    rf"(?<=\S)[ \t]+(?=[*_`]*(?:{_LABEL})[*_`]*\s*(?:\([^)]*\))?\s*[:：])", re.IGNORECASE
)
_BULLET = re.compile(r"^\s*(?:[-*+•·]|\d+[.)]|[a-z][.)])\s+", re.IGNORECASE)
_MARKDOWN = re.compile(r"[*_`#]+")
_REPEAT = re.compile(r"\b(\w+(?:[\s,]+\w+){0,6}?)(?:[\s,.;]+\1\b){2,}", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """Tags and caption pulled out of one model answer."""

    tags: tuple[str, ...]
    caption: str


def parse_output(raw: str | None) -> Parsed:
    """Parse a model answer in any shape (labelled, markdown, JSON, lists, free text)."""
    text = (raw or "").replace("\r\n", "\n").strip()
    if not text:
        return Parsed((), "")
    try:
        return _parse_json(text) or _parse_labelled(text) or _parse_free(text)
    except Exception:  # the parser must survive anything a model writes
        return Parsed((), _clean(text))


def _parse_json(text: str) -> Parsed | None:
    start = text.find("{")
    if start < 0:
        return None
    body = text[start:]
    end = body.rfind("}")
    data = None
    if end >= 0:
        try:
            data = json.loads(body[: end + 1])
        except ValueError:
            data = None
    if isinstance(data, dict):
        lowered = {str(k).lower(): v for k, v in data.items()}
        tags = next((lowered[k] for k in TAG_LABELS if k in lowered), [])
        caption = next((lowered[k] for k in CAPTION_LABELS if k in lowered), "")
        if isinstance(tags, str):
            tags = split_tags(tags)
        if isinstance(caption, list):
            caption = " ".join(str(c) for c in caption)
        if tags or caption:
            return Parsed(_dedupe(str(t) for t in tags if not isinstance(t, dict | list)),
                          _clean(str(caption)))
        return None
    # Truncated or sloppy JSON: pull the fields out with patterns.
    tag_m = re.search(rf'"(?:{_LABEL})"\s*:\s*\[([^\]]*)', body, re.IGNORECASE)
    cap_m = re.search(r'"(?:caption|description|summary)"\s*:\s*"((?:[^"\\]|\\.)*)', body,
                      re.IGNORECASE)
    if not tag_m and not cap_m:
        return None
    tags = [_unescape(t) for t in re.findall(r'"((?:[^"\\]|\\.)*)"', tag_m.group(1))] if tag_m else []
    caption = _unescape(cap_m.group(1)) if cap_m else ""
    return Parsed(_dedupe(tags), _clean(caption))


def _unescape(s: str) -> str:
    """Decode JSON string escapes of a (possibly cut-off) string body."""
    s = re.sub(r"\\u[0-9a-fA-F]{0,3}$|\\$", "", s)
    try:
        return json.loads(f'"{s}"')
    except ValueError:
        return s.replace('\\"', '"')


def _parse_labelled(text: str) -> Parsed | None:
    sections: dict[str, list[str]] = {"tags": [], "caption": [], "other": []}
    current = "other"
    found = False
    for line in _INLINE_LABEL.sub("\n", text).split("\n"):
        m = _LABEL_LINE.match(line)
        if m:
            found = True
            label = m.group(1).lower()
            current = "tags" if label in TAG_LABELS else "caption"
            rest = m.group(2).strip()
            if rest:
                sections[current].append(rest)
            continue
        if current == "tags" and _is_sentence(line):
            sections["other"].append(line)
            continue
        sections[current].append(line)
    if not found:
        return None
    tags = _dedupe(split_tags("\n".join(sections["tags"])))
    caption = _clean("\n".join(sections["caption"]))
    if not caption:
        caption = _clean("\n".join(sections["other"]))
    if not tags:
        tags = _list_tags("\n".join(sections["caption"] + sections["other"]))
    return Parsed(tags, caption)


def _is_sentence(line: str) -> bool:
    """A line inside a tags section that is prose, not a tag list."""
    line = line.strip()
    if not line or _BULLET.match(line) or re.search(r"[,;，、]", line):
        return False
    words = len(line.split())
    return words > MAX_TAG_WORDS or (words >= 3 and line.endswith((".", "!", "?", "。")))


def _parse_free(text: str) -> Parsed:
    return Parsed(_list_tags(text), _clean(text))


def split_tags(text: str) -> list[str]:
    """Split a tag list written with commas, semicolons, bullets, numbers, hashtags or lines."""
    items: list[str] = []
    for line in text.split("\n"):
        line = _BULLET.sub("", line)
        if "#" in line and "," not in line:
            parts = re.findall(r"#(\w[\w-]*)", line) or [line]
        else:
            parts = re.split(r"[,;|，、；]", line)
        items.extend(parts)
    return [t for t in (_clean_tag(p) for p in items) if t]


def _list_tags(text: str) -> tuple[str, ...]:
    """Tag-like items in free text: short bullet items, comma lists of short items, hashtags."""
    tags: list[str] = []
    for line in text.split("\n"):
        if _BULLET.match(line):
            item = _BULLET.sub("", line)
            head = re.split(r"[:：]", item, maxsplit=1)[0]
            tags.extend(split_tags(head) if len(head.split()) <= MAX_TAG_WORDS else [])
            continue
        parts = [p.strip() for p in re.split(r"[,;，、；]", line)]
        short = [p for p in parts if p and len(p.split()) <= 3]
        if len(parts) >= 3 and len(short) == len(parts):
            tags.extend(split_tags(line))
    tags.extend(re.findall(r"(?<![\w&])#([A-Za-z]\w+)", text))
    return _dedupe(tags)


def _clean_tag(tag: str) -> str:
    tag = _MARKDOWN.sub("", tag).strip().strip("\"'“”‘’[]{}()<>.:!?").strip()
    tag = re.sub(r"\s+", " ", tag).lower()
    if len(tag) > MAX_TAG_CHARS or len(tag.split()) > MAX_TAG_WORDS:
        return ""
    if tag.startswith(("and ", "or ")):
        tag = tag.split(" ", 1)[1]
    return tag


def _dedupe(tags) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in tags:
        tag = _clean_tag(str(tag))
        if tag and tag not in seen:
            seen[tag] = None
    return tuple(seen)


def _clean(text: str) -> str:
    text = _MARKDOWN.sub("", text)
    text = re.sub(r"^\s*(?:[-+•>]|\d+[.)])\s+", "", text, flags=re.MULTILINE)
    text = re.sub(r"\s+", " ", text).strip().strip('"“”').strip()
    for _ in range(3):
        text = _REPEAT.sub(r"\1", text)
    return text
