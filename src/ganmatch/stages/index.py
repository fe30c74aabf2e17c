"""Build the image index (the checkpoint that fixes the shards) for any source, checked and sharded."""

from __future__ import annotations

import logging

import pandas as pd

from ganmatch.data import dataset
from ganmatch.data.io import read_parquet

log = logging.getLogger("ganmatch")


REJECTED_COLUMNS = ["file", "path", "reason"]


def image_index(source: str, treatment: str, covariates: list[str], shard_size: int, spec: dict,
                labels: str | None = None, images: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(index, rejected): the demo's labels and photos, a folder of the user's photos (+ labels CSV), or
    CelebA-HQ; and the files the index leaves out with their reasons (a folder's unsupported files, e.g. an
    animated GIF, and duplicate photos under `folder.duplicates: drop`).

    `spec` is what defines the index of the source: {} (demo), {folder, allow_unmatched}, {celeba_hq, seed} or
    {paper_cache, seed} (the reference study's released annotations: one row per released matrix row).
    Errors name the user's own file (the labels CSV or the folder), never the derived index.
    """
    rejected = pd.DataFrame(columns=REJECTED_COLUMNS)
    if source == "demo":
        index, where = dataset.demo_index(read_parquet(labels), images), labels
    elif source == "folder":
        folder = spec["folder"]
        index = dataset.folder_index(folder["path"], folder["labels"], [treatment, *covariates],
                                     allow_unmatched=spec["allow_unmatched"])
        where = folder["labels"] or folder["path"]
        index, copies, groups = dataset.resolve_duplicates(index, folder["duplicates"])
        if groups:
            listed = "; ".join(" = ".join(g) for g in groups[:20]) + (" ..." if len(groups) > 20 else "")
            log.warning("photo folder %s: %d photo(s) appear under several names (same pixels): %s. %s",
                        folder["path"], sum(len(g) - 1 for g in groups), listed,
                        "The copies are left out (folder.duplicates: drop)." if folder["duplicates"] == "drop"
                        else "Each copy takes its first file's identity (folder.duplicates: identity).")
        unsupported = dataset.unsupported_files(folder["path"], folder["labels"])
        for row in unsupported.itertuples():
            log.warning("photo folder: %s is left out: %s", row.file, row.reason)
        rejected = pd.concat([df for df in (copies, unsupported) if len(df)] or [rejected], ignore_index=True)
    elif source == "paper_cache":
        from ganmatch.data import paper_cache

        cfg = spec["paper_cache"]
        where = cfg["annotations"]
        index = paper_cache.paper_index(paper_cache.read_annotations(where), treatment,
                                        cfg["treatment_column"], covariates, cfg["test_fraction"],
                                        spec["seed"], where=where)
        dataset.check_index(index, treatment, covariates, source=where, numeric=cfg["metrics"])
        return dataset.assign_shards(index, shard_size), rejected[REJECTED_COLUMNS].astype(str)
    else:
        from ganmatch.data.celeba import celeba_hq_index

        index = celeba_hq_index(spec["celeba_hq"], treatment, covariates, spec["seed"])
        where = "the CelebA-HQ index (celeba_hq block)"
    dataset.check_index(index, treatment, covariates, source=str(where),
                        # photos: the attributes stage predicts missing labels
                        partial_labels=source == "folder")
    return dataset.assign_shards(index, shard_size), rejected[REJECTED_COLUMNS].astype(str)


def index_images_job(inp, out, params) -> None:
    """The index_images checkpoint: the checked, sharded image index, and the files it leaves out with why."""
    from ganmatch.data.io import write_parquet

    index, rejected = image_index(params.source, params.treatment, params.covariates, params.shard_size,
                                  params.spec,
                                  labels=inp.get("labels"), images=inp.get("images"))
    log.info("%d images in %d shards; %d file(s) left out", len(index), index["shard"].max() + 1,
             len(rejected))
    write_parquet(rejected, out.rejected)
    write_parquet(index, out.index)
