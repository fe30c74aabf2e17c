"""The data every matcher reads (`MatchData`), the result it returns (`MatchResult`), and the helpers the
matchers share: result assembly, group split, calipers, feature matrices and ATT weights of a matches
table."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from ganmatch.analysis import distances
from ganmatch.data.dataset import treatment_vector
from ganmatch.errors import ConfigError, InputDataError

PAIR_COLUMNS = ["treated_id", "control_id", "distance", "weight", "subclass", "method", "embedding"]


class PairRecord(NamedTuple):
    """One pair of the constrained matchers (both semantics, embeddings or matrices), as positions into the
    analysed images: the pair, its match distance (without the penalty), its references, whether it carries
    the constraint's penalty, and its references' distance gap."""

    treated: int
    control: int
    distance: float
    treated_ref: int
    control_ref: int
    penalised: bool
    reference_gap: float


@dataclass
class MatchData:
    """Everything a matcher may use, rows aligned with `ids`."""

    ids: np.ndarray
    treated: np.ndarray
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    identity: np.ndarray | None = None
    covariates: pd.DataFrame | None = None

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        n = len(self.ids)
        if len(np.unique(self.ids)) != n:
            raise InputDataError("MatchData: image ids are not unique.")
        # pandas' string array of the ids, built once: every result table takes from it
        self.id_strings = pd.array(self.ids, dtype="str")
        self.treated = treatment_vector(self.treated, n).astype(np.int64)
        for name, X in self.embeddings.items():
            if len(X) != n:
                raise InputDataError(f"MatchData: embedding '{name}' has {len(X)} rows for {n} ids.")
        if self.identity is not None:
            self.identity = np.asarray(self.identity).astype(str)
            if self.identity.shape != (n,):
                raise InputDataError(f"MatchData: identity has shape {self.identity.shape}, expected ({n},).")
        if self.covariates is not None:
            if len(self.covariates) != n:
                raise InputDataError(f"MatchData: covariates have {len(self.covariates)} rows for {n} ids.")
            self.covariates = self.covariates.reset_index(drop=True)

    def embedding(self, name: str) -> np.ndarray:
        """The named embedding as a float32 (n, d) matrix without NaN (W+ is flattened)."""
        if name not in self.embeddings:
            raise ConfigError(f"matching: embedding '{name}' is not available; have "
                              f"{sorted(self.embeddings)} "
                              "(config key matching.methods.<name>.embedding).")
        return distances.as_matrix(self.embeddings[name], f"embedding '{name}'")


@dataclass
class MatchResult:
    """The matches table (pairs; empty for subclass methods), a dict describing the run (method, estimand,
    counts, caliper, warnings) and the units table: every image's weight, subclass, discarded flag and scalar
    distance (MatchIt's `weights`, `subclass`, `discarded`, `distance`)."""

    pairs: pd.DataFrame
    info: dict
    units: pd.DataFrame | None = None


def _empty_pairs(extra: dict | None = None) -> pd.DataFrame:
    cols = {"treated_id": pd.Series([], dtype=str), "control_id": pd.Series([], dtype=str),
            "distance": pd.Series([], dtype=np.float64), "weight": pd.Series([], dtype=np.float64),
            "subclass": pd.Series([], dtype=np.int64), "method": pd.Series([], dtype=str),
            "embedding": pd.Series([], dtype=str)}
    for k, dtype in (extra or {}).items():
        cols[k] = pd.Series([], dtype=dtype)
    return pd.DataFrame(cols)


def make_result(data: MatchData, method: str, embedding: str, t_pos, c_pos, dist, info: dict,
                weight=None, subclass=None, extra: dict | None = None) -> MatchResult:
    """Assemble pairs (positions into data.ids) and info; an empty result carries a warning."""
    t_pos, c_pos = np.asarray(t_pos, np.int64), np.asarray(c_pos, np.int64)
    if len(t_pos) == 0:
        msg = f"{method}: no pair was matched (check the caliper/threshold or the group sizes)."
        warnings.warn(msg, stacklevel=3)
        info.setdefault("warnings", []).append(msg)
        pairs = _empty_pairs({k: (np.asarray(v).dtype if len(np.asarray(v)) else object)
                              for k, v in (extra or {}).items()})
    else:
        pairs = pd.DataFrame({
            "treated_id": data.id_strings.take(t_pos), "control_id": data.id_strings.take(c_pos),
            "distance": np.asarray(dist, np.float64),
            "weight": np.ones(len(t_pos)) if weight is None else np.asarray(weight, np.float64),
            "subclass": np.arange(1, len(t_pos) + 1) if subclass is None else np.asarray(subclass, np.int64),
            "method": method, "embedding": embedding,
        })
        for k, v in (extra or {}).items():
            pairs[k] = v
    info = {"method": method, "embedding": embedding, "n_treated": int(data.treated.sum()),
            "n_control": int((data.treated == 0).sum()), "n_matched": int(len(pairs)),
            "n_treated_matched": int(np.count_nonzero(np.bincount(t_pos))),
            "n_control_matched": int(np.count_nonzero(np.bincount(c_pos))), **info}
    info.setdefault("warnings", [])
    return MatchResult(pairs=pairs, info=info)


def split_groups(data: MatchData, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the treated and of the control rows; an empty group is an input error."""
    t, c = np.flatnonzero(data.treated == 1), np.flatnonzero(data.treated == 0)
    if len(t) == 0 or len(c) == 0:
        empty = "treated" if len(t) == 0 else "control"
        raise InputDataError(f"{method}: the {empty} group has no members; check the treatment column.")
    return t, c


def one_caliper(caliper=None, caliper_sd=None, caliper_quantile=None) -> None:
    """The one check that at most one caliper form is given (the engine's; the start-up checks say it per
    key)."""
    forms = {"caliper": caliper, "caliper_sd": caliper_sd, "caliper_quantile": caliper_quantile}
    given = [k for k, v in forms.items() if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of caliper, caliper_sd and caliper_quantile (got "
                          f"{', '.join(given)}).")


def resolve_caliper(nearest: np.ndarray, caliper=None, caliper_sd=None, caliper_quantile=None) -> float:
    """Absolute caliper from one of (see `one_caliper`): `caliper` (distance), `caliper_sd` (SDs of the
    treated units' nearest cross-group distances) or `caliper_quantile` (quantile of those distances); inf if
    none."""
    if caliper is not None:
        if caliper < 0:
            raise ConfigError(f"matching: caliper must be >= 0, got {caliper}.")
        return float(caliper)
    if caliper_sd is not None:
        if caliper_sd < 0:
            raise ConfigError(f"matching: caliper_sd must be >= 0, got {caliper_sd}.")
        return float(caliper_sd) * float(np.std(nearest, ddof=1)) if len(nearest) > 1 else np.inf
    if caliper_quantile is not None:
        if not 0 <= caliper_quantile <= 1:
            raise ConfigError(f"matching: caliper_quantile must be in [0, 1], got {caliper_quantile}.")
        return float(np.quantile(nearest, caliper_quantile)) if len(nearest) else np.inf
    return np.inf


def caliper_between(Xt: np.ndarray, Xc: np.ndarray, metric: str = "euclidean", caliper=None, caliper_sd=None,
                    caliper_quantile=None) -> float:
    """`resolve_caliper` for treated rows Xt against controls Xc; the cross-group nearest distances it may
    need are searched only for a relative (sd or quantile) caliper."""
    nearest = np.zeros(0)
    if caliper_sd is not None or caliper_quantile is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nearest = distances.knn(Xt, 1, metric, Y=Xc, exclude_self=False)[1][:, 0].astype(np.float64)
    return resolve_caliper(nearest, caliper, caliper_sd, caliper_quantile)


def set_weights(n: int, focal: np.ndarray, other: np.ndarray,
                pair_weight: np.ndarray | None = None) -> np.ndarray:
    """Weights of matched sets (MatchIt's `weights.matrix`): each focal unit with a match gets 1, each matched
    unit of the other group the sum of its pairs' weights (default 1 / (the set's matches)), rescaled so that
    the other group's weights sum to its number of matched units; unmatched units 0."""
    w = np.zeros(n)
    if len(focal) == 0:
        return w
    if pair_weight is None:
        pair_weight = 1.0 / np.bincount(focal, minlength=n)[focal].astype(np.float64)
    w[np.bincount(focal, minlength=n) > 0] = 1.0
    wo = np.bincount(other, weights=pair_weight, minlength=n)
    matched = np.flatnonzero(np.bincount(other, minlength=n))
    if wo[matched].sum() > 0:
        w[matched] += wo[matched] * len(matched) / wo[matched].sum()
    return w


def matched_weights(ids, pairs: pd.DataFrame) -> np.ndarray:
    """ATT matching weights per id (0 for unmatched), MatchIt style (`set_weights` with the pairs' `weight`
    column, 1 each without one): matched treated units 1, a control the sum of its pairs' weights (1/k for k:1
    matching), control weights scaled to sum to the number of distinct matched controls.
    """
    ids = np.asarray(ids).astype(str)
    if pairs is None or len(pairs) == 0:
        return np.zeros(len(ids))
    pos = pd.Series(np.arange(len(ids)), index=ids)
    missing = (~pairs["treated_id"].astype(str).isin(pos.index)
               | ~pairs["control_id"].astype(str).isin(pos.index))
    if missing.any():
        raise InputDataError(
            f"matched_weights: {int(missing.sum())} pair(s) name ids that are not in the sample."
        )
    tpos = pos.loc[pairs["treated_id"].astype(str)].to_numpy()
    cpos = pos.loc[pairs["control_id"].astype(str)].to_numpy()
    pw = pairs["weight"].to_numpy(float) if "weight" in pairs else np.ones(len(pairs))
    return set_weights(len(ids), tpos, cpos, pw)
