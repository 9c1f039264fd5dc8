"""`mllmret eval` and `mllmret train-composer`: measured retrieval quality."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .. import config
from ..errors import MllmretError
from .main import (
    DbOption,
    Device,
    RunOption,
    app,
)


class ComposerKind(str, Enum):
    tirg = "tirg"
    encoder = "encoder"


@app.command("eval")
def eval_(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(
        hidden=True, help="retrieval; composed is deprecated: `mllmret eval-composed`.")] = "retrieval",
    dataset: Annotated[str | None, typer.Option(help="coco | voc | vlm (files under --data-dir).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Evaluation data [default: ../shared/data].")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Any COCO-format labels file.")] = None,
    captions: Annotated[Path | None, typer.Option(help="COCO-format human captions file.")] = None,
    voc_root: Annotated[Path | None, typer.Option(help="A PASCAL VOC folder (Annotations/*.xml).")] = None,
    voc_split: Annotated[str, typer.Option(help="VOC split under ImageSets/Main.")] = "val",
    source: Annotated[list[str] | None, typer.Option(help="human | db | jsonl:PATH; repeatable.")] = None,
    run: RunOption = None,
    model: Annotated[str | None, typer.Option(help="Only this model's text (db and jsonl).")] = None,
    per_model: Annotated[bool, typer.Option(help="Each model of a source is its own condition.")] = False,
    ablate: Annotated[bool, typer.Option(help="Add full-only, best-tile, tags-only, caption-only.")] = False,
    expand: Annotated[bool, typer.Option(help="Add a class names + synonyms condition.")] = False,
    prf: Annotated[bool, typer.Option(help="Add a pseudo-relevance-feedback condition (BM25).")] = False,
    modes: Annotated[str, typer.Option(help="Ranking modes, comma-separated: keyword,semantic,hybrid.")] = (
        "keyword"),
    embedder: Annotated[str | None, typer.Option(
        help="sentence-transformers model for semantic/hybrid [default: the packaged all-MiniLM-L6-v2].")
    ] = None,
    baseline: Annotated[str | None, typer.Option(help="clip: add a CLIP baseline (needs --images).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder of the set's image files.")] = None,
    clip_model: Annotated[str | None, typer.Option(help="CLIP model for --baseline clip.")] = None,
    device: Annotated[Device, typer.Option(help="Where the CLIP baseline and the embedder run.")] = (
        Device.auto),
    out: Annotated[Path | None, typer.Option(
        help="Folder for results.json and PR plots [default: eval/DATASET in the data dir].")] = None,
    results_md: Annotated[Path | None, typer.Option(help="Generated markdown to write/update.")] = None,
    composer: Annotated[list[Path] | None, typer.Option(hidden=True, help="With --task composed.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    db: DbOption = None,
) -> None:
    """Retrieval quality with class names as queries: AP, PR-AUC, PR curves; see eval/README.md.

    Composed retrieval ("like this photo, but ...") is `mllmret eval-composed`."""
    from ..evaluation import report as rep

    if task == "composed":  # the old spelling of eval-composed
        typer.echo("--task composed is deprecated: use `mllmret eval-composed` (same options)", err=True)
        return _composed(ctx, dataset or "cirr", data_dir, str(captions) if captions else None, modes,
                         embedder, device, composer, out, results_md, quiet)
    if task != "retrieval":
        raise MllmretError(f"--task is retrieval (or the deprecated composed), not {task!r}")
    if composer:
        raise MllmretError("--composer goes with `mllmret eval-composed`")
    out = out or config.eval_dir(f"retrieval-{dataset or 'custom'}")
    from ..evaluation.runner import EvalConfig, run_eval

    result = run_eval(EvalConfig(
        dataset=dataset, data_dir=data_dir, annotations=annotations, captions=captions, voc_root=voc_root,
        voc_split=voc_split, sources=source or [], db=db, run=run, model=model, per_model=per_model,
        ablate=ablate, expand=expand, prf=prf, modes=modes.split(","), embedder=embedder, baseline=baseline,
        images=images, clip_model=clip_model, device=device.value, progress=not quiet,
        command=rep.command_line(ctx),
    ))
    typer.echo(rep.format_table(result))
    written = [rep.write_json(result, out / "results.json"), *rep.write_plots(result, out)]
    if results_md is not None:
        written.append(rep.update_markdown(result, results_md))
    typer.echo("wrote " + ", ".join(str(p.absolute()) for p in written), err=True)


@app.command("eval-composed")
def eval_composed(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="cirr | fashioniq | genecis (files under --data-dir).")] = (
        "cirr"),
    data_dir: Annotated[Path | None, typer.Option(
        help="The composed-retrieval data (its composed/ folder is read) [default: ../shared/data].")] = None,
    captions: Annotated[str | None, typer.Option(help="cirr: blip2 | mllm, the image text.")] = None,
    modes: Annotated[str, typer.Option(help="Ranking modes, comma-separated: keyword,semantic,hybrid.")] = (
        "keyword"),
    embedder: Annotated[str | None, typer.Option(
        help="sentence-transformers model for semantic/hybrid [default: the packaged all-MiniLM-L6-v2].")
    ] = None,
    device: Annotated[Device, typer.Option(help="Where the embedder runs.")] = Device.auto,
    composer: Annotated[list[Path] | None, typer.Option(
        help="Add the learned rows of this `mllmret train-composer` output (a TIRG .safetensors or an "
        "encoder folder); repeatable.")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for results.json [default: eval/composed-DATASET in the data dir].")] = None,
    results_md: Annotated[Path | None, typer.Option(help="Generated markdown to write/update.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Composed image retrieval, text only ("like this photo, but ..."): a reference image's text and a
    modification rank a gallery; R@K on CIRR, FashionIQ and GeneCIS; see eval/README.md."""
    _composed(ctx, dataset, data_dir, captions, modes, embedder, device, composer, out, results_md, quiet)


