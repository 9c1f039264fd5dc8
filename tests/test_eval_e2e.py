"""End to end: caption real COCO photos with the tiny model, then evaluate that text."""

import json
import re

import pytest
from conftest import SHARED
from typer.testing import CliRunner

from mllm_retrieval.cli import app

INSTANCES = SHARED / "coco" / "annotations" / "instances_val2017.json"


def test_caption_then_eval_on_real_photos(coco_images, tiny_llava, tmp_path):
    if not INSTANCES.exists():
        pytest.skip(f"{INSTANCES} not found")
    runner = CliRunner()
    db, out = tmp_path / "lib.db", tmp_path / "out"
    r = runner.invoke(app, ["caption", str(coco_images), "--model", str(tiny_llava), "--max-new-tokens", "12",
                            "-q", "--db", str(db)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "--annotations", str(INSTANCES), "--source", "db", "--db", str(db),
                            "--ablate", "--out", str(out), "--results-md", str(tmp_path / "R.md"), "-q"])
    assert r.exit_code == 0, r.output + str(r.exception)
    for name in ("results.json", "pr_curves.png", "pr_per_class.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    first = results["conditions"][0]
    assert first["n_images"] == 154 and first["n_images_with_text"] == 3  # only the captioned photos
    for cond in results["conditions"]:
        for key in ("macro_ap", "macro_pr_auc", "random_macro_ap"):
            assert 0.0 <= cond[key] <= 1.0
        row = next(line for line in r.stdout.splitlines() if line.rstrip().endswith(cond["label"]))
        numbers = re.findall(r"\b[01]\.\d{3}\b", row)
        assert numbers[:3] == [f"{cond['macro_ap']:.3f}", f"{cond['macro_pr_auc']:.3f}",
                               f"{cond['random_macro_ap']:.3f}"]
    assert "full image only" in " ".join(c["label"] for c in results["conditions"]).lower()
    assert (tmp_path / "R.md").read_text().count("macro AP") >= 1
