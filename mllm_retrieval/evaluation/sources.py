"""Text sources for evaluation: the database, import-format JSONL files, the dataset's human captions.

Every source becomes one or more `SourceText`s: for each image of the evaluation set, the text units
(one tile's tags and caption) a source holds about it. Images the source has no text for simply have no
units; the runner still scores them (-inf) and reports coverage, so nothing is dropped silently.

Matching text to evaluation images: by image id first (`image_id` in JSONL, `external_id` in the
database), else by file name (`file_name`, or the base name of `path` / a stored file path). A name that
fits several evaluation images, or an evaluation image that several stored images claim by file name,
is not guessed: it is left out and counted in the source's notes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from ..capture.ocr import KIND as OCR
from ..capture.parsing import parse_output
from ..errors import MllmretError
from ..search.documents import Unit
from .datasets import EvalSet

HUMAN_LABEL = "human captions (upper bound)"


class EvalSourceError(MllmretError):
    """A --source is unknown, unreadable, or does not say which model's text to use."""


@dataclass
class SourceText:
    """The text one source holds for an evaluation set, keyed by evaluation image id."""

    label: str
    kind: str
    units: dict[str, list[Unit]]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def has_tiles(self) -> bool:
        """True when some text is about a tile rather than the full image."""
        return any(u.tile_key != "full" for us in self.units.values() for u in us)

    @property
    def has_tags(self) -> bool:
        """True when some unit has tags."""
        return any(u.tags for us in self.units.values() for u in us)


@dataclass(frozen=True)
class JsonlRecord:
    """One import-format line, reduced to what evaluation needs."""

    image_id: str | None
    file_name: str | None
    model: str
    unit: Unit


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """"human" | "db" | "jsonl:PATH" -> (kind, path)."""
    kind, _, rest = spec.partition(":")
    if kind in ("human", "db") and not rest:
        return kind, None
    if kind == "jsonl" and rest:
        return kind, Path(rest).expanduser()
    raise EvalSourceError(f"unknown --source {spec!r}: use human, db or jsonl:PATH")


def human_source(evalset: EvalSet) -> SourceText:
    """The dataset's human captions, each a full-image caption."""
    if not evalset.captions:
        raise EvalSourceError(f"evaluation set {evalset.name!r} has no human captions (give --captions FILE)")
    units = {i: [Unit("full", (), c) for c in caps] for i, caps in evalset.captions.items()}
    return SourceText(HUMAN_LABEL, "human", units)


# JSONL
def read_jsonl(path: Path) -> tuple[list[JsonlRecord], list[str]]:
    """Records of an import-format JSONL file, and one reason per line that could not be used."""
    from ..library.jsonl import record_box  # the importer's own field checks and tile/box rules
    from ..library.records import to_record
    from ..library.store import tile_key

    records, skipped = [], []
    try:
        handle = Path(path).open(encoding="utf-8")
    except OSError as e:
        raise EvalSourceError(f"cannot read JSONL source {str(path)!r}: {e.strerror or e}") from None
    with handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                box = record_box(to_record(rec))
            except (ValueError, MllmretError) as e:
                skipped.append(f"line {lineno}: {e}")
                continue
            ident = rec.get("image_id")
            name = rec.get("file_name") or rec.get("path")
            if ident is None and not name:
                skipped.append(f"line {lineno}: names no image")
                continue
            if isinstance(rec.get("tags"), list) or isinstance(rec.get("caption"), str):
                tags, caption = tuple(str(t) for t in rec.get("tags") or ()), str(rec.get("caption") or "")
            elif rec.get("text") is not None:
                parsed = parse_output(str(rec["text"]))
                tags, caption = parsed.tags, parsed.caption
            else:
                skipped.append(f"line {lineno}: no text")
                continue
            records.append(JsonlRecord(
                None if ident is None else str(ident),
                PurePath(str(name)).name if name else None,
                str(rec.get("model") or "unknown"),
                Unit(tile_key(box, rec.get("width"), rec.get("height")), tags, caption),
            ))
    return records, skipped


def choose_models(found: Iterable[str], model: str | None, per_model: bool, where: str) -> list[str | None]:
    """Which model(s) make conditions: [model], every model (per_model), or the only one there is."""
    counts = Counter(found)
    if model is not None:
        if model not in counts:
            raise EvalSourceError(f"{where} has no text of model {model!r}; it has: {_names(counts)}")
        return [model]
    if per_model:
        return sorted(counts)
    if len(counts) > 1:
        raise EvalSourceError(
            f"{where} holds {len(counts)} models ({_names(counts)}): pick one with --model NAME, "
            "or use --per-model")
    return [None]


def jsonl_sources(path: Path, evalset: EvalSet, model: str | None = None, per_model: bool = False,
                  records: tuple[list[JsonlRecord], list[str]] | None = None) -> list[SourceText]:
    """One SourceText per chosen model of a JSONL file, matched to the evaluation set."""
    recs, skipped = records or read_jsonl(path)
    if not recs:
        raise EvalSourceError(f"JSONL source {str(path)!r} has no usable line ({len(skipped)} skipped)")
    match = _Matcher(evalset)
    out = []
    for chosen in choose_models((r.model for r in recs), model, per_model, repr(str(path))):
        units: dict[str, list[Unit]] = defaultdict(list)
        outside = 0
        for r in recs:
            if chosen is not None and r.model != chosen:
                continue
            image = match.find(r.image_id, [r.file_name])
            if image is None:
                outside += 1
            else:
                units[image].append(r.unit)
        label = f"jsonl:{Path(path).name}" + (f" [{chosen}]" if chosen else "")
        notes = [f"{n} lines skipped as unusable (first: {skipped[0]})" for n in [len(skipped)] if n]
        if outside:
            notes.append(f"{outside} lines name images outside the evaluation set (not used)")
        notes += match.notes()
        out.append(SourceText(label, "jsonl", dict(units), [Path(path)], notes))
    return out


