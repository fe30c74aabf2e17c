"""Counterfactual edits in W: attribute directions (plain and conditional), edited latents and interpolations.

A direction is the unit normal of a latent linear attribute model (InterFaceGAN); a conditional direction has
the chosen attributes' directions projected out, so moving along it leaves their scores unchanged. An edit
moves a latent by `strength` standard deviations of the data's score along the direction (score = w .
direction). In W+ one shared direction is fitted on the layer mean and added to every layer (see
docs/architecture.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.analysis.attributes import LatentAttributeModel, conditional_direction
from ganmatch.errors import InputDataError

DIRECTION_COLUMNS = ["direction", "attribute", "conditional_on", "cv_accuracy", "norm", "n_positive",
                     "n_negative",
                     "skipped", "row", "intercept", "score_mean", "score_sd", "score_min", "score_max"]


def direction_id(attribute: str, conditional_on: list[str] | tuple = ()) -> str:
    """`male` for a plain direction, `male|young,smiling` for one with those attributes projected out."""
    return f"{attribute}|{','.join(conditional_on)}" if conditional_on else attribute


def layer_mean(latents: np.ndarray) -> np.ndarray:
    """(n, w_dim) W latents as they are; (n, n_latent, w_dim) W+ latents averaged over layers."""
    latents = np.asarray(latents, np.float32)
    return latents.mean(axis=1) if latents.ndim == 3 else latents


def fit_directions(W: np.ndarray, labels: pd.DataFrame, conditionals: dict[str, list[str]] | None = None,
                   min_positives: int = 10, C: float = 1.0, cv_folds: int = 5,
                   random_state: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Fit one direction per column of `labels` (0/1, NaN unknown) and the conditional ones; table + unit
    array.

    The models are logistic regressions on W scaled by one number (geometry kept, see `IsotropicScaler`).

    An attribute with fewer than `min_positives` positives (or negatives) is a row with its `skipped` reason
    and `row == -1`; a conditional direction whose target or conditions were skipped is skipped too. `norm` is
    the classifier normal's length in W (its logit is `norm * score + intercept`); for a conditional direction
    it is the length left after projecting out the conditions (1 = already orthogonal, near 0 = almost
    collinear). Score statistics (`score_*`) are of `W @ direction` over all rows: an edit of strength s moves
    s * score_sd.
    """
    W = layer_mean(W)
    if not np.isfinite(W).all():
        raise InputDataError("edit directions: the latents have NaN or inf values; check the projection "
                             "shard tables.")
    rows, vectors, fitted = [], [], {}
    usable = {}
    for name in labels.columns:
        y = labels[name].to_numpy(float)
        known = ~np.isnan(y)
        pos, neg = int((y[known] == 1).sum()), int((y[known] == 0).sum())
        reason = ""
        if min(pos, neg) < min_positives:
            fewer = "positives" if pos < neg else "negatives"
            reason = f"{min(pos, neg)} {fewer} (< edit.min_positives = {min_positives})"
        rows.append(
            {
                "direction": name,
                "attribute": name,
                "conditional_on": "",
                "n_positive": pos,
                "n_negative": neg,
                "skipped": reason,
            }
        )
        if not reason:
            usable[name] = y
    if usable:
        model = LatentAttributeModel(C=C, cv_folds=cv_folds, random_state=random_state, isotropic=True)
        model.fit(W, pd.DataFrame(usable))
        accuracy = model.cv_table_.set_index("attribute")["cv_accuracy"]
        for name, pipe in model.models_.items():
            scaler, clf = pipe[0], pipe[1]
            normal = clf.coef_[0] / scaler.scale_
            intercept = float(clf.intercept_[0] - normal @ scaler.mean_)
            fitted[name] = model.directions_[name].astype(np.float64)
            row = next(r for r in rows if r["direction"] == name)
            row.update(
                cv_accuracy=float(accuracy[name]), norm=float(np.linalg.norm(normal)), intercept=intercept
            )
    for target, condition in (conditionals or {}).items():
        condition = [c for c in condition if c != target]
        missing = [a for a in [target, *condition] if a not in fitted]
        row = {
            "direction": direction_id(target, condition),
            "attribute": target,
            "conditional_on": ",".join(condition),
            "n_positive": next((r["n_positive"] for r in rows if r["direction"] == target), 0),
            "n_negative": next((r["n_negative"] for r in rows if r["direction"] == target), 0),
            "skipped": "",
        }
        if missing:
            row["skipped"] = f"no direction for {', '.join(missing)}"
        else:
            basis = np.stack([fitted[c] for c in condition], axis=1)
            q, _ = np.linalg.qr(basis)
            residual = fitted[target] - q @ (q.T @ fitted[target])
            row["norm"] = float(np.linalg.norm(residual))
            if row["norm"] < 1e-3:
                row["skipped"] = f"its direction lies in the span of {', '.join(condition)}"
            else:
                fitted[row["direction"]] = conditional_direction(fitted, target, condition).astype(np.float64)
                base = next(r for r in rows if r["direction"] == target)
                row["cv_accuracy"] = base.get("cv_accuracy")
        rows.append(row)
    for row in rows:
        if row["skipped"]:
            row["row"] = -1
            continue
        d = fitted[row["direction"]]
        row["row"] = len(vectors)
        vectors.append(d)
        score = W.astype(np.float64) @ d
        row.update(
            score_mean=float(score.mean()),
            score_sd=float(score.std()),
            score_min=float(score.min()),
            score_max=float(score.max()),
        )
    table = pd.DataFrame(rows).reindex(columns=DIRECTION_COLUMNS)
    table = table.astype({"n_positive": int, "n_negative": int, "row": int, "skipped": str})
    w_dim = W.shape[1]
    array = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, w_dim), np.float32)
    return table, array


