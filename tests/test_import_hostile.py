"""Hostile and careless import files: every bad line skipped and reported, every good line kept."""

from __future__ import annotations

import io
import json

import pytest
from cli_helpers import mllmret
from fakes import FakeCaptioner

from mllm_retrieval.capture.images import sha256_file
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.errors import ImportFormatError
from mllm_retrieval.library import records
from mllm_retrieval.library.jsonl import export_jsonl, import_jsonl, skipped_report
from mllm_retrieval.library.store import Store


def line(**rec) -> bytes:
    return json.dumps(rec).encode()


# (kind the report must give, the line's bytes) for each way a line can be bad
BAD: list[tuple[str, bytes]] = [
    ("not UTF-8 text", b'{"image_id": "latin1", "text": "caf\xe9"}'),
    ("not UTF-8 text", '{"image_id": "u16", "text": "utf-16"}'.encode("utf-16-le")),
    ("not UTF-8 text", bytes(b for b in range(256) if b != 10)),
    ("not UTF-8 text", b"\xff\xd8\xff\xe0\x10JFIF binary"),
    ("not UTF-8 text", b'{"image_id": "surrogate", "text": "\\ud800 alone"}'),
    ("not UTF-8 text", b'{"image_id": "raw-surrogate", "text": "\xed\xa0\x80"}'),
    ("not valid JSON", b'{"image_id": "cut", "text": '),
    ("not valid JSON", b"[" * 100_000),
    ("not valid JSON", b"{'image_id': 1, 'text': 'python dict'}"),
    ("not a JSON object", b"[1, 2]"),
    ("not a JSON object", b'"just a string"'),
    ("not a JSON object", b"null"),
    ("bad number", line(image_id="big", text="x", width=10**30)),
    ("bad number", b'{"image_id": "huge", "text": "x", "width": ' + b"9" * 5000 + b"}"),
    ("bad number", b'{"image_id": "inf", "text": "x", "width": 1e999}'),
    ("bad number", b'{"image_id": "inf2", "text": "x", "width": Infinity}'),
    ("bad number", b'{"image_id": "nan", "text": "x", "seconds": NaN}'),
    ("bad number", b'{"image_id": "ninf", "text": "x", "height": -Infinity}'),
    ("invalid width", line(image_id="frac", text="x", width=12.5)),
    ("invalid width", line(image_id="abc", text="x", width="abc")),
    ("invalid width", line(image_id="obj", text="x", width={"px": 3})),
    ("invalid width", line(image_id="neg", text="x", width=-4)),
    ("invalid width", line(image_id="bool", text="x", width=True)),
    ("invalid height", line(image_id="wide", text="x", height=10**18)),
    ("invalid sha256", line(image_id="shaobj", text="x", sha256={"a": 1})),
    ("invalid sha256", line(image_id="shashort", text="x", sha256="abc")),
    ("invalid prompt", line(image_id="p1", text="x", prompt=5)),
    ("invalid prompt", line(image_id="p2", text="x", prompt=["a", "b"])),
    ("invalid caption", line(image_id="c5", caption=5)),
    ("invalid text", line(image_id="tlist", text=["a", "b"])),
    ("invalid tags", line(image_id="tnum", tags=["dog", 5])),
    ("invalid tags", line(image_id="tobj", tags={"dog": 1})),
    ("invalid model", line(image_id="m", text="x", model=7)),
    ("invalid params", line(image_id="pl", text="x", params=[1, 2])),
    ("invalid params", b'{"image_id": "deep", "text": "x", "params": ' + b'{"a": ' * 40 + b"1" + b"}" * 41),
    ("invalid image_id", line(image_id=1.5, text="x")),
    ("invalid image_id", line(image_id=False, text="x")),
    ("invalid image_id", line(image_id=["a"], text="x")),
    ("invalid path", line(path="bad\u0000name.jpg", text="x")),
    ("invalid path", line(path="x" * 5000, text="x")),
    ("invalid seconds", line(image_id="sec", text="x", seconds=-1)),
    ("invalid box", line(image_id="box3", text="x", box=[1, 2, 3])),
    ("invalid box", line(image_id="boxs", text="x", box=["a", 0, 1, 1])),
    ("invalid box", line(image_id="boxneg", text="x", box=[5, 5, 1, 1])),
    ("invalid tile", line(image_id="tile", text="x", tile="the left half")),
    ("no image", line(text="names no image")),
    ("no image", b"{}"),
    ("no text", line(image_id="notext")),
    ("outside --images", line(file_name="../outside.jpg", text="escape")),
    ("outside --images", line(file_name="sub/../../outside.jpg", text="escape")),
    ("outside --images", line(file_name="/etc/passwd", text="absolute")),
    ("line too long", line(image_id="long", text="x" * (records.MAX_LINE + 10))),
]