def jsonl_images(records: list[JsonlRecord], model: str | None, per_model: bool, where: str
                 ) -> set[tuple[str | None, str | None]]:
    """(image id, file name) of each image a JSONL file has text for, for the chosen model(s)."""
    chosen = set(choose_models((r.model for r in records), model, per_model, where))
    return {(r.image_id, r.file_name) for r in records if None in chosen or r.model in chosen}


# database
def db_sources(store, evalset: EvalSet, run: int | None = None, model: str | None = None,
               per_model: bool = False) -> list[SourceText]:
    """One SourceText per chosen model of the database's runs, matched to the evaluation set."""
    # a person's own metadata (tags read) is a source only when asked for by --run or --model
    runs = [(i, m) for i, m, kind in store.run_models() if kind != "metadata" or run == i or model == m]
    ocr_runs: list[int] = []
    if run is not None:
        runs = [r for r in runs if r[0] == run]
        if not runs:
            raise EvalSourceError(f"no run {run} in {store.path}: see `mllmret stats`")
    else:  # text read in the photos joins every caption model's condition, as it joins search
        ocr_runs = [i for i, _, kind in store.run_models() if kind == OCR]
        captions = [r for r in runs if r[0] not in ocr_runs]
        runs, ocr_runs = (captions, ocr_runs) if captions else (runs, [])
    if not runs:
        raise EvalSourceError(f"no captions in {store.path}: run `mllmret caption` or `mllmret import` first")
    where = f"database {str(store.path)!r}"
    owner = _db_owners(store, evalset)
    out = []
    for chosen in choose_models((m for _, m in runs), model, per_model, where):
        run_ids = [i for i, m in runs if chosen is None or m == chosen] + ocr_runs
        units: dict[str, list[Unit]] = defaultdict(list)
        unmatched: set[int] = set()
        for t in store.tile_texts(run_ids):
            image = owner.images.get(t.image_id)
            if image is None:
                unmatched.add(t.image_id)
            else:
                units[image].append(Unit(t.tile_key, t.tags, t.caption, t.kind))
        models = (chosen or ", ".join(sorted({m for _, m in runs}))) + (" + OCR" if ocr_runs else "")
        label = f"db [{models}; run {', '.join(map(str, run_ids))}]"
        notes = list(owner.notes)
        if unmatched:
            notes.append(f"{len(unmatched)} captioned images in the database are not in the evaluation set")
        files = [Path(store.path)] if store.path else []
        out.append(SourceText(label, "db", dict(units), files, notes))
    return out


@dataclass
class _Owners:
    images: dict[int, str]
    notes: list[str]


def _db_owners(store, evalset: EvalSet) -> _Owners:
    """Stored image id -> evaluation image id: by external_id, else by file name of a stored path."""
    match = _Matcher(evalset)
    rows = store.searchable_images()  # images that left search (deleted, replaced) are not candidates
    paths = defaultdict(list, store.file_paths())
    by_id: dict[int, str] = {}
    by_name: dict[str, set[int]] = defaultdict(set)
    for image_id, external_id, path in rows:
        names = [PurePath(p).name for p in [path, *paths[image_id]] if p]
        if external_id is not None and external_id in match.ids:
            by_id[image_id] = external_id
            continue
        found = match.find(None, [external_id, *names])
        if found is not None:
            by_name[found].add(image_id)
    claimed = set(by_id.values())
    ambiguous = 0
    for image, stored in by_name.items():
        if image in claimed:
            continue
        if len(stored) > 1:
            ambiguous += 1
            continue
        by_id[next(iter(stored))] = image
    notes = match.notes()
    if ambiguous:
        notes.append(f"{ambiguous} evaluation images match several stored images by file name (not used)")
    return _Owners(by_id, notes)


class _Matcher:
    """Finds the evaluation image a record is about: by id, else by an unambiguous file name."""

    def __init__(self, evalset: EvalSet) -> None:
        self.ids = set(evalset.image_ids)
        names: dict[str, list[str]] = defaultdict(list)
        for i, name in evalset.file_names.items():
            names[PurePath(name).name].append(i)
        self.names = {n: ids[0] for n, ids in names.items() if len(ids) == 1}
        self.shared_names = {n for n, ids in names.items() if len(ids) > 1}
        self.ambiguous = 0

    def find(self, image_id: str | None, names: Iterable[str | None]) -> str | None:
        """The evaluation image id, or None."""
        if image_id is not None and image_id in self.ids:
            return image_id
        for name in names:
            if name and name in self.names:
                return self.names[name]
            if name and name in self.shared_names:
                self.ambiguous += 1
                return None
        return None

    def notes(self) -> list[str]:
        """What could not be matched because a file name is shared by several evaluation images."""
        if not self.ambiguous:
            return []
        return [f"{self.ambiguous} records name a file name shared by several evaluation images (not used)"]


def _names(counts: Counter) -> str:
    return ", ".join(f"{m} ({n})" for m, n in sorted(counts.items()))