def _composed(ctx: typer.Context, dataset: str, data_dir: Path | None, captions: str | None, modes: str,
              embedder: str | None, device: Device, composer: list[Path] | None, out: Path | None,
              results_md: Path | None, quiet: bool) -> None:
    from ..composed import evaluate as ce
    from ..evaluation.report import command_line

    result = ce.run_composed(dataset, data_dir, captions, modes.split(","), embedder, device.value, not quiet,
                             command_line(ctx), composers=composer or ())
    typer.echo(ce.format_table(result))
    written = [ce.write_json(result, (out or config.eval_dir(f"composed-{dataset}")) / "results.json")]
    if results_md is not None:
        written.append(ce.update_markdown(result, results_md))
    typer.echo("wrote " + ", ".join(str(p.absolute()) for p in written), err=True)


@app.command("train-composer")
def train_composer(
    data_dir: Annotated[Path | None, typer.Option(
        help="The composed-retrieval data (its fashioniq/ folder is read) [default: ../shared/data].")
    ] = None,
    kind: Annotated[ComposerKind, typer.Option(
        help="tirg: a small fusion head over frozen sentence vectors (seconds after embedding); encoder: "
        "fine-tune the sentence encoder itself on 'reference [SEP] modification' (better, ~9 CPU min per "
        "epoch; it then embeds the library too).")] = ComposerKind.tirg,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where to write [default: composers/fashioniq.safetensors (tirg) or "
        "composers/fashioniq-encoder/ (encoder) in the data dir].")
    ] = None,
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Passes over the training queries [default: tirg 12, encoder 4].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=2, help="Queries per step, the in-batch negatives [default: tirg 256, encoder 128].")] = None,
    lr: Annotated[float | None, typer.Option(
        min=0.0, help="AdamW peak learning rate [default: tirg 1e-3, encoder 5e-5].")] = None,
    hidden: Annotated[int, typer.Option(min=1, help="Width of the gate and residual MLPs.")] = 512,
    holdout: Annotated[float, typer.Option(
        min=0.0, max=0.5, help="Fraction of training queries held out to pick the epoch.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    embedder: Annotated[str | None, typer.Option(
        envvar="MLLMRET_EMBEDDER", help="sentence-transformers model whose vectors are composed "
        "[default: the packaged all-MiniLM-L6-v2]; search and eval must use the same.")] = None,
    device: Annotated[Device, typer.Option(help="Where the embedder runs.")] = Device.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a learned composer on the FashionIQ train split, for `search --like --composer learned` and eval.

    Reads official/cap.*.train.json and the BLIP-2 captions of the train images (never the val split
    that `mllmret eval-composed --dataset fashioniq` scores); 10% of the training queries pick
    the epoch."""
    from ..composed import training as cm
    from ..composed.benchmarks import fashioniq_triplets
    from ..config import composer_path
    from ..search.embedding import Embedder

    triplets, files = fashioniq_triplets(data_dir, "train")
    typer.echo(f"{len(triplets)} training queries from {len(files) // 2} FashionIQ categories", err=True)
    trained_on = "FashionIQ train (" + ", ".join(sorted({t.group for t in triplets})) + ")"
    given = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr}.items() if v}
    if kind is ComposerKind.encoder:  # what is not given takes the trainer's own default
        composer, report = cm.finetune_encoder(
            triplets, embedder, out or composer_path("encoder"), holdout=holdout, seed=seed,
            progress=not quiet, trained_on=trained_on, **given)
        path, before = composer.path, "before fine-tuning"
    else:
        emb = Embedder(embedder, device=None if device is Device.auto else device.value)
        composer, report = cm.train_composer(triplets, emb, hidden=hidden, holdout=holdout, seed=seed,
                                             progress=not quiet, **given)
        composer.meta["trained_on"] = trained_on
        path, before = composer.save(out or composer_path("tirg")), "un-learned r+m"
    if report.holdout_r10:
        typer.echo(f"held-out R@10 (among {report.n_holdout} held-out targets): {before} "
                   f"{100 * report.baseline_r10:.1f}, learned {100 * max(report.holdout_r10):.1f} "
                   f"(epoch {report.best_epoch} of {composer.meta['epochs']})")
    typer.echo(f"embedding {report.embed_seconds:.0f} s, training {report.train_seconds:.0f} s; wrote {path}")