def good(i: int) -> bytes:
    """The i-th good line; shapes vary (text, tags as a list or a string, caption, size, box, tile)."""
    shapes = [
        {"image_id": f"good{i}", "text": f"Tags: marker{i}, cat\nCaption: A cat."},
        {"image_id": f"good{i}", "tags": f"marker{i}, dog, park", "caption": "A dog in a park."},
        {"image_id": f"good{i}", "tags": [f"marker{i}", "bird"], "width": 640, "height": 480,
         "box": [0, 0, 320.5, 240], "seconds": 1.5, "params": {"t": 0.2}},
        {"image_id": i, "caption": f"marker{i} on its own", "tile": "0,0,10,10", "model": "m2",
         "prompt": "Describe.", "unknown_field": {"ignored": [1, 2]}},
    ]
    return json.dumps(shapes[i % len(shapes)], ensure_ascii=False).encode()


def test_a_corpus_of_malformed_lines_keeps_every_good_line_and_reports_each_bad_one(store, tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (tmp_path / "outside.jpg").write_bytes(b"not even an image")
    chunks, expected, goods = [b"\xef\xbb\xbf" + good(0) + b"\n"], {}, [0]
    lineno = 1
    for i, (kind, bad) in enumerate(BAD, start=1):
        lineno += 1
        expected[lineno] = kind
        chunks.append(bad + b"\n")
        lineno += 1
        goods.append(i)
        chunks.append(good(i) + (b"\r\n" if i % 5 == 0 else b"\n"))
        if i % 7 == 0:
            lineno += 1
            chunks.append(b"   \n")  # blank lines are neither imported nor reported
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"".join(chunks))

    s = import_jsonl(store, src, images_dir=images, progress=False)

    got = {item.line: item.kind for item in s.skipped}
    assert got == expected
    assert all(item.path == f"{src}:{item.line}" and item.reason for item in s.skipped)
    assert (s.added, s.already_present) == (len(goods), 0)
    stored = {r[0] for r in store.db.execute(
        "SELECT i.external_id FROM images i JOIN tiles t ON t.image_id = i.id JOIN captions c "
        "ON c.tile_id = t.id")}
    assert stored == {f"good{i}" if i % 4 != 3 else str(i) for i in goods}
    tags = dict(store.db.execute(
        "SELECT i.external_id, c.tags FROM images i JOIN tiles t ON t.image_id = i.id "
        "JOIN captions c ON c.tile_id = t.id").fetchall())
    assert json.loads(tags["good1"]) == ["marker1", "dog", "park"]  # a string of tags, split on commas
    assert json.loads(tags["good2"]) == ["marker2", "bird"]
    assert store.db.execute("SELECT count(*) FROM images WHERE path LIKE '%outside%'").fetchone()[0] == 0

    report = skipped_report(s.skipped)
    assert report[0].startswith("skipped: ") and "; 6 not UTF-8 text (lines 2, 4, 6, 8, 10, …); " in report[0]
    assert len(report) == 1 + 10 + 1 and report[-1] == f"  … and {len(BAD) - 10} more lines"
    assert report[1].startswith(f"  line {min(expected)}: not UTF-8 text")


def test_cli_import_reports_lines_and_never_a_traceback(tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b"\n".join([good(0), BAD[13][1], good(1), b"\xff\xfe garbage", good(2)]) + b"\n")
    db = tmp_path / "lib.db"
    r = mllmret("import", src, "--db", db)
    assert "imported 3 captions" in r.output and "2 lines skipped" in r.output
    assert "line 2: a number too large to store (5000 digits)" in r.output
    assert "line 4: not UTF-8 text" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("content", [b"\x00" * 5000, bytes(range(256)) * 40,
                                     b"\xff\xfe" + "{}".encode("utf-16-le")])
def test_a_file_with_nothing_usable_exits_1_in_few_lines(tmp_path, content):
    src = tmp_path / "junk.jsonl"
    src.write_bytes(content)
    r = mllmret("import", src, "--db", tmp_path / "lib.db", ok=False)
    said = [x for x in r.output.splitlines() if x.strip() and not x.startswith("importing")]
    assert r.exit_code == 1 and "Traceback" not in r.output and len(said) <= 13, said
    assert said[0].startswith("imported 0 captions") or said[0].startswith("Error: ")


