"""The distance half of MatchIt's design: what "close" means for a method, computed once per matching.

A `DistanceMeasure` is either a scalar score per image (a propensity score or a precomputed column, MatchIt's
`distance` vector; pairs are as far apart as their scores) or a feature matrix with a metric (an embedding, or
covariates after a Mahalanobis, scaled-Euclidean or plain-Euclidean transform). Every method reads one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ganmatch.errors import ConfigError, InputDataError
from ganmatch.matching.data import MatchData

DISTANCES = ("embedding", "propensity", "mahalanobis", "scaled_euclidean", "euclidean", "score")
SCALAR_DISTANCES = ("propensity", "score")
LINKS = ("logit", "linear.logit")
PENALTIES = ("none", "l2")


@dataclass
class DistanceMeasure:
    """What a method matches on. `score` (n,) for scalar distances, else `X` (n, d) float32 with `metric`.
    `logit`/`propensity` are kept for propensity distances (the overlap figure draws them)."""

    name: str
    score: np.ndarray | None = None
    X: np.ndarray | None = None
    metric: str = "euclidean"
    logit: np.ndarray | None = None
    propensity: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def scalar(self) -> bool:
        return self.score is not None

    def features(self) -> np.ndarray:
        """The rows whose `metric` distance is the pair distance (a scalar score as one column)."""
        return self.X if self.X is not None else self.score.reshape(-1, 1).astype(np.float64)


# ---------------------------------------------------------------- the propensity model


def fit_logistic_irls(Z: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-12):
    """Unpenalised logistic regression with an intercept by iteratively reweighted least squares, run to full
    convergence (R's glm stops at a relative deviance change of 1e-8; MatchIt's documented numbers need the
    fully converged fit). Returns (coefficients with the intercept first, linear predictor, converged)."""
    X = np.hstack([np.ones((len(Z), 1)), np.asarray(Z, np.float64)])
    y = np.asarray(y, np.float64)
    beta = np.zeros(X.shape[1])
    mu = (y + 0.5) / 2.0                     # glm's start: mustart = (y + 0.5) / 2
    eta = np.log(mu / (1 - mu))
    dev_old = np.inf
    for _ in range(max_iter):
        w = np.clip(mu * (1 - mu), 1e-12, None)
        z = eta + (y - mu) / w
        sw = np.sqrt(w)
        beta = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
        eta = X @ beta
        mu = np.clip(1.0 / (1.0 + np.exp(-eta)), 1e-15, 1 - 1e-15)
        dev = -2.0 * np.sum(y * np.log(mu) + (1 - y) * np.log(1 - mu))
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            return beta, eta, True
        dev_old = dev
    return beta, eta, False


class PropensityModel:
    """Logistic regression of treatment on features (sklearn-style): unpenalised IRLS as R's glm
    (`penalty="none"`, MatchIt's default), or L2-penalised with inverse strength `C` for high-dimensional
    embeddings. `logit_` is the linear predictor, `propensity_` the fitted probability."""

    def __init__(self, penalty: str = "none", C: float = 1.0, max_iter: int = 1000, random_state: int | None = 0):
        self.penalty, self.C, self.max_iter, self.random_state = penalty, C, max_iter, random_state

    def fit(self, Z: np.ndarray, treated: np.ndarray) -> PropensityModel:
        if self.penalty not in PENALTIES:
            raise ConfigError(f"propensity: penalty must be one of {PENALTIES}, got '{self.penalty}'.")
        if self.penalty == "none":
            self.coef_, self.logit_, self.converged_ = fit_logistic_irls(Z, treated, self.max_iter)
        else:
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
            with warnings.catch_warnings(record=True) as caught:  # the reference's 100 lbfgs steps stop early
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(Z, treated)
            self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            self.coef_ = np.r_[model.intercept_, model.coef_.ravel()]
            self.logit_ = model.decision_function(Z)
        self.propensity_ = 1.0 / (1.0 + np.exp(-self.logit_))
        return self


# ---------------------------------------------------------------- covariate transforms (MatchIt's)


def covariate_matrix(data: MatchData, covariates: list[str] | None, who: str) -> np.ndarray:
    """The named covariate columns as float64, refusing missing or non-numeric values."""
    if not covariates:
        return np.zeros((len(data.ids), 0))
    if data.covariates is None:
        raise InputDataError(f"{who}: covariates {covariates} asked for but no covariate table was given.")
    missing = [c for c in covariates if c not in data.covariates]
    if missing:
        raise ConfigError(f"{who}: covariates {missing} are not columns of the attributes table.")
    C = data.covariates[list(covariates)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if np.isnan(C).any():
        raise InputDataError(f"{who}: covariates {covariates} have missing or non-numeric values.")
    return C


def design(data: MatchData, covariates: list[str] | None, embedding: str | None, who: str) -> np.ndarray:
    """Covariates and/or an embedding side by side (float64); at least one is required."""
    parts = [covariate_matrix(data, covariates, who)]
    if embedding:
        parts.append(data.embedding(embedding).astype(np.float64))
    Z = np.hstack(parts)
    if Z.shape[1] == 0:
        raise ConfigError(f"{who}: give covariates and/or an embedding to compute the distance from.")
    return Z


def pooled_within_cov(Z: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Covariance of Z after centring each treatment group on its own mean, divided by n - 2 (MatchIt's
    `pooled_cov`: the Mahalanobis distance's matrix)."""
    Zc = Z.copy()
    for g in (0, 1):
        Zc[treated == g] -= Zc[treated == g].mean(axis=0)
    return Zc.T @ Zc / max(len(Z) - 2, 1)


def pooled_within_sd(Z: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Per column, MatchIt's `pooled_sd` (the scaled-Euclidean scale): the within-group centred sum of squares
    over n - 2 for continuous columns; for 0/1 columns sum_g s_g (1 - s_g / n_g) / n (s_g: the group's ones)."""
    var = np.diag(pooled_within_cov(Z, treated)).copy()
    binary = np.all((Z == 0) | (Z == 1), axis=0)
    for j in np.flatnonzero(binary):
        var[j] = sum(Z[treated == g, j].sum() * (1 - Z[treated == g, j].mean()) for g in (0, 1)
                     if (treated == g).any()) / len(Z)
    return np.sqrt(var)


def mahalanobis_rows(Z: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Rows transformed so that their Euclidean distances are Mahalanobis distances under S (a generalised
    inverse when S is singular, as MatchIt)."""
    vals, vecs = np.linalg.eigh((S + S.T) / 2.0)
    keep = vals > max(vals.max(), 0) * 1e-10
    return (Z - Z.mean(axis=0)) @ (vecs[:, keep] / np.sqrt(vals[keep]))


def _constant_free(Z: np.ndarray) -> np.ndarray:
    varying = np.ptp(Z, axis=0) >= np.sqrt(np.finfo(float).eps)
    return Z[:, varying] if varying.any() else Z[:, :1] * 0.0


# ---------------------------------------------------------------- the measure


def distance_measure(data: MatchData, distance: str, embedding: str | None = None, metric: str = "euclidean",
                     covariates: list[str] | None = None, link: str = "logit", penalty: str = "none",
                     C: float = 1.0, standardize: bool = True, max_iter: int = 1000, score: str | None = None,
                     discarded: np.ndarray | None = None, random_state: int | None = 0, who: str = "matching"
                     ) -> DistanceMeasure:
    """The distance a method matches on (MatchIt's `distance` argument, with embeddings added):

    - `embedding`: `metric` distance (euclidean, cosine, l1) between the images' rows of `embedding`;
    - `propensity`: logistic regression of treatment on covariates and/or an embedding (MatchIt's `glm`);
      `link` "logit" matches on the probability, "linear.logit" on the linear predictor;
    - `mahalanobis` / `scaled_euclidean` / `euclidean`: on covariates and/or an embedding, with the pooled
      within-group covariance / SDs of the units not `discarded` (MatchIt's transforms);
    - `score`: a precomputed scalar column of the covariate table named by `score` (MatchIt's numeric distance).
    """
    if distance not in DISTANCES:
        raise ConfigError(f"{who}: distance must be one of {list(DISTANCES)}, got '{distance}'.")
    treated = data.treated
    keep = np.ones(len(data.ids), bool) if discarded is None else ~np.asarray(discarded, bool)
    if distance == "embedding":
        if not embedding:
            raise ConfigError(f"{who}: distance 'embedding' needs the name of an embedding (key embedding).")
        if covariates:
            raise ConfigError(f"{who}: distance 'embedding' takes no covariates; use distance mahalanobis, "
                              "scaled_euclidean or propensity to combine them with an embedding.")
        return DistanceMeasure("embedding", X=data.embedding(embedding), metric=metric,
                               info={"embedding": embedding, "metric": metric})
    if distance == "score":
        if not score:
            raise ConfigError(f"{who}: distance 'score' needs the name of a precomputed column (key score).")
        s = covariate_matrix(data, [score], who)[:, 0]
        return DistanceMeasure("score", score=s, info={"score": score})
    Z = design(data, covariates, embedding, who)
    if distance == "propensity":
        if link not in LINKS:
            raise ConfigError(f"{who}: link must be one of {list(LINKS)}, got '{link}'.")
        if standardize:
            sd = Z.std(axis=0)
            Z = (Z - Z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        model = PropensityModel(penalty, C, max_iter, random_state).fit(Z, treated)
        s = model.propensity_ if link == "logit" else model.logit_
        info = {"link": link, "penalty": penalty, "converged": bool(model.converged_),
                "logit_sd": float(np.std(model.logit_, ddof=1))}
        if not model.converged_:
            warnings.warn(f"{who}: the propensity model did not converge in {max_iter} iterations.", stacklevel=2)
        return DistanceMeasure("propensity", score=s, logit=model.logit_, propensity=model.propensity_, info=info)
    Z = _constant_free(Z)
    if distance == "mahalanobis":
        X = mahalanobis_rows(Z, pooled_within_cov(Z[keep], treated[keep]))
    elif distance == "scaled_euclidean":
        sd = pooled_within_sd(Z[keep], treated[keep])
        X = Z / np.where(sd > 0, sd, 1.0)
    else:
        X = Z
    return DistanceMeasure(distance, X=np.asarray(X, np.float64), metric="euclidean", info={})


def propensity_scores(covariates: pd.DataFrame, treated) -> np.ndarray:
    """P(treated | covariates) from an unpenalised logistic regression (MatchIt's default glm), no matching."""
    return PropensityModel().fit(covariates.to_numpy(np.float64), np.asarray(treated, int)).propensity_
