"""OCR quality and cost on real photos: words rendered onto them, and the hand-labelled text they hold.

    python bench/ocr_eval.py                           # 154 COCO photos + 96 rendered (~10 min, 2 busy cores)
    python bench/ocr_eval.py --limit 40 --per-size 2   # smoke size
    python bench/ocr_eval.py --settings '{"unclip_ratios": [1.6]}' --cache before.json  # previous settings
    python bench/ocr_eval.py --cache after.json --before before.json  # read as shipped; side by side
    python bench/ocr_eval.py --timing 60               # seconds per photo, shipped vs previous, in turn

(a) Rendered: dictionary words (wordninja's frequency list, ranks 300-5300) drawn onto COCO photos that hold
no legible text (per eval/ocr_coco_labels.json) in DejaVu fonts at 12-80 px, random colours (half with a
contrasting outline), rotations of up to 8 degrees; also two words run together (FRESHFRUIT-style) and
Chinese words in Noto CJK. Reported by word size: word recall (the word's tokens are among the photo's
searchable OCR tokens), success@1/@5 (searching the word over every photo, base and rendered, through the
same tokens and BM25 engine as `mllmret search`), seconds per photo.
(b) Hand-labelled: the legible words in the COCO photos, transcribed by eye (eval/ocr_coco_labels.json):
recall and success@1/@5 for each labelled word.
False matches: the share of text-free photos whose searchable OCR tokens hold any dictionary word.
Each is given for several confidence thresholds (ocr.MIN_CONFIDENCE is the shipped one) and three ways to
treat run-together and misread words: none, wordninja splitting, splitting plus the common words one
misread letter away (fuzzy: ocr.misread_words, shipped), and character n-grams (a word matches when it is a
substring of an OCR token, which is what an n-gram index finds).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mllm_retrieval.capture.images import open_image  # noqa: E402
from mllm_retrieval.capture.ocr import (  # noqa: E402
    MIN_CONFIDENCE,
    Line,
    OcrEngine,
    ocr_tokens,
    parse_lines,
    searchable_text,
)
from mllm_retrieval.search.index.base import get_engine  # noqa: E402
from mllm_retrieval.search.text import tokenize  # noqa: E402

IMAGES = Path(os.environ.get("MLLMRET_COCO_IMAGES", ROOT.parent / "shared" / "data" / "coco" / "images"))
LABELS = ROOT / "eval" / "ocr_coco_labels.json"
FONTS = [f"/usr/share/fonts/truetype/dejavu/{n}.ttf" for n in
         ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSansCondensed-Bold",
          "DejaVuSansMono-Bold")]
CJK_FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
SIZES = (12, 16, 24, 32, 48, 80)
COLOURS = [(255, 255, 255), (0, 0, 0), (230, 30, 30), (250, 220, 0), (30, 60, 200), (20, 150, 60),
           (255, 140, 0), (128, 128, 128)]
CHINESE = ["北京", "上海", "火车站", "超市", "医院", "学校", "银行", "饭店", "出口", "入口", "咖啡", "面包",
           "水果", "书店", "公园", "地铁站", "欢迎光临", "停车场", "药店", "邮局", "博物馆", "机场", "餐厅",
           "酒店"]
# The engine settings shipped before the issue-15 measurements, for --settings and --before.
PREVIOUS = {"unclip_ratios": [1.6]}
THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)
WAYS = ("none", "wordninja", "fuzzy", "ngram")
SHIPPED_WAY = "fuzzy"


def dictionary() -> list[str]:
    """Common English words (4-10 letters) that the tokeniser keeps as they are."""
    import wordninja

    path = Path(wordninja.__file__).parent / "wordninja" / "wordninja_words.txt.gz"
    if not path.exists():
        path = next(Path(wordninja.__file__).parent.rglob("*.txt.gz"))
    words = gzip.open(path, "rt").read().split()[300:5300]
    return [w for w in words if 4 <= len(w) <= 10 and w.isalpha() and w.isascii() and tokenize(w) == [w]]


def render(base: Path, text: str, font: str, px: int, rng: random.Random, out: Path) -> bool:
    """Draw `text` onto a photo at a random place, colour and small rotation; False if it does not fit."""
    image = open_image(base)
    face = ImageFont.truetype(font, px)
    x0, y0, x1, y1 = face.getbbox(text)
    colour = rng.choice(COLOURS)
    stroke = max(1, px // 12) if rng.random() < 0.5 else 0
    outline = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    pad = 4 + stroke
    layer = Image.new("RGBA", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((pad - x0, pad - y0), text, font=face, fill=colour + (255,),
                               stroke_width=stroke, stroke_fill=outline + (255,))
    layer = layer.rotate(rng.uniform(-8, 8), expand=True, resample=Image.BICUBIC)
    if layer.width >= image.width or layer.height >= image.height:
        return False
    pos = (rng.randrange(image.width - layer.width), rng.randrange(image.height - layer.height))
    image.paste(layer, pos, layer)
    image.save(out, quality=92)
    return True


def make_rendered(text_free: list[Path], words: list[str], per_size: int, rng: random.Random,
                  folder: Path) -> list[dict]:
    """The rendered test photos: single words by size, run-together pairs, Chinese words."""
    items = []
    # each word at most once (a word shown in two photos could not be at rank 1 in both)
    singles = iter(rng.sample(words, len(words)))
    chinese = itertools.cycle(rng.sample(CHINESE, len(CHINESE)))
    plan = [("word", px) for px in SIZES for _ in range(per_size)]
    plan += [("compound", rng.choice((32, 48))) for _ in range(per_size * 2)]
    plan += [("chinese", rng.choice((24, 32, 48, 64))) for _ in range(per_size * 2)]
    for n, (kind, px) in enumerate(plan):
        while True:
            base = rng.choice(text_free)
            if kind == "compound":
                parts = rng.sample(words, 2)
                text, queries, font = "".join(parts).upper(), parts, rng.choice(FONTS)
            elif kind == "chinese":
                text = next(chinese)
                queries, font = [text], CJK_FONT
            else:
                text = next(singles)
                text = rng.choice((text, text.upper(), text.capitalize()))
                queries, font = [text.lower()], rng.choice(FONTS)
            out = folder / f"r{n:03d}_{kind}_{px}.jpg"
            if render(base, text, font, px, rng, out):
                break
        items.append({"path": out, "kind": kind, "px": px, "text": text, "queries": queries})
    return items


def tokens_for(lines: list[Line], threshold: float, way: str) -> list[str]:
    """The photo's searchable OCR tokens at a threshold, run-together words treated one way."""
    text = searchable_text(lines, threshold)
    if way in ("wordninja", "fuzzy"):
        return ocr_tokens(text, fuzzy=way == "fuzzy")
    return [t for line in text.splitlines() for t in tokenize(line)]


