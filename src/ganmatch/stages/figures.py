"""Figure stage: each figure rule's job reads its tables, draws with `ganmatch.report.figures` and writes the
PDF, the PNG and the numbers drawn (Parquet)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ganmatch.analysis import embeddings
from ganmatch.analysis.retrieval import retrieval_quality_table
from ganmatch.data.dataset import with_treatment
from ganmatch.data.io import read_named_parquets, read_parquet, read_rgb, write_parquet
from ganmatch.errors import InputDataError
from ganmatch.report import figures

log = logging.getLogger("ganmatch")


def _aligned_paths(shard_tables) -> dict[str, str]:
    aligned = embeddings.aligned_images(shard_tables)
    return dict(zip(aligned["image_id"].astype(str), aligned["aligned_path"], strict=True))


def fraction_means(means: pd.DataFrame) -> pd.DataFrame:
    """The group means of covariates that are fractions: a measured covariate (e.g. paper_cache's yaw in
    degrees) with a mean outside [0, 1] would stretch the figure's 0-1 axis; the love plot shows it."""
    outside = means.loc[(means["mean"] < 0) | (means["mean"] > 1), "covariate"].unique()
    return means[~means["covariate"].isin(outside)] if len(outside) else means


def covariate_means_job(inp, out, params) -> None:
    summary = read_parquet(inp.summary) if getattr(inp, "summary", None) else None
    data = figures.covariate_means(fraction_means(read_parquet(inp.means)), out.pdf, out.png,
                                   treatment=params.treatment, summary=summary)
    write_parquet(data, out.data)


def love_plot_job(inp, out, params=None) -> None:
    write_parquet(figures.love_plot(read_parquet(inp.summary), out.pdf, out.png), out.data)


def propensity_overlap_job(inp, out, params) -> None:
    """Overlap of the score the configured `propensity` method matched on (as it wrote it while matching);
    without such a method, of a logistic regression of the treatment on the covariates. Every panel shows the
    same score."""
    index, attributes = read_parquet(inp.index), read_parquet(inp.attributes)
    treated = with_treatment(index, attributes, params.treatment).set_index("image_id")[params.treatment]
    name, spec = params.score_method or None, params.score_spec
    scores = None
    if name:
        scores = read_parquet(inp.scores[0]).set_index("image_id")["propensity"]   # the method's units table
        on = [f"{spec['embedding']} embedding"] if spec.get("embedding") else []
        on += ["covariates"] if spec.get("covariates") else []
        label = f"P(treated | {' + '.join(on)}) of matching method '{name}'"
        log.info("score: %s on %d images", label, len(scores))
    else:
        label = "P(treated | covariates), logistic regression"
    data = figures.propensity_overlap(attributes, treated, params.covariates, read_named_parquets(inp.units),
                                      out.pdf,
                                      out.png, treatment=params.treatment, scores=scores, score_label=label)
    write_parquet(data, out.data)


def matched_pairs_job(inp, out, params) -> None:
    matches = pd.concat([read_parquet(f) for f in inp.matches], ignore_index=True)
    data = figures.matched_pairs(matches, _aligned_paths(inp.aligned), out.pdf, out.png,
                                 treatment=params.treatment)
    write_parquet(data, out.data)


def distance_distributions_job(inp, out, params) -> None:
    identity = read_parquet(inp.index).set_index("image_id")["identity"]
    data = figures.distance_distributions(read_named_parquets(inp.neighbours), identity, out.pdf, out.png,
                                          thresholds=params.thresholds,
                                          matching=figures.constraint_thresholds(getattr(params, "methods",
                                                                                         {})))
    write_parquet(data, out.data)


def neighbour_quality_job(inp, out, params) -> None:
    identity = read_parquet(inp.index).set_index("image_id")["identity"]
    attributes = read_parquet(inp.attributes, columns=["image_id", *params.covariates])
    table = retrieval_quality_table(read_named_parquets(inp.neighbours), identity, attributes)
    data = figures.neighbour_quality(table, out.pdf, out.png)
    write_parquet(data, out.data)
    figures.write_csv(data, out.csv)


