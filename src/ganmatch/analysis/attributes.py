"""Latent-space linear attribute models (InterFaceGAN-style) and the attributes table used for balance.

One logistic regression per attribute on an embedding; its unit normal is the attribute's editing direction.
Dataset labels, where present, take precedence over predictions in the attributes table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ganmatch.errors import InputDataError


class IsotropicScaler(TransformerMixin, BaseEstimator):
    """Centre, then divide every coordinate by one scale (the RMS spread): keeps the latent space's geometry,
    so a classifier's normal is a direction in W, not in a per-coordinate rescaled space."""

    def fit(self, X, y=None):
        X = np.asarray(X, np.float64)
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.full(X.shape[1], float(np.sqrt(((X - self.mean_) ** 2).mean())) or 1.0)
        return self

    def transform(self, X):
        return (np.asarray(X, np.float64) - self.mean_) / self.scale_


class LatentAttributeModel:
    """One linear classifier per attribute on an embedding; `directions_` holds their unit normals.

    `isotropic=True` scales all coordinates by one number (for editing directions: per-coordinate
    standardising tilts the normal away from the attribute's direction in W, e.g. cosine 0.84 instead of 0.99
    on the demo).
    """

    def __init__(self, C: float = 1.0, cv_folds: int = 5, random_state: int = 0, isotropic: bool = False):
        self.C = C
        self.cv_folds = cv_folds
        self.random_state = random_state
        self.isotropic = isotropic

    def _make(self):
        scaler = IsotropicScaler() if self.isotropic else StandardScaler()
        return make_pipeline(scaler, LogisticRegression(C=self.C, max_iter=2000))

    def fit(self, X: np.ndarray, labels: pd.DataFrame) -> LatentAttributeModel:
        """Fit every column of `labels` (0/1, NaN = unlabelled) on rows of X; record CV accuracy."""
        if not np.isfinite(X).all():
            raise InputDataError("attribute model: the embedding has NaN or inf values; check the projection "
                                 "shard tables.")
        self.models_, self.directions_, rows = {}, {}, []
        for name in labels.columns:
            y = labels[name].to_numpy()
            known = ~pd.isna(y)
            yk = y[known].astype(int)
            if len(np.unique(yk)) < 2:
                rows.append({"attribute": name, "n_labelled": int(known.sum()), "cv_accuracy": np.nan,
                             "base_rate": float(yk.mean()) if len(yk) else np.nan})
                continue
            folds = min(self.cv_folds, int(np.bincount(yk).min()))
            acc = np.nan
            if folds >= 2:
                cv = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
                acc = float(cross_val_score(self._make(), X[known], yk, cv=cv).mean())
            model = self._make().fit(X[known], yk)
            self.models_[name] = model
            scaler, clf = model[0], model[1]
            normal = clf.coef_[0] / scaler.scale_
            self.directions_[name] = (normal / np.linalg.norm(normal)).astype(np.float32)
            rows.append({"attribute": name, "n_labelled": int(known.sum()), "cv_accuracy": acc,
                         "base_rate": float(yk.mean())})
        self.cv_table_ = pd.DataFrame(rows)
        return self

    def predict_proba(self, X: np.ndarray) -> pd.DataFrame:
        """Predicted probability of each fitted attribute, one column per attribute."""
        return pd.DataFrame({name: m.predict_proba(X)[:, 1] for name, m in self.models_.items()})


def conditional_direction(directions: dict[str, np.ndarray], target: str, condition: list[str]) -> np.ndarray:
    """Unit direction of `target` with the `condition` attributes' directions projected out."""
    d = directions[target].astype(np.float64)
    basis = np.stack([directions[c] for c in condition], axis=1).astype(np.float64)
    q, _ = np.linalg.qr(basis)
    d = d - q @ (q.T @ d)
    return (d / np.linalg.norm(d)).astype(np.float32)


def race_table(rows: pd.DataFrame, given: pd.DataFrame) -> pd.DataFrame:
    """race (the index's `race` label where present, else FairFace's), race_prob (FairFace) and race_source,
    rows aligned with `rows` (the index rows of the embedding's ids)."""
    predicted = given["race"].astype(object).to_numpy()
    label = rows["race"].astype(object).to_numpy() if "race" in rows.columns else np.full(len(rows), None,
                                                                                          object)
    has = pd.notna(label)
    return pd.DataFrame({"race": np.where(has, label, predicted),
                         "race_prob": given["race_prob"].to_numpy(np.float32),
                         "race_source": np.where(has, "label", np.where(pd.notna(predicted), "predicted",
                                                                        ""))})