def holds(tokens: list[str], word: str, way: str) -> bool:
    """Whether a query word matches the tokens (a substring of one, for n-grams)."""
    wanted = tokenize(word)
    if way == "ngram":
        return bool(wanted) and all(any(w in t for t in tokens) for w in wanted)
    return bool(wanted) and all(w in tokens for w in wanted)


def ranks(docs: dict[str, list[str]], queries: list[tuple[str, str]]) -> list[int | None]:
    """Rank (1-based) of each (photo, word) when searching the word over all docs; None if not found."""
    names = list(docs)
    engine = get_engine("sparse")
    engine.add([docs[n] for n in names])
    out = []
    for name, word in queries:
        hits = [names[d] for d, _ in engine.search(tokenize(word), 50)]
        out.append(hits.index(name) + 1 if name in hits else None)
    return out


def pct(values: list[bool]) -> str:
    """A share as a percentage with its count."""
    return f"{100 * sum(values) / max(len(values), 1):5.1f}% ({sum(values)}/{len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=IMAGES, help="Real photos (default: COCO in ../shared).")
    ap.add_argument("--labels", type=Path, default=LABELS, help="Hand-labelled text per photo (JSON).")
    ap.add_argument("--limit", type=int, default=0, help="Use only the first N photos (0: all).")
    ap.add_argument("--per-size", type=int, default=8, help="Rendered photos per word size.")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores).")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--cache", type=Path, help="Save what was read here; if it exists, reuse it (no OCR).")
    ap.add_argument("--settings", type=json.loads, default={},
                    help='RapidOCR settings to measure instead of the shipped ones (JSON), e.g. the previous '
                         f'ones: \'{json.dumps(PREVIOUS)}\'')
    ap.add_argument("--before", type=Path,
                    help="A --cache read with other settings (same photos, seed): printed beside, as before.")
    ap.add_argument("--before-way", choices=WAYS, default="wordninja",
                    help="How the --before reading treats run-together words (default: wordninja).")
    ap.add_argument("--timing", type=int, default=0,
                    help="Only time N real photos, read in turn with these settings and the previous ones "
                         "(a busy machine slows both alike).")
    args = ap.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no photos at {args.images}: pass --images or set MLLMRET_COCO_IMAGES")
    photos = sorted(args.images.glob("*.jpg"))[: args.limit or None]
    labels = json.loads(args.labels.read_text())["photos"]
    text_free = [p for p in photos if p.name not in labels]
    rng = random.Random(args.seed)
    words = dictionary()
    engine = OcrEngine(threads=args.threads, settings=args.settings)
    if args.timing:
        return timing(photos[: args.timing], engine, OcrEngine(threads=args.threads, settings=PREVIOUS))
    read: dict[str, tuple[list[Line], float]] = {}

    def ocr(path: Path) -> None:
        image = open_image(path)
        t0 = time.perf_counter()
        lines = engine.read(image)
        read[path.name] = (lines, time.perf_counter() - t0)

    if args.cache and args.cache.exists():
        rendered, read = load_cache(args.cache)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rendered = make_rendered(text_free, words, args.per_size, rng, Path(tmp))
            ocr(photos[0])  # warm-up: model load is not per-photo cost
            read.clear()
            for i, path in enumerate([*photos, *(r["path"] for r in rendered)]):
                ocr(path)
                print(f"\rread {i + 1}/{len(photos) + len(rendered)}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
        if args.cache:
            args.cache.write_text(json.dumps({
                "settings": engine.params(),
                "rendered": [{**r, "path": r["path"].name} for r in rendered],
                "read": {n: {"lines": [ln.to_dict() for ln in lines], "s": secs}
                         for n, (lines, secs) in read.items()},
            }, ensure_ascii=False))
    before = load_cache(args.before)[1] if args.before else None
    base_secs = [read[p.name][1] for p in photos]
    print(f"photos: {len(photos)} real ({len(photos) - len(text_free)} with labelled text, {len(text_free)} "
          f"text-free), {len(rendered)} rendered; dictionary {len(words)} words")
    print(f"settings: {json.dumps(engine.params() if not args.cache else cache_settings(args.cache))}")
    print(f"seconds per real photo: mean {statistics.mean(base_secs):.2f}, median "
          f"{statistics.median(base_secs):.2f} (threads={args.threads or 'all'})")
    dict_words = set(words)
    labelled = [(name, w) for name, entry in labels.items() if name in read
                for w in dict.fromkeys(t for line in entry for t in tokenize(line) if len(t) >= 3)]
    print("\nthreshold, run-together words: false matches on text-free photos | rendered words >= 24px "
          "recall, s@1 | run-together pairs recall | Chinese recall | hand-labelled COCO words recall, "
          "s@1, s@5")
    for way in WAYS:
        for th in THRESHOLDS:
            m = measure(read, photos, text_free, rendered, labelled, dict_words, th, way)
            mark = "  <- shipped" if th == MIN_CONFIDENCE and way == SHIPPED_WAY else ""
            print(f"{th:.1f} {way:9s}  false {m['false']} | {m['big_recall']} s@1 {m['big_s1']} | "
                  f"{m['compound']} | {m['chinese']} | {m['real_recall']} s@1 {m['real_s1']} "
                  f"s@5 {m['real_s5']}{mark}")
    if before:
        print(f"\nbefore ({args.before.name}, {args.before_way}) -> after (shipped: {SHIPPED_WAY}), "
              f"threshold {MIN_CONFIDENCE}:")
        old = measure(before, photos, text_free, rendered, labelled, dict_words, MIN_CONFIDENCE,
                      args.before_way)
        new = measure(read, photos, text_free, rendered, labelled, dict_words, MIN_CONFIDENCE, SHIPPED_WAY)
        for key in ("false", "big_recall", "big_s1", "compound", "chinese", "real_recall", "real_s1",
                    "real_s5"):
            print(f"   {key:11s} {old[key]:>18s} -> {new[key]}")
    print(f"\nby word size (threshold {MIN_CONFIDENCE}, {SHIPPED_WAY}): recall, success@1, success@5, s/photo"
          + ("; before -> after" if before else ""))
    rows = by_size(read, rendered, SHIPPED_WAY)
    old_rows = by_size(before, rendered, args.before_way) if before else {}
    for key, row in rows.items():
        was = old_rows.get(key)
        cells = [f"{was[i]} -> {row[i]}" if was else row[i] for i in range(4)]
        print(f"   {key[0]:8s} {key[1]:3d}px  recall {cells[0]}  s@1 {cells[1]}  s@5 {cells[2]}  "
              f"{cells[3]} s/photo")
    print("\nmissed (rendered text -> lines read):")
    docs = {n: tokens_for(lines, MIN_CONFIDENCE, SHIPPED_WAY) for n, (lines, _) in read.items()}
    for r in rendered:
        for q in r["queries"]:
            if not holds(docs[r["path"].name], q, SHIPPED_WAY):
                lines = [(ln.text, round(ln.confidence, 2)) for ln in read[r["path"].name][0]]
                print(f"   {r['kind']} {r['px']}px {r['text']!r} ({q}) -> {lines}")


def timing(photos: list[Path], engine: OcrEngine, previous: OcrEngine) -> None:
    """Seconds per photo of two engines, reading each photo in turn (after one warm-up read each)."""
    secs: dict[str, list[float]] = {"these settings": [], "previous": []}
    for n, path in enumerate([photos[0], *photos]):
        image = open_image(path)
        for name, e in (("these settings", engine), ("previous", previous)):
            t0 = time.perf_counter()
            e.read(image)
            if n:
                secs[name].append(time.perf_counter() - t0)
    for name, e in (("these settings", engine), ("previous", previous)):
        print(f"{name:15s} {json.dumps(e.params())}: mean {statistics.mean(secs[name]):.2f} s/photo, median "
              f"{statistics.median(secs[name]):.2f} ({len(photos)} photos)")


def load_cache(path: Path) -> tuple[list[dict], dict[str, tuple[list[Line], float]]]:
    """The rendered photos and the lines read (with seconds) that a --cache run saved."""
    saved = json.loads(path.read_text())
    rendered = [{**r, "path": Path(r["path"])} for r in saved["rendered"]]
    return rendered, {name: (parse_lines(json.dumps({"lines": v["lines"]})), v["s"])
                      for name, v in saved["read"].items()}


def cache_settings(path: Path) -> dict:
    """The engine settings a cache was read with (older caches do not say)."""
    return json.loads(path.read_text()).get("settings", "not recorded")


def by_size(read, rendered, way: str) -> dict[tuple[str, int], tuple[str, str, str, str]]:
    """Recall, success@1, success@5 and seconds per photo for each kind and size of rendered text."""
    docs = {n: tokens_for(lines, MIN_CONFIDENCE, way) for n, (lines, _) in read.items()}
    rows = {}
    for kind in ("word", "compound", "chinese"):
        for px in sorted({r["px"] for r in rendered if r["kind"] == kind}):
            group = [r for r in rendered if r["kind"] == kind and r["px"] == px]
            pairs = [(r["path"].name, q) for r in group for q in r["queries"]]
            rk = ranks(docs, pairs)
            secs = statistics.mean(read[r["path"].name][1] for r in group)
            rows[kind, px] = (pct([holds(docs[n], q, way) for n, q in pairs]), pct([r == 1 for r in rk]),
                              pct([r is not None and r <= 5 for r in rk]), f"{secs:.2f}")
    return rows


def measure(read, photos, text_free, rendered, labelled, dict_words, th: float, way: str) -> dict[str, str]:
    """Every headline number at one threshold and one way of treating run-together words."""
    docs = {n: tokens_for(lines, th, way) for n, (lines, _) in read.items()}
    if way == "ngram":
        false = [any(holds(docs[p.name], w, way) for w in dict_words) for p in text_free]
    else:
        false = [bool(dict_words & set(docs[p.name])) for p in text_free]
    out = {"false": pct(false)}
    big = [(r["path"].name, q) for r in rendered if r["kind"] == "word" and r["px"] >= 24
           for q in r["queries"]]
    out["big_recall"] = pct([holds(docs[n], q, way) for n, q in big])
    for kind in ("compound", "chinese"):
        pairs = [(r["path"].name, q) for r in rendered if r["kind"] == kind for q in r["queries"]]
        out[kind] = pct([holds(docs[n], q, way) for n, q in pairs])
    out["real_recall"] = pct([holds(docs[n], w, way) for n, w in labelled])
    out["big_s1"] = out["real_s1"] = out["real_s5"] = "-"
    if way != "ngram":  # an n-gram index is not built here: only its matches are counted
        out["big_s1"] = pct([r == 1 for r in ranks(docs, big)])
        real = ranks({p.name: docs[p.name] for p in photos}, labelled)
        out["real_s1"] = pct([r == 1 for r in real])
        out["real_s5"] = pct([r is not None and r <= 5 for r in real])
    return out

if __name__ == "__main__":
    main()
