"""Captioning on Ray Data actors (a local Ray with 2 CPUs): same library as the local pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import mllmret
from fakes import FakeCaptioner
from library_helpers import caption_units, wait_for_captions
from PIL import Image
from test_shards import library_rows

from mllm_retrieval.capture.captioners import get_captioner, register, unregister
from mllm_retrieval.capture.pipeline import CaptionSettings, caption_paths
from mllm_retrieval.capture.prompts import load_prompt
from mllm_retrieval.errors import MllmretError
from mllm_retrieval.library.store import Store

ray = pytest.importorskip("ray")

from mllm_retrieval.capture.distributed import caption_with_ray, import_ray  # noqa: E402

PROMPT = load_prompt()
TESTS = Path(__file__).resolve().parent
BACKENDS = {"fake": "fakes:FakeCaptioner", "picky": "fakes:PickyCaptioner", "dying": "fakes:DyingCaptioner",
            "poisoned": "fakes:PoisonedCaptioner"}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module: 2 CPUs, no dashboard; workers import the tests' fakes."""
    for name, entry in BACKENDS.items():
        register(name, entry)
    path = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()
    for name in BACKENDS:
        unregister(name)


def on_ray(store, paths, backend="fake", workers=2, **kw):
    kw.setdefault("progress", False)
    settings = CaptionSettings(batch_size=kw.pop("batch_size", 4))
    return caption_with_ray(store, paths, backend, kw.pop("options", {}), PROMPT, settings, workers=workers,
                            **kw)


def truncated(path: Path) -> None:
    """A JPEG whose header reads fine and whose pixels are cut off: it fails only when decoded."""
    Image.new("RGB", (80, 60), "white").save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_same_library_as_local_and_a_rerun_adds_nothing(cluster, photos):
    truncated(photos / "cut.jpg")
    with Store(memory=True) as local, Store(memory=True) as store:
        caption_paths(local, [photos], FakeCaptioner(), PROMPT, progress=False)
        s = on_ray(store, [photos])
        assert (s.captioned_images, s.captioned_tiles) == (4, 20)
        assert [Path(f.path).name for f in s.failed] == ["cut.jpg"]  # decoded on a worker, reported here
        assert library_rows(store) == library_rows(local)
        again = on_ray(store, [photos])
        assert (again.captioned_tiles, again.already_done, again.run_id) == (0, 4, s.run_id)
        assert len(library_rows(store)) == 20


def test_a_photo_that_always_fails_is_reported_and_the_rest_is_stored(cluster, photos):
    with Store(memory=True) as store:
        s = on_ray(store, [photos], backend="picky", batch_size=10)
        assert s.captioned_images == 3 and s.captioned_tiles == 15
        [failed] = s.failed
        assert Path(failed.path).name == "red.jpg" and "captioning failed 2 times" in failed.reason
        assert "cannot caption a 64x48 image" in failed.reason


def test_a_worker_that_dies_is_replaced_and_its_photos_retried(cluster, photos, tmp_path):
    marker = tmp_path / "died"
    with Store(memory=True) as store:
        s = on_ray(store, [photos], backend="dying", workers=1, options={"marker": str(marker)})
        assert marker.exists()  # the actor did die once
        assert (s.captioned_images, s.captioned_tiles, s.failed) == (4, 20, [])
        keys = store.db.execute("SELECT count(*), count(DISTINCT tile_id) FROM captions").fetchone()
        assert keys == (20, 20)


def test_a_photo_that_kills_every_worker_is_reported_and_only_it_is_lost(cluster, photos):
    with Store(memory=True) as store:
        s = on_ray(store, [photos], backend="poisoned", batch_size=10)
        assert (s.captioned_images, s.captioned_tiles) == (3, 15)  # its batch-mates came back alone
        [failed] = s.failed
        assert Path(failed.path).name == "red.jpg" and "worker died every time" in failed.reason


def test_cli_ray_stores_and_reports(cluster, photos, tmp_path):
    r = mllmret("caption", photos, "--backend", "fake", "--ray", "local", "--workers", "2", "--no-embed",
                "-q", "--db", tmp_path / "x.db")
    assert "captioned 4 images (20 tiles)" in r.output
    r = mllmret("caption", photos, "--backend", "fake", "--ray", "local", "--no-embed", "-q",
                "--db", tmp_path / "x.db")
    assert "captioned 0 images" in r.output and "4 already captioned" in r.output


def test_a_cluster_that_cannot_be_joined_is_one_line(monkeypatch, photos):
    def refuse(**_):
        raise ConnectionError("Could not find any running Ray instance.\nmore lines")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with Store(memory=True) as store, pytest.raises(MllmretError) as e:
        caption_with_ray(store, [photos], "transformers", {}, PROMPT, address="auto", progress=False)
    assert str(e.value) == ("cannot join the Ray cluster at 'auto': Could not find any running Ray "
                            "instance.; start one with `ray start --head`, or use --ray local")


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MllmretError, match=r'pip install -e "\.\[ray\]"'):
        import_ray()


def test_the_tiny_transformers_model_writes_the_same_captions_as_locally(cluster, photos, tiny_llava):
    options = {"model": str(tiny_llava), "max_new_tokens": 8, "device": "cpu", "dtype": "float32"}
    with Store(memory=True) as local, Store(memory=True) as store:
        caption_paths(local, [photos], get_captioner("transformers", **options), PROMPT,
                      CaptionSettings(batch_size=4), progress=False)
        s = on_ray(store, [photos], backend="transformers", options=options, batch_size=4)
        assert (s.captioned_tiles, s.failed) == (20, [])
        assert library_rows(store) == library_rows(local)  # greedy: batching and workers change nothing


DRIVER = ("import sys; from mllm_retrieval.capture.captioners import register; "
          "register('slow', lambda **kw: __import__('fakes').FakeCaptioner(delay=0.3, **kw)); "
          "from mllm_retrieval.cli import app; sys.argv[0] = 'mllmret'; app()")


def test_kill_9_of_the_driver_then_rerun_captions_every_photo_once(tmp_path):
    psutil = pytest.importorskip("psutil")
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (64, 64), (i * 20, 100, 50)).save(folder / f"{i:02}.png")
    db = tmp_path / "kill.db"
    cmd = [sys.executable, "-c", DRIVER, "caption", str(folder), "--backend", "slow", "--ray", "local",
           "--workers", "2", "--batch-size", "2", "--no-embed", "-q", "--db", str(db)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    stored = wait_for_captions(db, 10, timeout=120)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 10 <= stored < 60, "the driver should have been killed part-way"
    _, alive = psutil.wait_procs(children, timeout=10)
    names = []
    for p in alive:  # never leave the local Ray behind
        try:
            names.append(p.name())
            p.kill()
        except psutil.NoSuchProcess:
            pass
    # Ray's own agents (2.60) outlive a driver killed with -9; its cluster and workers do not
    assert set(names) <= {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}, names
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    total, distinct = caption_units(db)
    assert total == distinct == 12 * 5
    assert "already captioned" in done.stderr