def test_utf16_file_is_refused_in_one_line(store, tmp_path):
    src = tmp_path / "u16.jsonl"
    src.write_bytes('{"image_id": 1, "text": "a cat"}\n'.encode("utf-16"))
    with pytest.raises(ImportFormatError, match="is UTF-16 text: save it as UTF-8"):
        import_jsonl(store, src, progress=False)


def test_endless_line_stops_with_bounded_reading(store, tmp_path, monkeypatch):
    """/dev/zero (or any file without line breaks) is read in bounded pieces and given up after MAX_RUN."""
    monkeypatch.setattr(records, "MAX_LINE", 1000)
    monkeypatch.setattr(records, "MAX_RUN", 50_000)
    src = tmp_path / "endless.jsonl"
    src.write_bytes(good(0) + b"\n" + b"x" * 2000 + b"\n" + good(1) + b"\n" + b"y" * 200_000 + b"\n"
                    + good(2))
    s = import_jsonl(store, src, progress=False)
    assert s.added == 2  # the third good line is after the endless one, which ends the reading
    assert [(k.line, k.kind) for k in s.skipped] == [(2, "line too long"), (4, "line too long")]
    assert "rest of the file is not read" in s.skipped[1].reason


def test_dev_zero_ends(tmp_path):
    r = mllmret("import", "/dev/zero", "--db", tmp_path / "lib.db", ok=False)
    assert r.exit_code == 1 and "line 1: more than 64 MiB without a line break" in r.output


def test_a_claimed_sha256_never_changes_an_indexed_file(tmp_path, photos):
    with Store(tmp_path / "lib.db") as store:
        caption_paths(store, [photos], FakeCaptioner(), load_prompt(), CaptionSettings(grid="none"),
                      progress=False)
        sha = sha256_file(photos / "red.jpg")
        before_images = store.db.execute("SELECT * FROM images ORDER BY id").fetchall()
        before_files = store.db.execute("SELECT * FROM files ORDER BY path").fetchall()
        src = tmp_path / "claims.jsonl"
        src.write_bytes(b"\n".join([
            line(sha256=sha, path="/elsewhere/red.jpg", width=1, height=1, image_id="evil",
                 text="Tags: claim"),
            line(sha256=sha.upper(), file_name="other.jpg", width=9, height=9, model="m2", text="Tags: c2"),
        ]) + b"\n")
        s = import_jsonl(store, src, progress=False)
        assert s.added == 2 and not s.skipped
        assert store.db.execute("SELECT * FROM images ORDER BY id").fetchall() == before_images
        assert store.db.execute("SELECT * FROM files ORDER BY path").fetchall() == before_files


def test_file_name_inside_images_is_indexed(store, photos, tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_bytes(line(file_name="sub/green.PNG", text="Tags: green") + b"\n"
                    + line(file_name="sub/../red.jpg", text="Tags: red") + b"\n")
    s = import_jsonl(store, src, images_dir=photos, progress=False)
    assert s.added == 2 and not s.skipped
    assert store.db.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()[0] == 2


def _strict(text: str):
    def refuse(constant):
        raise ValueError(constant)
    return json.loads(text, parse_constant=refuse)


def test_export_is_standard_json_whatever_the_database_holds(store):
    image = store.add_image(None, "/x.jpg", 10, 10, external_id="x")
    run = store.get_or_create_run("b", "m", {})
    [(tile, _)] = store.ensure_tiles(image, [None], 10, 10)
    store.db.execute("INSERT INTO captions (tile_id, run_id, raw, tags, caption, created_at) "
                     "VALUES (?, ?, 'raw', '[\"ok\", 5, NaN]', X'ff41', 'now')", [tile, run.id])
    store.db.execute("UPDATE images SET width = 9e999, height = 'abc', path = X'00ff' WHERE id = ?", [image])
    store.db.execute("UPDATE runs SET params = '{\"t\": Infinity}'")
    out = io.StringIO()
    assert export_jsonl(store, out) == 1
    [rec] = [_strict(x) for x in out.getvalue().splitlines()]
    assert rec["width"] is None and rec["height"] is None and rec["params"] == {}
    assert rec["tags"] == [] and rec["caption"] == "\ufffdA" and rec["path"] == "\x00\ufffd"


def test_export_to_an_unwritable_place_is_one_line(tmp_path):
    r = mllmret("export", "-o", tmp_path / "missing" / "out.jsonl", "--db", tmp_path / "lib.db", ok=False)
    assert r.exit_code == 1 and r.output.strip().startswith("Error: cannot write")
