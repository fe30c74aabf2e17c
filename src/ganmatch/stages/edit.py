"""Edit-stage adapters (one per rule): read the job's files, call `ganmatch.gan.edits`, write the outputs."""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

from ganmatch.analysis import edit_metrics
from ganmatch.analysis.embeddings import latent_shards
from ganmatch.data.io import read_npy, read_parquet, write_npy, write_parquet
from ganmatch.gan import edits
from ganmatch.report import edit_figures

log = logging.getLogger("ganmatch")


def edit_directions_job(inp, out, params) -> None:
    """The edit_directions rule: unit directions (plain and conditional), their table and cosine matrix."""
    planted = read_parquet(inp.planted) if "planted" in inp.keys() else None
    table, array, cosines = edits.fit_directions(
        read_parquet(inp.index), read_parquet(inp.attributes), inp.tables, inp.arrays, params.treatment,
        params.covariates, params.edit, params.attributes, seed=params.seed, planted=planted)
    log.info("directions:\n%s", table.drop(columns=["intercept"]).to_string())
    write_parquet(table, out.table)
    write_npy(array, out.array)
    write_parquet(cosines, out.cosines)


def select_edit_images_job(inp, out, params) -> None:
    """The select_edit_images rule: the projected images the edit stage edits."""
    matches = {Path(f).stem: f for f in inp.matches}
    selection = edits.select_images(read_parquet(inp.index), read_parquet(inp.attributes), inp.tables,
                                    matches,
                                    params.treatment, params.images, seed=params.seed)
    log.info("editing %d images (%s)", len(selection), selection["source"].value_counts().to_dict())
    write_parquet(selection, out[0])


def edit_shard_job(inp, out, params, shard: int, threads: int | None = None) -> None:
    """The edit_shard rule: render every configured edit of the selected images of one shard."""
    Path(out.images).mkdir(parents=True, exist_ok=True)
    latents, table = edits.edit_shard(
        read_parquet(inp.selection), shard, read_parquet(inp.table), read_npy(inp.latents),
        read_parquet(inp.directions), read_npy(inp.array), inp.weights, params.edit, params.embeddings,
        out.images,
        threads=threads, image_models=params.image_models)
    log.info("%d edits rendered", len(table))
    write_npy(latents, out.latents)
    write_parquet(table, out.table)


def interpolate_latents_job(inp, out, params) -> None:
    """The interpolate_latents rule: strips between matched pairs and between two photos of one identity."""
    cfg = params.interpolation
    Path(out.images).mkdir(parents=True, exist_ok=True)
    projected = set(edits.latent_rows([read_parquet(t) for t in inp.tables], [])[0]["image_id"])
    ends = edits.interpolation_pairs({Path(f).stem: f for f in inp.matches}, read_parquet(inp.index),
                                     projected,
                                     cfg["n_pairs"], cfg["n_identities"], seed=params.seed)
    latents, table = edits.interpolate(ends, inp.tables, inp.arrays, inp.weights, cfg["steps"], out.images,
                                       batch_size=params.edit["batch_size"], device=params.edit["device"])
    log.info("%d strips", len(ends))
    write_npy(latents, out.latents)
    write_parquet(table, out.table)


def shard_of(path) -> int:
    """The shard number in a shard file's name (`.../shard_<k>.<ext>`): the edit jobs made are those of the
    shards with selected images, so the k-th input is not shard k."""
    found = re.fullmatch(r"shard_(\d+)", Path(str(path)).name.split(".")[0])
    if found is None:
        raise ValueError(f"{path}: not a shard file (shard_<k>.<ext>)")
    return int(found.group(1))


def edit_summary_job(inp, out, params) -> None:
    """The edit_summary rule: ceteris-paribus metrics of every edit (leakage, drift, truth on the demo)."""
    truth = None
    if "truth" in inp.keys():  # the demo: its planted world says what each edit truly changed
        from ganmatch.simulate import demo  # imports torch (the world renders): only for the demo's summary

        truth = functools.partial(demo.edit_truth, directions=read_parquet(inp.planted),
                                  latent_truth=json.loads(Path(inp.truth).read_text())["latent"],
                                  outcomes=params.outcomes, treatment=params.treatment)
    files = {e: (f"{inp.embeddings[2 * i]}", f"{inp.embeddings[2 * i + 1]}") for i,
             e in enumerate(params.embeddings)}
    table, leakage = edits.summarise(
        [read_parquet(f) for f in inp.edit_tables], [read_npy(f) for f in inp.edit_arrays],
        read_parquet(inp.index),
        files, params.thresholds, truth_columns=truth,
        selection_latents=edits.latent_rows(*latent_shards(inp.tables, inp.arrays)),
        shards=[shard_of(f) for f in inp.edit_tables])
    log.info("%d edits; leakage rows %d", len(table), len(leakage))
    write_parquet(table, out.edits)
    write_parquet(leakage, out.leakage)


def edit_transects_job(inp, out, params) -> None:
    """The edit_transects rule: outcomes along the treatment edit and the experimental effect with bootstrap
    CIs, beside the observational matched estimates."""
    table = read_parquet(inp.edits)
    truth = {}
    if "truth" in inp.keys():
        truth = {k: v for k, v in json.loads(Path(inp.truth).read_text()).items() if k != "latent"}
    outcomes = edit_metrics.measured_attributes(table, "outcome_before_")
    transects = edit_metrics.transects(table, params.direction, outcomes, n_boot=params.n_boot,
                                       alpha=params.alpha,
                                       random_state=params.seed, truth=truth)
    if inp.outcomes:
        transects = edit_metrics.with_observational(transects, read_parquet(inp.outcomes[0]))
    log.info("transects:\n%s", transects.to_string())
    write_parquet(transects, out[0])


def edits_figure_job(inp, out, params) -> None:
    """The figure_edits rule: a grid of edited faces."""
    data = edit_figures.edit_grid(read_parquet(inp.edits), read_parquet(inp.selection), out.pdf, out.png,
                                  treatment=params.treatment)
    write_parquet(data, out.data)


def interpolations_figure_job(inp, out, params=None) -> None:
    """The figure_interpolations rule: the interpolation strips."""
    write_parquet(edit_figures.interpolation_strips(read_parquet(inp.table), out.pdf, out.png), out.data)


def edit_leakage_figure_job(inp, out, params=None) -> None:
    """The figure_edit_leakage rule: leakage of each edit into the other attributes."""
    write_parquet(edit_figures.leakage_heatmap(read_parquet(inp.leakage), out.pdf, out.png), out.data)


def transects_figure_job(inp, out, params=None) -> None:
    """The transects figure; the edit table gives the planted truth / image models where a latent model is
    constant by construction."""
    edits = read_parquet(inp.edits) if getattr(inp, "edits", None) else None
    boot = {"n_boot": params.n_boot, "alpha": params.alpha, "random_state": params.seed} if params else {}
    write_parquet(edit_figures.transects_figure(read_parquet(inp.transects), out.pdf, out.png, edits=edits,
                                                **boot),
                  out.data)
