"""Server captioning keeps `--concurrency` requests in flight across photos, committing as answers arrive."""

from __future__ import annotations

import threading
import time

import pytest
from stub_server import Reply, answer, serve
from test_openai_backend import image_of

from mllm_retrieval.capture.captioners.openai_compat import OpenAICaptioner
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.errors import BackendError

pytestmark = pytest.mark.usefixtures("no_env_keys")

PROMPT = load_prompt()


def by_size(body: dict) -> Reply:
    """An answer naming the size of the image it was sent, so each stored caption can be checked."""
    im = image_of(body)
    return Reply(body=answer(f"Tags: size{im.width}x{im.height}\nCaption: a tile."))


def captioner(base_url, **kw) -> OpenAICaptioner:
    return OpenAICaptioner(model="m", base_url=base_url, backoff=0.01, retries=1, **kw)


def stored_sizes_match_tiles(store) -> bool:
    rows = store.db.execute(
        "SELECT t.x1 - t.x0, t.y1 - t.y0, c.tags FROM captions c JOIN tiles t ON t.id = c.tile_id").fetchall()
    return bool(rows) and all(f'"size{w}x{h}"' in tags for w, h, tags in rows)


def test_requests_in_flight_exceed_the_batch_size(store, many_photos):
    with serve(delay=0.2) as server:
        s = caption_paths(store, [many_photos], captioner(server.base_url, concurrency=8), PROMPT,
                          CaptionSettings(batch_size=2), progress=False)
        assert s.captioned_images == 6 and s.captioned_tiles == 30
        assert 6 <= server.max_in_flight <= 8  # batches of 2 no longer cap the requests in flight


def test_answers_go_to_their_tiles_when_they_return_out_of_order(store, many_photos):
    with serve() as server:
        def slow_sometimes(body):
            reply = by_size(body)
            reply.delay = 0.15 if len(server.requests) % 3 == 0 else 0.0
            return reply

        server.responder = slow_sometimes
        caption_paths(store, [many_photos], captioner(server.base_url, concurrency=6), PROMPT,
                      CaptionSettings(batch_size=4), progress=False)
    assert store.db.execute("SELECT count(*) FROM captions").fetchone()[0] == 30
    assert stored_sizes_match_tiles(store)


def test_a_slow_request_holds_up_only_itself(store, many_photos):
    arrived: list[float] = []
    slow_done = threading.Event()
    with serve() as server:
        def responder(body):
            arrived.append(time.monotonic())
            if len(arrived) == 1:
                threading.Timer(1.0, slow_done.set).start()
                return Reply(delay=1.0)
            return Reply(delay=0.01)

        server.responder = responder
        caption_paths(store, [many_photos], captioner(server.base_url, concurrency=2), PROMPT,
                      CaptionSettings(batch_size=2), progress=False)
    during_slow = sum(1 for t in arrived[1:] if t < arrived[0] + 0.9)
    assert during_slow >= 15  # batched, the other slot would have waited for the slow one after 1 request


def test_a_failed_request_keeps_committed_answers_and_a_rerun_resumes(store, many_photos):
    with serve() as server:
        server.add(*[Reply() for _ in range(12)], Reply(status=400, body={"error": "bad image"}))
        with pytest.raises(BackendError, match="refused"):
            caption_paths(store, [many_photos], captioner(server.base_url, concurrency=1), PROMPT,
                          CaptionSettings(batch_size=5), progress=False)
        kept = store.db.execute("SELECT count(*) FROM captions").fetchone()[0]
        assert kept == 12  # every answer that came back before the failure is committed
        server.requests.clear()
        s = caption_paths(store, [many_photos], captioner(server.base_url, concurrency=4), PROMPT,
                          CaptionSettings(batch_size=5), progress=False)
        assert s.captioned_tiles == 18 and len(server.requests) == 18
    dupes = store.db.execute(
        "SELECT count(*) FROM (SELECT tile_id, run_id FROM captions GROUP BY 1, 2 HAVING count(*) > 1)"
    ).fetchone()[0]
    assert dupes == 0 and store.db.execute("SELECT count(*) FROM captions").fetchone()[0] == 30
