"""The edit stage's science over the run's files: directions fitted on the projected shards, the images to
edit, one shard's edits rendered and measured, the summary over all shards, and interpolation strips.

The latent arithmetic (directions, steps, edits, logits) is `ganmatch.gan.editing`; rendering is
`ganmatch.gan.render.render`; `ganmatch.stages.edit` only reads and writes the files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.analysis import edit_metrics
from ganmatch.analysis.embeddings import latent_shards
from ganmatch.data.dataset import with_treatment
from ganmatch.data.io import read_npy, read_parquet, write_png
from ganmatch.errors import ConfigError
from ganmatch.faces.face_attributes import predict_age_gender
from ganmatch.faces.face_embeddings import embed_images
from ganmatch.gan import editing


def edit_attributes(edit_cfg: dict, treatment: str, covariates: list[str]) -> list[str]:
    """Attributes that get a direction: edit.attributes, or the treatment and every covariate."""
    return list(edit_cfg["attributes"] or [treatment, *covariates])


def latent_rows(tables: list[pd.DataFrame], arrays: list[np.ndarray]) -> tuple[pd.DataFrame,
                                                                               list[np.ndarray]]:
    """The successfully projected images of all shards: (image_id, shard, pos) and the shard arrays."""
    parts = []
    for k, t in enumerate(tables):
        ok = np.flatnonzero((t["status"] == "ok").to_numpy())
        parts.append(pd.DataFrame({"image_id": t["image_id"].to_numpy()[ok].astype(str), "shard": k,
                                   "pos": ok}))
    return pd.concat(parts, ignore_index=True), arrays


def gather(rows: pd.DataFrame, arrays: list[np.ndarray], ids) -> np.ndarray:
    """Latents of `ids` (in that order) from the shard arrays."""
    at = rows.set_index("image_id").loc[list(map(str, ids))]
    return np.stack([arrays[s][p] for s, p in zip(at["shard"], at["pos"], strict=True)]).astype(np.float32)


def fit_directions(index: pd.DataFrame, attributes: pd.DataFrame, shard_tables: list[str],
                   shard_arrays: list[str],
                   treatment: str, covariates: list[str], edit_cfg: dict, attributes_cfg: dict, seed: int = 0,
                   planted: pd.DataFrame | None = None) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Directions table, unit directions (float32, rows as the table's `row`) and their cosine matrix.

    Labels are the attributes table's values (dataset label > prediction), the treatment as the outcome stage
    resolves it. With the demo's `planted` directions the table gets `planted_cosine`.
    """
    rows, arrays = latent_rows(*latent_shards(shard_tables, shard_arrays))
    # shard by shard, W+ averaged over layers as it is read (30,000 x 14 x 512 floats would be 0.9 GB)
    W = np.concatenate([editing.layer_mean(arrays[k][g["pos"].to_numpy()]) for k, g in rows.groupby("shard",
                                                                                                    sort=True)])
    names = edit_attributes(edit_cfg, treatment, covariates)
    resolved = with_treatment(index, attributes, treatment).astype({"image_id": str}).set_index("image_id")
    att = attributes.astype({"image_id": str}).set_index("image_id")
    labels = {}
    for name in names:
        source = att if name in att.columns else resolved
        if name not in source.columns:
            raise ConfigError(f"'edit.attributes' names '{name}', which is neither a covariate, the "
                              "treatment nor an index column.")
        labels[name] = source[name].reindex(rows["image_id"]).to_numpy(float)
    conditionals = {t: list(c) for t, c in edit_cfg["conditional"].items()}
    table, array = editing.fit_directions(W, pd.DataFrame(labels), conditionals,
                                          min_positives=edit_cfg["min_positives"],
                                         C=attributes_cfg["C"], cv_folds=attributes_cfg["cv_folds"],
                                         random_state=seed)
    if planted is not None:
        table["planted_cosine"] = editing.planted_cosines(table, array, planted)
    return table, array, editing.cosine_matrix(table, array)


