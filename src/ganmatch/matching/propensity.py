"""Propensity-score matching: a logistic regression of the treatment, then nearest neighbour on its logit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ganmatch.errors import ConfigError
from ganmatch.matching.data import MatchData, MatchResult, features, make_result, split_groups


class PropensityModel:
    """Logistic regression of treatment on standardised features; `logit_` is the linear predictor."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000, random_state: int | None = 0):
        self.C, self.max_iter, self.random_state = C, max_iter, random_state

    def fit(self, Z: np.ndarray, treated: np.ndarray) -> PropensityModel:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        with warnings.catch_warnings(record=True) as caught:  # the reference's 100 lbfgs steps stop early
            warnings.simplefilter("always", ConvergenceWarning)
            self.model_.fit(Z, treated)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.logit_ = self.model_.decision_function(Z)
        self.propensity_ = 1.0 / (1.0 + np.exp(-self.logit_))
        return self


def propensity_model(data: MatchData, covariates: list[str] | None = None, embedding: str | None = None,
                     C: float = 1.0, random_state: int | None = 0, standardize: bool = True,
                     max_iter: int = 2000) -> PropensityModel:
    """The model `match_propensity` matches on, fitted on all of `data`: treatment on the (standardised)
    covariates and/or embedding. Anything that shows "the propensity score" of a matching uses this."""
    Z = features(data, "propensity", embedding, covariates, standardize=standardize)
    return PropensityModel(C=C, max_iter=max_iter, random_state=random_state).fit(Z, data.treated)


def _nearest_on_line(score_t: np.ndarray, score_c: np.ndarray, order: np.ndarray, ratio: int, replace: bool,
                     caliper: float):
    """Nearest neighbour matching on a scalar score, treated units taken in `order`.

    Each treated unit takes its `ratio` nearest available controls by |score difference| (equal
    differences on both sides: the lower control index) within `caliper`. Without replacement, used
    controls are skipped through path-compressed left/right pointers over the controls sorted by score.
    """
    srt = np.lexsort((np.arange(len(score_c)), score_c))
    vals = score_c[srt]
    nc = len(vals)
    left = np.arange(nc) - 1
    right = np.arange(nc) + 1
    live = np.ones(nc, bool)

    def find(ptr: np.ndarray, i: int) -> int:
        path = []
        while 0 <= i < nc and not live[i]:
            path.append(i)
            i = int(ptr[i])
        ptr[path] = i
        return i

    out_t, out_c, out_d = [], [], []
    for t in order:
        x = score_t[t]
        pos = int(np.searchsorted(vals, x))
        lo, hi = find(left, pos - 1), find(right, pos)
        taken = []
        while len(taken) < ratio and (lo >= 0 or hi < nc):
            dl = x - vals[lo] if lo >= 0 else np.inf
            dh = vals[hi] - x if hi < nc else np.inf
            if dl < dh or (dl == dh and srt[lo] < srt[hi]):
                j, d, lo = lo, dl, find(left, lo - 1)
            else:
                j, d, hi = hi, dh, find(right, hi + 1)
            if d > caliper:
                break
            taken.append((j, d))
        for j, d in taken:
            if not replace:
                live[j] = False
            out_t.append(t)
            out_c.append(srt[j])
            out_d.append(d)
    return np.array(out_t, np.int64), np.array(out_c, np.int64), np.array(out_d, np.float64)


def match_propensity(data: MatchData, covariates: list[str] | None = None, embedding: str | None = None,
                     C: float = 1.0, ratio: int = 1, replace: bool = False, caliper: float | None = 0.2,
                     std_caliper: bool = True, order: str = "random", random_state: int | None = 0,
                     score: str = "logit", standardize: bool = True, max_iter: int = 2000) -> MatchResult:
    """Propensity-score matching: logistic regression of treatment on standardised covariates and/or an
    embedding, then ratio:1 nearest neighbour on the logit propensity, treated units in `order`
    ("random" with `random_state`, "largest"/"smallest" propensity first, or "data"; "reference" = numpy's
    legacy `np.random.seed(random_state); np.random.permutation`, the reference study's order).

    `caliper` is in SDs of the score when `std_caliper` (Austin's 0.2 SD of the logit), else absolute;
    None for no caliper. `score` "propensity" matches on the raw probability instead of the logit (the
    reference study: caliper 0.1 on it); `standardize` false and `max_iter` 100 fit the model as the
    reference (sklearn defaults on the raw features). `distance` is |score difference|; pair weights are
    1/(controls of the treated).
    """
    t_idx, c_idx = split_groups(data, "propensity")
    if ratio < 1:
        raise ConfigError(f"propensity: ratio must be >= 1, got {ratio}.")
    if score not in ("logit", "propensity"):
        raise ConfigError(f"propensity: score must be 'logit' or 'propensity', got '{score}'.")
    model = propensity_model(data, covariates, embedding, C, random_state, standardize, max_iter)
    logit = model.logit_
    s = logit if score == "logit" else model.propensity_
    cal = np.inf if caliper is None else float(caliper) * (float(np.std(s, ddof=1)) if std_caliper else 1.0)
    lt, lc = s[t_idx], s[c_idx]
    if order == "random":
        seq = np.random.default_rng(random_state).permutation(len(t_idx))
    elif order == "reference":
        seq = np.random.RandomState(random_state).permutation(len(t_idx))
    elif order in ("largest", "smallest"):
        seq = np.lexsort((np.arange(len(lt)), -lt if order == "largest" else lt))
    elif order == "data":
        seq = np.arange(len(t_idx))
    else:
        raise ConfigError(f"propensity: order must be random, reference, largest, smallest or data; got '{order}'.")
    ti, ci, d = _nearest_on_line(lt, lc, seq, int(ratio), bool(replace), cal)
    n_per = np.bincount(ti, minlength=len(t_idx))
    weight = 1.0 / n_per[ti] if len(ti) else None
    first: dict[int, int] = {}  # subclasses numbered in matching order
    subclass = np.array([first.setdefault(int(t), len(first) + 1) for t in ti], np.int64) if len(ti) else None
    info = {"caliper": cal, "caliper_sd_units": caliper if std_caliper else None, "order": order, "ratio": ratio,
            "replace": replace, "logit_sd": float(np.std(logit, ddof=1)), "score": score,
            "converged": model.converged_}
    extra = {"treated_logit": logit[t_idx][ti], "control_logit": logit[c_idx][ci]}
    result = make_result(data, "propensity", embedding or "", t_idx[ti], c_idx[ci], d, info, weight=weight,
                         subclass=subclass, extra=extra)
    result.scores = pd.DataFrame({"image_id": np.asarray(data.ids).astype(str), "logit": logit,
                                  "propensity": model.propensity_})
    return result


def propensity_scores(covariates: pd.DataFrame, treated, C: float = 1.0) -> np.ndarray:
    """P(treated | covariates) from the `propensity` matcher's model on these covariates (no matching)."""
    data = MatchData(ids=np.arange(len(covariates)), treated=np.asarray(treated, int),
                     covariates=covariates.reset_index(drop=True))
    return propensity_model(data, covariates=list(covariates.columns), C=C).propensity_