def cosine_matrix(table: pd.DataFrame, array: np.ndarray) -> pd.DataFrame:
    """Cosines between every pair of fitted directions: a `direction` column, then one column per
    direction."""
    kept = table[table["row"] >= 0]
    vecs = array[kept["row"].to_numpy()].astype(np.float64)
    cos = vecs @ vecs.T if len(vecs) else np.zeros((0, 0))
    out = pd.DataFrame(cos.astype(np.float32), columns=kept["direction"].tolist())
    out.insert(0, "direction", kept["direction"].tolist())
    return out


def planted_cosines(table: pd.DataFrame, array: np.ndarray, planted: pd.DataFrame) -> np.ndarray:
    """|cos| of each fitted direction with the planted direction of its attribute (demo truth; NaN
    elsewhere)."""
    truth = planted.set_index("attribute")
    out = np.full(len(table), np.nan)
    for i, r in enumerate(table.itertuples()):
        if r.row >= 0 and r.attribute in truth.index:
            p = truth.loc[r.attribute].to_numpy(np.float64)
            out[i] = float(array[r.row] @ p / np.linalg.norm(p))
    return out


def edit_steps(
    table: pd.DataFrame, strengths, scores: np.ndarray | None = None, bound: bool = False
) -> np.ndarray:
    """Step in W units along each direction (rows of `table`) for each strength, (n_dirs, n_strengths) or with
    per-image `scores` (n_images, n_dirs) and `bound`, (n_images, n_dirs, n_strengths) clipped so that
    score + step stays within [score_min, score_max] of the data."""
    sd = table["score_sd"].to_numpy(np.float64)
    steps = np.asarray(strengths, np.float64)[None, :] * sd[:, None]
    if scores is None or not bound:
        return steps if scores is None else np.broadcast_to(steps, (len(scores), *steps.shape)).copy()
    lo = table["score_min"].to_numpy(np.float64)[None, :, None] - scores[:, :, None]
    hi = table["score_max"].to_numpy(np.float64)[None, :, None] - scores[:, :, None]
    return np.clip(steps[None], np.minimum(lo, 0.0), np.maximum(hi, 0.0))


def apply_edits(latents: np.ndarray, directions: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Edited latents (n_images, n_dirs, n_strengths, *latent shape): latent + step * direction (every W+
    layer).

    `steps` is (n_dirs, n_strengths) or per image (n_images, n_dirs, n_strengths).
    """
    latents = np.asarray(latents, np.float32)
    if steps.ndim == 2:
        steps = np.broadcast_to(steps, (len(latents), *steps.shape))
    move = steps[..., None] * directions[None, :, None, :]  # (n, d, s, w_dim)
    if latents.ndim == 3:  # W+: the same move on every layer
        move = move[:, :, :, None, :]
        return (latents[:, None, None] + move).astype(np.float32)
    return (latents[:, None, None, :] + move).astype(np.float32)


def logits(W: np.ndarray, table: pd.DataFrame, array: np.ndarray) -> pd.DataFrame:
    """Each plain attribute model's logit (norm * score + intercept) of W (layer-averaged if W+)."""
    W = layer_mean(W).astype(np.float64)
    plain = table[(table["row"] >= 0) & (table["conditional_on"] == "")]
    return pd.DataFrame({r.attribute: r.norm * (W @ array[r.row]) + r.intercept for r in plain.itertuples()})


def interpolate(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """Linear interpolations (n, steps, *latent shape) from each start latent to its end latent, ends
    included."""
    alpha = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape(1, steps, *([1] * (start.ndim - 1)))
    return ((1 - alpha) * start[:, None] + alpha * end[:, None]).astype(np.float32)