def select_images(index: pd.DataFrame, attributes: pd.DataFrame, shard_tables: list[str],
                  match_files: dict[str, str],
                  treatment: str, spec: dict, seed: int = 0) -> pd.DataFrame:
    """The images to edit (image_id, treated, source, shard): listed ids, `per_group` random ones of each
    group, and the first `max_pairs` pairs (closest first) of each named matching method; only successfully
    projected ones."""
    rows, _ = latent_rows([read_parquet(p) for p in shard_tables], [])
    treated = with_treatment(index, attributes,
                             treatment).astype({"image_id": str}).set_index("image_id")[treatment]
    rows = rows[rows["image_id"].isin(treated.index)]
    chosen = []
    missing = [i for i in map(str, spec["ids"]) if i not in set(rows["image_id"])]
    if missing:
        raise ConfigError(f"'edit.images.ids': {len(missing)} id(s) are not projected images, e.g. "
                          f"{missing[:5]}; "
                          "use image ids of results/<dataset>/images.parquet whose projection succeeded.")
    chosen += [(i, "ids") for i in map(str, spec["ids"])]
    rng = np.random.default_rng(seed)
    for group in (1, 0):
        ids = rows["image_id"][rows["image_id"].map(treated).to_numpy() == group].to_numpy()
        take = rng.permutation(len(ids))[: int(spec["per_group"])]
        chosen += [(i, "per_group") for i in sorted(ids[take])]
    for method, path in match_files.items():
        pairs = read_parquet(path).sort_values("distance", kind="stable").head(int(spec["max_pairs"]))
        for t, c in zip(pairs["treated_id"].astype(str), pairs["control_id"].astype(str), strict=True):
            chosen += [(t, method), (c, method)]
    out = pd.DataFrame(chosen, columns=["image_id",
                                        "source"]).drop_duplicates("image_id").reset_index(drop=True)
    out = out[out["image_id"].isin(rows["image_id"])].reset_index(drop=True)
    out.insert(1, treatment, out["image_id"].map(treated).astype(int))
    out["shard"] = out["image_id"].map(rows.set_index("image_id")["shard"]).astype(int)
    return out


