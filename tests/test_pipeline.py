import json
import shutil

import pytest
from fakes import FakeCaptioner
from PIL import Image

from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt

PROMPT = load_prompt()


def run(store, paths, captioner=None, progress=False, **settings):
    return caption_paths(store, paths, captioner or FakeCaptioner(), PROMPT, CaptionSettings(**settings),
                         progress=progress)


def count(store, table):
    return store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_captions_every_image_and_tile(store, photos):
    s = run(store, [photos])
    assert (s.images, s.captioned_images) == (4, 4)
    assert s.captioned_tiles == count(store, "captions") == 4 * 5
    assert [f.reason for f in s.failed] == []  # notes.txt inside a folder is just ignored
    texts = list(store.tile_texts())
    red_full = [t for t in texts if t.tile_key == "full" and "size64x48" in t.tags]
    assert red_full and red_full[0].tags[0] == "red"


def test_tile_boxes_are_stored_in_pixels(store, photos):
    run(store, [photos / "red.jpg"], grid="2x2")
    boxes = store.db.execute("SELECT key, x0, y0, x1, y1 FROM tiles ORDER BY id").fetchall()
    assert boxes == [("full", 0, 0, 64, 48), ("0,0,32,24", 0, 0, 32, 24), ("32,0,64,24", 32, 0, 64, 24),
                     ("0,24,32,48", 0, 24, 32, 48), ("32,24,64,48", 32, 24, 64, 48)]


def test_grid_none_captions_only_the_full_image(store, photos):
    s = run(store, [photos], grid="none")
    assert s.captioned_tiles == 4


def test_a_second_run_does_nothing(store, photos):
    run(store, [photos])
    fake = FakeCaptioner()
    s = run(store, [photos], fake)
    assert (s.captioned_tiles, s.already_done, fake.calls) == (0, 4, [])


def test_force_captions_again_without_duplicates(store, photos):
    run(store, [photos])
    s = run(store, [photos], force=True)
    assert s.captioned_tiles == 20 and count(store, "captions") == 20


def test_new_model_makes_a_new_run_beside_the_old(store, photos):
    a = run(store, [photos])
    b = run(store, [photos], FakeCaptioner(model="other"))
    assert a.run_id != b.run_id and count(store, "captions") == 40


def test_duplicates_and_moves_are_not_captioned_twice(store, photos, tmp_path):
    shutil.copy(photos / "red.jpg", photos / "sub" / "red-copy.jpg")
    s = run(store, [photos])
    assert (s.images, s.duplicates) == (4, 1)
    moved = tmp_path / "elsewhere"
    shutil.move(str(photos / "sub"), moved)
    fake = FakeCaptioner()
    s = run(store, [moved], fake)
    assert fake.calls == [] and s.already_done == 3


def test_changed_file_is_captioned_again(store, photos):
    run(store, [photos])
    Image.new("RGB", (64, 48), "blue").save(photos / "red.jpg")
    s = run(store, [photos])
    assert s.captioned_images == 1
    statuses = dict(store.db.execute("SELECT status, count(*) FROM images GROUP BY status").fetchall())
    assert statuses == {"ok": 4, "replaced": 1}


def test_deleted_files_leave_search(store, photos):
    run(store, [photos])
    (photos / "red.jpg").unlink()
    s = run(store, [photos])
    assert s.removed == [str(photos / "red.jpg")]
    assert {t.image_id for t in store.tile_texts()} == {
        r[0] for r in store.db.execute("SELECT id FROM images WHERE status = 'ok'")}
    assert len({t.image_id for t in store.tile_texts()}) == 3


def test_bad_files_are_skipped_with_reasons_and_the_run_goes_on(store, photos):
    (photos / "zero.jpg").write_bytes(b"")
    (photos / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    s = run(store, [photos])
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in s.failed}
    assert set(reasons) == {"zero.jpg", "corrupt.png"}
    assert "empty" in reasons["zero.jpg"]
    assert s.captioned_images == 4
    assert {p.rsplit("/", 1)[-1] for p, _ in store.failures()} == {"zero.jpg", "corrupt.png"}


def test_huge_images_are_skipped(store, photos):
    s = run(store, [photos], max_pixels=1700)
    assert s.captioned_images == 2  # 40x40 and 32x32 fit, 64x48 and 50x40 do not
    assert all("too large" in f.reason for f in s.failed)


def test_crash_mid_run_keeps_finished_batches_and_resumes(store, photos):
    crashing = FakeCaptioner(fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(store, [photos], crashing, batch_size=3)
    assert count(store, "captions") == 6  # two committed batches of 3
    fake = FakeCaptioner()
    s = run(store, [photos], fake, batch_size=3)
    assert s.captioned_tiles == 14 and sum(fake.calls) == 14
    assert count(store, "captions") == 20
    dupes = store.db.execute(
        "SELECT count(*) FROM (SELECT tile_id, run_id FROM captions GROUP BY 1, 2 HAVING count(*) > 1)"
    ).fetchone()[0]
    assert dupes == 0


def test_parsed_tags_and_raw_text_are_both_stored(store, photos):
    run(store, [photos / "red.jpg"], grid="none")
    raw, tags, caption = store.db.execute("SELECT raw, tags, caption FROM captions").fetchone()
    assert raw.startswith("Tags: red")
    assert json.loads(tags) == ["red", "size64x48"]
    assert caption == "A red tile."


@pytest.mark.parametrize("make", ["missing", "broken symlink"])
def test_a_path_that_does_not_exist_is_an_error_and_makes_no_run(store, photos, tmp_path, make):
    from mllm_retrieval.errors import PathNotFound

    bad = tmp_path / "mistyped"
    if make == "broken symlink":
        bad.symlink_to(tmp_path / "nowhere")
    fake = FakeCaptioner()
    with pytest.raises(PathNotFound, match="mistyped"):
        run(store, [photos, bad], fake)
    assert fake.calls == [] and count(store, "runs") == 0 and count(store, "files") == 0


def test_ocr_and_dry_run_refuse_a_missing_path(store, tmp_path):
    from fakes import FakeOcr

    from mllm_retrieval.capture.estimate import estimate
    from mllm_retrieval.capture.ocr_pipeline import ocr_paths
    from mllm_retrieval.errors import PathNotFound

    with pytest.raises(PathNotFound):
        ocr_paths(store, [tmp_path / "mistyped"], FakeOcr(), progress=False)
    with pytest.raises(PathNotFound):
        estimate(store, [tmp_path / "mistyped"], FakeCaptioner(), PROMPT, calibrate=False)
    assert count(store, "runs") == 0
