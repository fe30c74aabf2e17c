"""Run one configured matching method on the embeddings and attributes of the accepted images: its pairs and
its units table (every image's weight, subclass, discarded flag and scalar distance, as MatchIt's output),
which balance, outcomes and the overlap figure read."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.data.dataset import with_treatment
from ganmatch.data.io import read_embedding, read_parquet, write_parquet
from ganmatch.errors import InputDataError
from ganmatch.matching import MatchData, MatchResult, match

log = logging.getLogger("ganmatch")


def load_embeddings(files: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pairs of (<name>.npy, <name>.parquet) -> {name: (ids, X)}."""
    return {
        Path(npy).stem: read_embedding(npy)
        for npy in sorted(f for f in map(str, files) if f.endswith(".npy"))
    }


def run_method(
    name: str,
    spec: dict,
    index: pd.DataFrame,
    attributes: pd.DataFrame,
    embedding_files: list[str],
    treatment: str,
    seed: int = 0,
    matrices: dict[str, str] | None = None,
) -> MatchResult:
    """Restrict to images present in every embedding and the attributes table, then call `match`. `matrices`
    (embedding name -> released distance matrix, source paper_cache) are memory-mapped, never loaded."""
    matrices = matrices or {}
    embeddings = load_embeddings([f for f in map(str, embedding_files) if f not in set(matrices.values())])
    ids = attributes["image_id"].to_numpy(str)
    if spec["method"] == "greedy_constrained":
        check_constrained_inputs(name, spec, index, embeddings, ids)
    for emb_ids, _ in embeddings.values():
        ids = ids[np.isin(ids, emb_ids)]
    if len(ids) == 0:
        raise InputDataError(
            f"matching '{name}': no image has every embedding it needs ({', '.join(embeddings)})."
        )
    rows = with_treatment(index, attributes, treatment).set_index("image_id").loc[ids]
    aligned = {}
    for emb, (emb_ids, X) in embeddings.items():
        pos = pd.Series(np.arange(len(emb_ids)), index=emb_ids).loc[ids].to_numpy()
        aligned[emb] = np.asarray(X[pos], np.float32)
    if matrices:
        from ganmatch.analysis.matrices import DistanceMatrix, open_matrix

        rows_of = index.astype({"image_id": str}).set_index("image_id")["matrix_row"].loc[ids]
        rows_of = rows_of.to_numpy(np.int64)
        for emb, path in matrices.items():
            aligned[emb] = DistanceMatrix(open_matrix(path), rows_of, name=emb, path=path)
    data = MatchData(
        ids=ids,
        treated=rows[treatment].to_numpy(int),
        embeddings=aligned,
        identity=rows["identity"].astype(str).to_numpy(),
        covariates=attributes.set_index("image_id").loc[ids].reset_index(),
    )
    params = {k: v for k, v in spec.items() if k != "method"}
    params.setdefault("random_state", seed)  # a method's own random_state (e.g. the paper's 42) wins
    result = match(spec["method"], data, **params)
    flag_same_identity(result.pairs, data, name)
    result.pairs["method"] = name
    result.pairs["embedding"] = spec.get("embedding") or ""
    result.units.insert(1, "method", name)
    return result


def flag_same_identity(pairs: pd.DataFrame, data: MatchData, name: str) -> None:
    """Add `same_identity` (both photos show one person); warn when any pair does (identities.mixed_treatment:
    allow)."""
    identity = pd.Series(data.identity, index=data.ids)
    same = (
        identity.reindex(pairs["treated_id"].astype(str)).to_numpy()
        == identity.reindex(pairs["control_id"].astype(str)).to_numpy()
    )
    pairs["same_identity"] = same.astype(bool)
    if same.any():
        log.warning(
            "matching '%s': %d pairs match two photos of one identity (allowed by "
            "identities.mixed_treatment: "
            "allow; flagged same_identity).",
            name,
            int(same.sum()),
        )


def check_constrained_inputs(
    name: str, spec: dict, index: pd.DataFrame, embeddings: dict, ids: np.ndarray
) -> None:
    """greedy_constrained chooses references among each person's photos: an identity column is required, and
    a reference embedding missing for images the match embedding has would silently change who is
    selectable and which photo is a reference, so it is an error rather than a quiet drop."""
    if "identity" not in index.columns:
        raise InputDataError(
            f"matching '{name}' (greedy_constrained): the image index has no 'identity' "
            "column; "
            "give the dataset identities or use another matching method."
        )
    ref = spec.get("reference_embedding")
    if ref is None or ref not in embeddings or spec.get("embedding") not in embeddings:
        return
    have = ids[np.isin(ids, embeddings[spec["embedding"]][0])]
    missing = have[~np.isin(have, embeddings[ref][0])]
    if len(missing):
        raise InputDataError(
            f"matching '{name}': the reference embedding '{ref}' (key "
            f"matching.methods.{name}."
            f"reference_embedding) is missing for {len(missing)} image(s) that have "
            f"'{spec['embedding']}' (first: {missing[:3].tolist()}); recompute "
            f"embeddings/{ref} "
            "or choose a reference embedding every image has."
        )


def match_groups_job(inp, out, params, method: str) -> None:
    """The match_groups rule: one configured method's pairs and units tables."""
    result = run_method(
        name=method,
        spec=params.spec,
        index=read_parquet(inp.index),
        attributes=read_parquet(inp.attributes),
        embedding_files=inp.embeddings,
        treatment=params.treatment,
        seed=params.seed,
        matrices=getattr(params, "matrices", None),
    )
    log.info("%s: %s", method, result.info)
    write_parquet(result.pairs, out.pairs)
    write_parquet(result.units, out.units)