def slug(direction: str) -> str:
    """A file-name-safe form of a direction id (`male|young,smiling` -> `male_given_young_smiling`)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", direction.replace("|", "_given_").replace(",", "_"))


def embedding_drift(spec: dict, original, edited, images_orig: np.ndarray, images_edit: np.ndarray,
                    n_per: int) -> np.ndarray:
    """Distance from each original to each of its `n_per` edits in one embedding (latent: in the latent
    itself)."""
    if spec["kind"] == "latent":
        a, b = original.reshape(len(original), -1), edited.reshape(len(edited), -1)
    else:
        a, b = embed_images(spec["kind"], images_orig, **spec), embed_images(spec["kind"], images_edit,
                                                                             **spec)
    return np.linalg.norm(np.repeat(a, n_per, axis=0).astype(np.float64) - b, axis=1)


def image_predictions(images: np.ndarray, young_below: float) -> pd.DataFrame:
    """What the shipped image models (gender, age; photo and mirror averaged) read off rendered faces:
    `male` = P(male), `young` = P(age < young_below), `age` in years."""
    ag = predict_age_gender(list(images), age_below=young_below)
    return pd.DataFrame({"male": ag["gender_male_prob"].to_numpy(), "young": ag["age_below_prob"].to_numpy(),
                         "age": ag["age"].to_numpy()})


def image_model_columns(originals: np.ndarray, renders: np.ndarray, n_per: int, young_below: float) -> dict:
    """Leakage re-predicted on the rendered faces by the image models: per measured attribute the change from
    the rendered original to each edit (`image_delta_<a>`: probability points, years for age) and whether the
    predicted class flipped (`image_flip_<a>`; age: crossing `young_below`)."""
    before = image_predictions(originals, young_below)
    after = image_predictions(renders, young_below)
    rep = before.loc[np.repeat(np.arange(len(before)), n_per)].reset_index(drop=True)
    cut = {"male": 0.5, "young": 0.5, "age": young_below}
    cols = {}
    for a in before.columns:
        cols[f"image_delta_{a}"] = (after[a] - rep[a]).to_numpy(np.float32)
        cols[f"image_flip_{a}"] = ((after[a] > cut[a]) != (rep[a] > cut[a])).to_numpy()
    return cols


def edit_shard(selection: pd.DataFrame, shard: int, latent_table: pd.DataFrame, latents: np.ndarray,
               directions: pd.DataFrame, array: np.ndarray, weights: str, edit_cfg: dict, embeddings: dict,
               image_dir: str, threads: int | None = None, image_models: float | None = None
               ) -> tuple[np.ndarray, pd.DataFrame]:
    """Edit this shard's selected images along every fitted direction at every strength; render them to PNGs.

    Returns the edited latents (rows = table rows) and the edit table: image_id, direction, attribute,
    conditional_on, conditional, strength, step (W units), path (PNG), score_before/after (the target model's
    logit), then per plain attribute `delta_<a>` (score change in SDs of its score) and `flip_<a>` (predicted
    class changed), and per embedding `drift_<e>` (distance of the rendered edit from the rendered original).
    With `image_models` (the face attribute models' young_below, on real photos) also `image_delta_<a>` /
    `image_flip_<a>`: leakage re-predicted on the rendered faces by the image attribute models
    (`image_model_columns`).
    """
    strengths = [float(s) for s in edit_cfg["strengths"]]
    kept = directions[directions["row"] >= 0].reset_index(drop=True)
    dirs = array[kept["row"].to_numpy()]
    ids = selection.loc[selection["shard"] == shard, "image_id"].astype(str)
    ok = latent_table[(latent_table["status"] == "ok") & latent_table["image_id"].astype(str).isin(ids)]
    W = np.asarray(latents)[ok.index.to_numpy()].astype(np.float32)
    ids = ok["image_id"].astype(str).to_numpy()
    n, nd, ns = len(W), len(kept), len(strengths)
    if n == 0 or nd == 0:
        shape = (0, *np.asarray(latents).shape[1:])
        return np.zeros(shape, np.float32), pd.DataFrame(columns=["image_id", "direction", "strength",
                                                                  "path"])
    # torch and the generator only for the shards with selected images: at 30,000 photos most of the 300
    # shard jobs have none, and importing torch was most of their time
    import torch

    from ganmatch.gan.render import render
    from ganmatch.gan.weights import load_generator

    if threads:
        torch.set_num_threads(threads)
    scores = editing.layer_mean(W).astype(np.float64) @ dirs.T.astype(np.float64)
    steps = editing.edit_steps(kept, strengths, scores, bound=bool(edit_cfg["bound"]))
    edited = editing.apply_edits(W, dirs, steps).reshape(n * nd * ns, *W.shape[1:])
    generator = load_generator(weights)
    images = render(generator, np.concatenate([W, edited]), edit_cfg["batch_size"], edit_cfg["device"])
    originals, renders = images[:n], images[n:]
    table = pd.DataFrame({
        "image_id": np.repeat(ids, nd * ns),
        "direction": np.tile(np.repeat(kept["direction"].to_numpy(), ns), n),
        "attribute": np.tile(np.repeat(kept["attribute"].to_numpy(), ns), n),
        "conditional_on": np.tile(np.repeat(kept["conditional_on"].to_numpy(), ns), n),
        "conditional": np.tile(np.repeat(kept["conditional_on"].to_numpy() != "", ns), n),
        "strength": np.tile(strengths, n * nd),
        "step": steps.reshape(-1),
    })
    table["path"] = [os.path.join(image_dir, i, f"{slug(d)}_{k}.png")
                     for i, d, k in zip(table["image_id"], table["direction"], np.tile(np.arange(ns), n * nd),
                                        strict=True)]
    for i, img in zip(ids, originals, strict=True):
        write_png(img, os.path.join(image_dir, i, "original.png"))
    for path, img in zip(table["path"], renders, strict=True):
        write_png(img, path)
    before, after = editing.logits(W, directions, array), editing.logits(edited, directions, array)
    before_rep = before.loc[np.repeat(np.arange(n), nd * ns)].reset_index(drop=True)
    target = table["attribute"].to_numpy()
    table["score_before"] = [before_rep.at[j, a] if a in before_rep else np.nan for j, a in enumerate(target)]
    table["score_after"] = [after.at[j, a] if a in after else np.nan for j, a in enumerate(target)]
    sd = directions.set_index("direction")["score_sd"]
    norm = directions.set_index("direction")["norm"]
    for a in before.columns:
        table[f"delta_{a}"] = ((after[a] - before_rep[a]) / (norm[a] * sd[a])).astype(np.float32)
        table[f"flip_{a}"] = (after[a] > 0) != (before_rep[a] > 0)
    for a in before.columns:  # outcomes a transect can follow: each latent model's probability
        table[f"outcome_before_p_{a}"] = (1 / (1 + np.exp(-before_rep[a]))).astype(np.float32)
        table[f"outcome_p_{a}"] = (1 / (1 + np.exp(-after[a]))).astype(np.float32)
    for name, spec in embeddings.items():
        table[f"drift_{name}"] = embedding_drift(spec, W, edited, originals, renders,
                                                 nd * ns).astype(np.float32)
    if image_models is not None:
        for col, values in image_model_columns(originals, renders, nd * ns, image_models).items():
            table[col] = values
    return edited, table


def summarise(tables: list[pd.DataFrame], arrays: list[np.ndarray], index: pd.DataFrame,
              embedding_files: dict,
              thresholds: dict, truth_columns: Callable[[np.ndarray, np.ndarray], dict] | None = None,
              selection_latents: tuple[pd.DataFrame, list[np.ndarray]] | None = None,
              shards: list[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All edits in one table with identity drift over each embedding's same-person threshold
    (`drift_<e>_ratio`), the outcomes evaluated on the edited latents (`outcome_<o>`, `outcome_before_<o>`:
    the latent models' probabilities `p_<a>`, each face recogniser's distance to the original `verify_<e>`),
    and the leakage table.

    `truth_columns(originals, edited)` (a world whose truth is a function of the latent: the demo's
    `ganmatch.simulate.demo.edit_truth`) adds its columns, e.g. the planted outcome and `true_delta_<a>`;
    `selection_latents` (rows, arrays of `latent_rows`) give the originals' latents for it. `shards`: the
    projection shard of each table (default 0, 1, ...; the pipeline edits only shards with selected images).
    """
    parts, lat = [], []
    shards = list(range(len(tables))) if shards is None else [int(k) for k in shards]
    for k, t, a in zip(shards, tables, arrays, strict=True):
        if len(t):
            parts.append(t.assign(shard=k, pos=np.arange(len(t))))
            lat.append(np.asarray(a))
    if not parts:
        return pd.DataFrame(), edit_metrics.leakage_table(pd.DataFrame(columns=["direction", "attribute",
                                                                                "conditional_on",
                                                                                "strength"]))
    edits = pd.concat(parts, ignore_index=True)
    edited = np.concatenate(lat)
    identity = index.astype({"image_id": str}).set_index("image_id")["identity"]
    for name, (npy, ids) in embedding_files.items():
        if f"drift_{name}" not in edits:
            continue
        X = read_npy(npy)
        rows = read_parquet(ids)["image_id"].astype(str)
        limit = thresholds.get(name) or edit_metrics.same_person_threshold(X, rows.map(identity).to_numpy())
        edits[f"drift_{name}_threshold"] = np.float32(limit)
        edits[f"drift_{name}_ratio"] = (edits[f"drift_{name}"] / limit).astype(np.float32)
        # a face recogniser: its verification distance to the original is a transect outcome
        if name in thresholds:
            edits[f"outcome_before_verify_{name}"] = np.float32(0.0)
            edits[f"outcome_verify_{name}"] = edits[f"drift_{name}"].astype(np.float32)
    if truth_columns is not None:
        W0 = gather(*selection_latents, edits["image_id"])
        for column, values in truth_columns(W0, edited).items():
            edits[column] = values
    return edits, edit_metrics.leakage_table(edits)


def interpolation_pairs(match_files: dict[str, str], index: pd.DataFrame, projected: set, n_pairs: int,
                        n_identities: int, seed: int = 0) -> pd.DataFrame:
    """Endpoints of the strips: each method's first `n_pairs` (closest) treated/control pairs, and two photos
    of each of `n_identities` random identities (kind `identity`)."""
    rows = []
    for method, path in match_files.items():
        pairs = read_parquet(path).sort_values("distance", kind="stable")
        both = (pairs["treated_id"].astype(str).isin(projected)
                & pairs["control_id"].astype(str).isin(projected))
        pairs = pairs[both]
        for t, c in zip(
            pairs["treated_id"].astype(str)[:n_pairs], pairs["control_id"].astype(str)[:n_pairs], strict=True
        ):
            rows.append({"kind": "matched", "method": method, "start_id": t, "end_id": c})
    people = (
        index[index["image_id"].astype(str).isin(projected)]
        .groupby("identity")["image_id"]
        .apply(lambda s: sorted(map(str, s)))
    )
    people = people[people.map(len) >= 2]
    rng = np.random.default_rng(seed)
    for ident in sorted(people.index[rng.permutation(len(people))[:n_identities]]):
        rows.append(
            {"kind": "identity", "method": "", "start_id": people[ident][0], "end_id": people[ident][1]}
        )
    return pd.DataFrame(rows, columns=["kind", "method", "start_id", "end_id"])


def interpolate(
    ends: pd.DataFrame,
    shard_tables: list[str],
    shard_arrays: list[str],
    weights: str,
    steps: int,
    image_dir: str,
    batch_size: int = 32,
    device: str = "auto",
) -> tuple[np.ndarray, pd.DataFrame]:
    """Render each strip (start latent to end latent in `steps` steps); one PNG per strip, one table row per
    step."""
    from ganmatch.gan.render import render  # torch: only for the jobs that render
    from ganmatch.gan.weights import load_generator

    rows, arrays = latent_rows(*latent_shards(shard_tables, shard_arrays))
    if not len(ends):
        return np.zeros((0, *arrays[0].shape[1:]), np.float32), pd.DataFrame(
            columns=["strip", "kind", "method", "start_id", "end_id", "step", "alpha", "path"]
        )
    lat = editing.interpolate(
        gather(rows, arrays, ends["start_id"]), gather(rows, arrays, ends["end_id"]), steps
    )
    flat = lat.reshape(len(ends) * steps, *lat.shape[2:])
    images = render(load_generator(weights), flat, batch_size, device)
    images = images.reshape(len(ends), steps, *images.shape[1:])
    table = ends.loc[np.repeat(np.arange(len(ends)), steps)].reset_index(drop=True)
    table.insert(0, "strip", np.repeat(np.arange(len(ends)), steps))
    table["step"] = np.tile(np.arange(steps), len(ends))
    table["alpha"] = np.tile(np.linspace(0.0, 1.0, steps), len(ends)).astype(np.float32)
    table["path"] = [os.path.join(image_dir, f"strip_{s:03d}.png") for s in table["strip"]]
    for s in range(len(ends)):
        gap = np.full((images.shape[2], 2, 3), 255, np.uint8)
        tiles = [t for img in images[s] for t in (img, gap)][:-1]
        write_png(np.concatenate(tiles, axis=1), Path(image_dir) / f"strip_{s:03d}.png")
    return flat, table
