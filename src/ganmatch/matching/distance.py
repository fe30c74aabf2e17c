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
from ganmatch.matching import reflapack
from ganmatch.matching.data import MatchData

# MatchIt's names, scikit-learn fits
LEARNED_PROPENSITY = ("lasso", "ridge", "elasticnet", "gbm", "randomforest")
PROPENSITY_DISTANCES = ("propensity", *LEARNED_PROPENSITY)
DISTANCES = ("embedding", *PROPENSITY_DISTANCES, "mahalanobis", "robust_mahalanobis", "scaled_euclidean",
             "euclidean",
             "score")
SCALAR_DISTANCES = (*PROPENSITY_DISTANCES, "score")
COVARIATE_TRANSFORMS = ("mahalanobis", "scaled_euclidean", "euclidean", "robust_mahalanobis")
# the options each propensity distance reads (the start-up checks refuse the others on it)
PROPENSITY_OPTIONS = {
    "propensity": ("link", "penalty", "C", "standardize", "max_iter"),
    "lasso": ("link", "C", "standardize", "max_iter"),
    "ridge": ("link", "C", "standardize", "max_iter"),
    "elasticnet": ("link", "C", "l1_ratio", "standardize", "max_iter"),
    "gbm": ("link", "n_estimators"),
    "randomforest": ("link", "n_estimators"),
}
PROPENSITY_ONLY = ("link", "penalty", "C", "l1_ratio", "n_estimators", "standardize", "max_iter")
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


def fit_logistic_irls(Z: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-12,
                      weights: np.ndarray | None = None):
    """Unpenalised logistic regression with an intercept by iteratively reweighted least squares, run to full
    convergence (R's glm stops at a relative deviance change of 1e-8; MatchIt's documented numbers need the
    fully converged fit); `weights` are prior (sampling) weights, as glm's `weights` (MatchIt's s.weights,
    which it fits by quasibinomial: the same coefficients). Returns (coefficients with the intercept first,
    linear predictor, converged)."""
    X = np.hstack([np.ones((len(Z), 1)), np.asarray(Z, np.float64)])
    y = np.asarray(y, np.float64)
    prior = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    beta = np.zeros(X.shape[1])
    mu = (prior * y + 0.5) / (prior + 1.0)   # glm's start: mustart = (weights y + 0.5) / (weights + 1)
    eta = np.log(mu / (1 - mu))
    dev_old = np.inf
    for _ in range(max_iter):
        w = np.clip(mu * (1 - mu), 1e-12, None)
        z = eta + (y - mu) / w
        sw = np.sqrt(w * prior)
        beta = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
        eta = X @ beta
        mu = np.clip(1.0 / (1.0 + np.exp(-eta)), 1e-15, 1 - 1e-15)
        dev = -2.0 * np.sum(prior * (y * np.log(mu) + (1 - y) * np.log(1 - mu)))
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            return beta, eta, True
        dev_old = dev
    return beta, eta, False