def projection_examples(table: pd.DataFrame, latents, aligned_paths: dict[str, str], weights: str,
                        n: int = 8) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`n` projected images spread over PSNR (worst to best): their ids, originals and re-rendered latents.

    `table`/`latents` are the concatenated latent shard tables and their latents in the same row order (an
    array, or `embeddings.StackedRows` over the memory-mapped shards, so only the chosen rows are read).
    """
    from ganmatch.gan.render import render  # torch: only this figure's job needs the generator
    from ganmatch.gan.weights import load_generator

    ok = np.flatnonzero((table["status"] == "ok").to_numpy()) if "status" in table else np.arange(len(table))
    if len(ok) == 0:
        raise InputDataError("projection_quality: no image was projected successfully.")
    pos = ok[figures.spread_positions(table["psnr"].to_numpy(float)[ok], n)]
    ids = table["image_id"].astype(str).to_numpy()[pos].tolist()
    originals = np.stack([read_rgb(aligned_paths[i]) for i in ids])
    return ids, originals, render(load_generator(weights), latents[pos])


def projection_quality_job(inp, out, params) -> None:
    tables, arrays = embeddings.latent_shards(inp.tables, inp.latents)
    table = pd.concat(tables, ignore_index=True)
    ids, originals, recons = projection_examples(table, embeddings.StackedRows(arrays),
                                                 _aligned_paths(inp.aligned),
                                                 inp.weights, n=params.n_examples)
    # generator side
    label = figures.projection_loss_label(recons.shape[1], getattr(params, "perceptual", None))
    write_parquet(figures.projection_quality(table, ids, originals, recons, out.pdf, out.png,
                                             loss_label=label),
                  out.data)


def outcomes_job(inp, out, params=None) -> None:
    """The forest plot; each method's units table gives its treated, controls and subclasses."""
    units = read_named_parquets(inp.units) if getattr(inp, "units", None) else None
    write_parquet(figures.outcomes_forest(read_parquet(inp.outcomes), out.pdf, out.png, units=units),
                  out.data)


def _balance_flag(inp, method: str) -> str:
    """The 'too few pairs (...)' status of `method` in the balance summary (`inp.summary`), else ''."""
    if not getattr(inp, "summary", None):
        return ""
    summary = read_parquet(inp.summary)
    return figures.method_flags(summary[summary["stat"] == "smd"]).get(method, "")


def released_matrices(index_path: str, matrices: dict | None) -> dict | None:
    """name -> (ids, memory-mapped DistanceMatrix) of the released matrices (source paper_cache), or None."""
    if not matrices:
        return None
    from ganmatch.analysis.matrices import DistanceMatrix, open_matrix

    index = read_parquet(index_path, columns=["image_id", "matrix_row"])
    ids = index["image_id"].to_numpy(str)
    rows = index["matrix_row"].to_numpy()
    return {name: (ids, DistanceMatrix(open_matrix(path), rows, name=name, path=path))
            for name, path in matrices.items()}


def paper_comparison_job(inp, out, params) -> None:
    """This run next to the paper's reported numbers (or the demo's planted truth): covariate means and
    nearest neighbours of the compared method."""
    from ganmatch.report import paper_comparison
    from ganmatch.stages.matching import load_embeddings

    attributes = read_parquet(inp.attributes, columns=["image_id", *params.covariates])
    means = read_parquet(inp.means)
    # the figure compares fractions: measured covariates (e.g. paper_cache's yaw, quality) stay out of it
    measured = [c for c in params.covariates if not set(pd.unique(attributes[c].dropna())) <= {0, 1}]
    means = means[~means["covariate"].isin(measured)] if measured else means
    means, nn = paper_comparison.comparison_tables(
        means, inp.reference, params.method, params.spec, read_named_parquets(inp.neighbours),
        load_embeddings(inp.embeddings), read_parquet(inp.index).set_index("image_id")["identity"],
        attributes, params.k, out.pdf, out.png,
        params.treatment, paper_path=inp.paper,
        matrices=released_matrices(inp.index, getattr(params, "matrices", None)),
        source=getattr(params, "source", "celeba_hq"), flag=_balance_flag(inp, params.method),
    )
    write_parquet(means, out.data)
    figures.write_csv(nn, out.nn)