def attributes_table(index: pd.DataFrame, ids: np.ndarray, X: np.ndarray, covariates: list[str],
                     C: float = 1.0, cv_folds: int = 5, random_state: int = 0,
                     predictions: pd.DataFrame | None = None,
                     treatment: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the attributes table (label > prediction) and the cross-validated accuracy table.

    Models are fitted on the `train` split's labels (all labelled rows if there is no split column).
    `predictions` (image_id, `<name>_prob`, optional `<name>_confidence`; e.g. the face models' table) fill
    unlabelled rows before the embedding models do, and add a `<name>_confidence` column. With `treatment`,
    a treatment the index lacks (or has gaps in) is resolved here the same way and added to the table.
    """
    ids = np.asarray(ids)
    if len(ids) != len(X):
        raise InputDataError(f"attributes: {len(ids)} image ids but {len(X)} embedding rows; rebuild the "
                             "embedding.")
    dup = pd.unique(ids[pd.Series(ids).duplicated().to_numpy()])
    if len(dup):
        raise InputDataError(f"attributes: duplicate image ids in the embedding, e.g. {list(dup[:5])}.")
    unknown = ids[~np.isin(ids, index["image_id"].to_numpy())]
    if len(unknown):
        raise InputDataError(f"attributes: {len(unknown)} embedding ids are not in the image index, e.g. "
                             f"{list(unknown[:5])}.")
    unlabelled = treatment not in index.columns or index[treatment].isna().any() if treatment else False
    if treatment and unlabelled and treatment not in covariates:
        covariates = [*covariates, treatment]
    rows = index.set_index("image_id").loc[ids]
    labels = pd.DataFrame(
        {
            c: rows[c].to_numpy(dtype=float) if c in rows.columns else np.full(len(rows), np.nan)
            for c in covariates
        }
    )
    # complete numeric covariates (the paper's predicted yaw, quality) are measurements: kept, not modelled
    numeric = [
        c for c in covariates if labels[c].notna().all() and not set(pd.unique(labels[c])) <= {0.0, 1.0}
    ]
    train = labels.drop(columns=numeric)
    if "split" in rows.columns:
        train[rows["split"].to_numpy() != "train"] = np.nan
    model = LatentAttributeModel(C=C, cv_folds=cv_folds, random_state=random_state).fit(X, train)
    probs = model.predict_proba(X)
    out = pd.DataFrame({"image_id": np.asarray(ids)})
    given = (
        None
        if predictions is None
        else predictions.astype({"image_id": str}).set_index("image_id").reindex(ids.astype(str))
    )
    for c in covariates:
        prob = probs[c].to_numpy() if c in probs else np.full(len(out), np.nan)
        # e.g. the face models: they come before the embedding's
        if given is not None and f"{c}_prob" in given.columns:
            prob = np.where(given[f"{c}_prob"].isna(), prob, given[f"{c}_prob"].to_numpy(float))
        label = labels[c].to_numpy()
        has = ~np.isnan(label)
        predicted = np.where(np.isnan(prob), np.nan, (prob >= 0.5).astype(float))
        out[c] = np.where(has, label, predicted)
        out[f"{c}_prob"] = prob.astype(np.float32)
        out[f"{c}_source"] = np.where(has, "label", "predicted")
        if given is not None and f"{c}_confidence" in given.columns:
            out[f"{c}_confidence"] = given[f"{c}_confidence"].to_numpy(np.float32)
    if given is not None and "race" in given.columns:  # FairFace's categorical race: labels first, as above
        out = out.join(race_table(rows, given))
    cv = model.cv_table_
    modelled = list(train.columns)
    test = ~train.notna().to_numpy() & labels[modelled].notna().to_numpy()
    cv["test_accuracy"] = [
        float(((probs[c].to_numpy() >= 0.5) == labels[c].to_numpy())[test[:, j]].mean())
        if c in probs and test[:, j].any()
        else np.nan
        for j, c in enumerate(modelled)
    ]
    return out, cv