class PropensityModel:
    """A propensity model of treatment on features (sklearn-style). `model` "propensity": logistic regression,
    unpenalised IRLS as R's glm (`penalty="none"`, MatchIt's default) or L2-penalised with inverse strength
    `C` for high-dimensional embeddings; MatchIt's other estimators by scikit-learn: "lasso", "ridge",
    "elasticnet" (penalised logistic regression, inverse strength `C`, `l1_ratio` for elasticnet), "gbm"
    (gradient boosting of depth-3 trees) and "randomforest" (`n_estimators` trees each), all seeded by
    `random_state`. `logit_` is the linear predictor (for the forest the log-odds of its probability clipped
    to [1e-6, 1 - 1e-6]), `propensity_` the fitted probability. `sample_weight`: sampling weights (MatchIt's
    s.weights) in the fit."""

    def __init__(self, penalty: str = "none", C: float = 1.0, max_iter: int = 1000,
                 random_state: int | None = 0,
                 model: str = "propensity", l1_ratio: float = 0.5, n_estimators: int = 500):
        self.penalty, self.C, self.max_iter, self.random_state = penalty, C, max_iter, random_state
        self.model, self.l1_ratio, self.n_estimators = model, l1_ratio, n_estimators

    def fit(self, Z: np.ndarray, treated: np.ndarray,
            sample_weight: np.ndarray | None = None) -> PropensityModel:
        if self.model not in PROPENSITY_DISTANCES:
            raise ConfigError(f"propensity model must be one of {list(PROPENSITY_DISTANCES)}, got "
                              f"'{self.model}'.")
        if self.model == "propensity" and self.penalty not in PENALTIES:
            raise ConfigError(f"propensity: penalty must be one of {PENALTIES}, got '{self.penalty}'.")
        if self.model == "propensity" and self.penalty == "none":
            self.coef_, self.logit_, self.converged_ = fit_logistic_irls(Z, treated, self.max_iter,
                                                                         weights=sample_weight)
        elif self.model in ("gbm", "randomforest"):
            from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

            est = GradientBoostingClassifier(n_estimators=self.n_estimators, max_depth=3,
                                             random_state=self.random_state) if self.model == "gbm" else \
                RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.random_state,
                                       n_jobs=1)
            est.fit(Z, treated, sample_weight=sample_weight)
            self.converged_, self.coef_ = True, None
            if self.model == "gbm":
                self.logit_ = est.decision_function(Z).astype(np.float64)
            else:
                p = np.clip(est.predict_proba(Z)[:, 1].astype(np.float64), 1e-6, 1 - 1e-6)
                self.logit_ = np.log(p / (1 - p))
        else:
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.linear_model import LogisticRegression

            kw = {"propensity": {}, "ridge": {}, "lasso": {"l1_ratio": 1.0, "solver": "saga"},
                  "elasticnet": {"l1_ratio": self.l1_ratio, "solver": "saga"}}[self.model]
            model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state, **kw)
            with warnings.catch_warnings(record=True) as caught:  # the reference's 100 lbfgs steps stop early
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(Z, treated, sample_weight=sample_weight)
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
    columns = [data.covariates[c] for c in covariates]
    if all(pd.api.types.is_float_dtype(x) or pd.api.types.is_integer_dtype(x) for x in columns):
        C = np.column_stack([x.to_numpy(np.float64, na_value=np.nan) for x in columns])   # no parse needed
    else:
        C = data.covariates[list(covariates)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if np.isnan(C).any():
        raise InputDataError(f"{who}: covariates {covariates} have missing or non-numeric values.")
    return C


def sampling_weights(data: MatchData, column: str | None, who: str) -> np.ndarray | None:
    """MatchIt's `s.weights` named by a column of the covariate table: finite, >= 0, each group's sum > 0;
    None without one."""
    if column is None:
        return None
    w = covariate_matrix(data, [column], f"{who}: s_weights")[:, 0]
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputDataError(f"{who}: s_weights column '{column}' has negative or infinite values; sampling "
                             "weights "
                             "must be finite and >= 0.")
    for g, name in ((1, "treated"), (0, "control")):
        if (data.treated == g).any() and w[data.treated == g].sum() <= 0:
            raise InputDataError(f"{who}: s_weights column '{column}' is 0 for every {name} unit.")
    return w


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
    over n - 2 for continuous columns; for 0/1 columns sum_g s_g (1 - s_g / n_g) / n (s_g: the group's
    ones)."""
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


def _rsum(x: np.ndarray) -> float:
    """A sum as R's `sum`: accumulated in order in extended precision (C long double), then rounded to double,
    so that the transforms' last bits, and with them MatchIt's tie order, agree with R's."""
    x = np.asarray(x)
    return float(np.cumsum(x.astype(np.longdouble))[-1]) if len(x) else 0.0


def _rmean(x: np.ndarray) -> float:
    """R's `mean` of a double vector: the long double sum over n, corrected by a second pass."""
    x = np.asarray(x).astype(np.longdouble)
    if len(x) == 0:
        return float("nan")
    m = np.cumsum(x)[-1] / len(x)
    if np.isfinite(m):
        m = m + np.cumsum(x - m)[-1] / len(x)
    return float(m)


def _rmeans(Z: np.ndarray) -> np.ndarray:
    """R's `colMeans`: each column's long double sum over n."""
    return np.array([float(np.cumsum(Z[:,
                                       j].astype(np.longdouble))[-1] / len(Z)) for j in range(Z.shape[1])]) \
        if len(Z) else np.zeros(Z.shape[1])


def _rcov(W: np.ndarray) -> np.ndarray:
    """R's `cov` (complete cases): column means by `mean`'s two passes, products of deviations summed in long
    double, over n - 1. Small matrices only (the covariates of a distance); larger ones go through BLAS."""
    n, d = W.shape
    if d > 32 or n * d * d > 5e7:
        Wc = W - W.mean(axis=0)
        return Wc.T @ Wc / max(n - 1, 1)
    L = W.astype(np.longdouble)
    means = []
    for j in range(d):
        m = np.cumsum(L[:, j])[-1] / n
        means.append(m + np.cumsum(L[:, j] - m)[-1] / n)
    dev = [L[:, j] - np.longdouble(float(means[j])) for j in range(d)]
    out = np.empty((d, d))
    for i in range(d):
        for j in range(i + 1):
            out[i, j] = out[j, i] = float(np.cumsum(dev[i] * dev[j])[-1] / max(n - 1, 1))
    return out


def _tcrossprod(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """X %*% t(M) as the reference BLAS's dgemm adds it up: column by column, in order."""
    if M.shape[1] > 32:
        return X @ M.T
    out = np.zeros((len(X), len(M)))
    for k in range(M.shape[1]):
        out = out + X[:, k:k + 1] * M[:, k][None, :]
    return out


def matchit_pooled_sd(Z: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """MatchIt's `pooled_sd` column by column as R computes it: 0/1 columns sum_g s_g (1 - s_g / n_g) / n,
    other columns the within-group centred sum of squares over n - (number of groups)."""
    groups = [g for g in (0, 1) if (treated == g).any()]
    out = np.empty(Z.shape[1])
    for j in range(Z.shape[1]):
        x = Z[:, j].astype(np.float64)
        if np.all((x == 0) | (x == 1)):
            out[j] = _rsum(
                np.array(
                    [
                        _rsum(x[treated == g]) * (1 - _rsum(x[treated == g]) / (treated == g).sum()) / len(x)
                        for g in groups
                    ]
                )
            )
        else:
            xc = x.copy()
            for g in groups:
                xc[treated == g] -= _rsum(x[treated == g]) / (treated == g).sum()
            out[j] = _rsum(xc * xc) / (len(x) - len(groups))
    return np.sqrt(out)


def matchit_rows(Z: np.ndarray, treated: np.ndarray, keep: np.ndarray, transform: str) -> np.ndarray:
    """MatchIt 4.7's `transform_covariates`, step for step, so that nearest neighbour matching sees the same
    rows as MatchIt's C++ scan (its first column orders the scan; ties follow from it):

    - `mahalanobis`: the columns standardised (R's `scale`), the pooled within-group covariance of the kept
    units
      (`pooled_cov`), its inverse (a generalised inverse when the determinant is at most 1e-8), and the rows
      times the
      pivoted Cholesky factor (LAPACK dpstrf, R's `chol(pivot = TRUE)`), columns in the variables' order;
    - `robust_mahalanobis`: Rosenbaum's rank-based version (ranks, their covariance with the ranks' SD on the
      diagonal);
    - `scaled_euclidean`: each column over its `pooled_sd`; `euclidean`: unchanged.
    Constant columns are dropped first (all constant: the first column, Euclidean). Identical rows give
    identical transformed rows (each distinct row is transformed once)."""
    Z = np.asarray(Z, np.float64)
    keep = np.asarray(keep, bool)
    varying = (
        np.abs(Z.max(axis=0) - Z.min(axis=0)) >= np.sqrt(np.finfo(float).eps) if len(Z) else np.ones(0, bool)
    )
    if not varying.any():
        return Z[:, :1].copy()
    Z = Z[:, varying]
    if transform == "euclidean":
        return Z.copy()
    if transform == "scaled_euclidean":
        sd = matchit_pooled_sd(Z[keep], treated[keep])
        return Z / sd
    if transform == "mahalanobis":
        mean = _rmeans(Z)
        Xc = Z - mean
        sd = np.array([np.sqrt(_rsum(Xc[:, j] ** 2) / max(len(Z) - 1, 1)) for j in range(Z.shape[1])])
        X = Xc / sd
        W = X[keep].copy()
        t = treated[keep]
        groups = [g for g in (0, 1) if (t == g).any()]
        for g in groups:
            W[t == g] -= np.array([_rmean(W[t == g, j]) for j in range(W.shape[1])])
        n = len(W)
        var = _rcov(W) * (n - 1) / max(n - len(groups), 1)
    elif transform == "robust_mahalanobis":
        from scipy.stats import rankdata

        R = np.zeros_like(Z)
        R[keep] = np.column_stack([rankdata(Z[keep, j]) for j in range(Z.shape[1])])
        n = int(keep.sum())
        var = _rcov(R[keep])
        mult = np.std(np.arange(1, n + 1), ddof=1) / np.sqrt(np.diag(var))
        var = var * np.outer(mult, mult)
        X = R
    else:
        raise ConfigError(f"unknown covariate transform '{transform}'.")
    small = len(var) <= 32
    inv = None
    if np.linalg.det(var) > 1e-8:
        try:
            inv = reflapack.solve_identity(var) if small else np.linalg.solve(var, np.eye(len(var)))
        except (np.linalg.LinAlgError, ZeroDivisionError, FloatingPointError):
            inv = None
    if inv is None:  # MatchIt's generalized_inverse (SVD, tolerance 1e-8)
        u, dvals, vt = np.linalg.svd(var)
        pos = dvals > max(1e-8 * dvals[0], 0)
        inv = vt[pos].T @ ((1.0 / dvals[pos])[:, None] * u[:, pos].T)
    if small:
        ch, piv, _ = reflapack.pivoted_cholesky(inv)
    else:
        from scipy.linalg import lapack

        ch, piv, _, _ = lapack.dpstrf(np.asarray(inv, np.float64, order="F"), lower=0)
        ch, piv = np.triu(ch), piv - 1
    M = ch[:, np.argsort(piv)]
    uniq, inverse = np.unique(X, axis=0, return_inverse=True)
    return _tcrossprod(uniq, M)[inverse.ravel()]


# ---------------------------------------------------------------- the measure


def distance_measure(
    data: MatchData,
    distance: str,
    embedding: str | None = None,
    metric: str = "euclidean",
    covariates: list[str] | None = None,
    link: str = "logit",
    penalty: str = "none",
    C: float = 1.0,
    standardize: bool = True,
    max_iter: int = 1000,
    score: str | None = None,
    random_state: int | None = 0,
    who: str = "matching",
    s_weights: np.ndarray | None = None,
    l1_ratio: float = 0.5,
    n_estimators: int = 500,
) -> DistanceMeasure:
    """The distance a method matches on (MatchIt's `distance` argument, with embeddings added):

    - `embedding`: `metric` distance (euclidean, cosine, l1) between the images' rows of `embedding`;
    - `propensity`: logistic regression of treatment on covariates and/or an embedding (MatchIt's `glm`);
      `link` "logit" matches on the probability, "linear.logit" on the linear predictor; `lasso`, `ridge`,
      `elasticnet`, `gbm`, `randomforest`: MatchIt's other propensity estimators, by scikit-learn
      (`PropensityModel`); `s_weights` (sampling weights) weight every propensity fit, as MatchIt's s.weights;
    - `mahalanobis` / `robust_mahalanobis` / `scaled_euclidean` / `euclidean`: on covariates and/or an
    embedding,
      with the pooled within-group covariance / the ranks' covariance / SDs of all units (MatchIt's
      transforms,
      `matchit_rows`; common support, which needs a scalar distance, never applies to them);
    - `score`: a precomputed scalar column of the covariate table named by `score` (MatchIt's numeric
    distance).
    """
    if distance not in DISTANCES:
        raise ConfigError(f"{who}: distance must be one of {list(DISTANCES)}, got '{distance}'.")
    treated = data.treated
    # discard needs a scalar distance, so every unit counts in a transform
    keep = np.ones(len(data.ids), bool)
    if distance == "embedding":
        if not embedding:
            raise ConfigError(f"{who}: distance 'embedding' needs the name of an embedding (key embedding).")
        if covariates:
            raise ConfigError(
                f"{who}: distance 'embedding' takes no covariates; use distance mahalanobis, "
                "scaled_euclidean or propensity to combine them with an embedding."
            )
        return DistanceMeasure(
            "embedding",
            X=data.embedding(embedding),
            metric=metric,
            info={"embedding": embedding, "metric": metric},
        )
    if distance == "score":
        if not score:
            raise ConfigError(f"{who}: distance 'score' needs the name of a precomputed column (key score).")
        s = covariate_matrix(data, [score], who)[:, 0]
        return DistanceMeasure("score", score=s, info={"score": score})
    Z = design(data, covariates, embedding, who)
    if distance in PROPENSITY_DISTANCES:
        if link not in LINKS:
            raise ConfigError(f"{who}: link must be one of {list(LINKS)}, got '{link}'.")
        if standardize and distance not in ("gbm", "randomforest"):
            sd = Z.std(axis=0)
            Z = (Z - Z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        model = PropensityModel(penalty, C, max_iter, random_state, distance, l1_ratio, n_estimators).fit(
            Z, treated, sample_weight=s_weights
        )
        s = model.propensity_ if link == "logit" else model.logit_
        info = {
            "link": link,
            "penalty": penalty,
            "converged": bool(model.converged_),
            "logit_sd": float(np.std(model.logit_, ddof=1)),
        }
        if distance != "propensity":
            info = {
                "link": link,
                "model": distance,
                **{k: v for k, v in info.items() if k not in ("link", "penalty")},
            }
        if not model.converged_:
            warnings.warn(
                f"{who}: the propensity model did not converge in {max_iter} iterations.", stacklevel=2
            )
        return DistanceMeasure(distance, score=s, logit=model.logit_, propensity=model.propensity_, info=info)
    if s_weights is not None:
        raise ConfigError(
            f"{who}: s_weights with distance {distance} is not offered (MatchIt weights the "
            "covariance of its transform by them); use a propensity distance or drop s_weights."
        )
    X = matchit_rows(Z, treated, keep, distance)
    return DistanceMeasure(
        distance, X=np.asarray(X, np.float64), metric="euclidean", info={"transform": distance}
    )


def propensity_scores(covariates: pd.DataFrame, treated) -> np.ndarray:
    """P(treated | covariates) from an unpenalised logistic regression (MatchIt's default glm), no
    matching."""
    return PropensityModel().fit(covariates.to_numpy(np.float64), np.asarray(treated, int)).propensity_
