"""Matching treated to control images: one entry point, `match(method, data, **params)`, and a registry.

Every matcher reads a `MatchData` (ids, treatment, embeddings, identities, covariates) and returns a
`MatchResult` whose `pairs` table follows the matches contract (treated_id, control_id, distance, weight,
subclass, method, embedding, optional treated_ref/control_ref/penalised). Matchers never write files.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ganmatch.errors import ConfigError
from ganmatch.matching.constrained import match_greedy_constrained
from ganmatch.matching.data import PAIR_COLUMNS, MatchData, MatchResult, matched_weights
from ganmatch.matching.greedy import greedy_pairs, match_greedy
from ganmatch.matching.mahalanobis import match_mahalanobis, whiten
from ganmatch.matching.optimal import match_optimal, optimal_pairs
from ganmatch.matching.propensity import (
    PropensityModel,
    match_propensity,
    propensity_model,
    propensity_scores,
)

__all__ = [
    "MATCHERS", "PAIR_COLUMNS", "MatchData", "MatchResult", "PropensityModel", "greedy_pairs", "match",
    "match_greedy", "match_greedy_constrained", "match_mahalanobis", "match_optimal", "match_propensity",
    "matched_weights", "optimal_pairs", "propensity_model", "propensity_scores", "whiten",
]

MATCHERS: dict[str, Callable[..., MatchResult]] = {
    "greedy": match_greedy,
    "greedy_constrained": match_greedy_constrained,
    "propensity": match_propensity,
    "optimal": match_optimal,
    "mahalanobis": match_mahalanobis,
}


def match(method: str, data: MatchData, **params) -> MatchResult:
    """Run the matcher registered as `method` with its parameters (a config block minus `method`)."""
    if method not in MATCHERS:
        raise ConfigError(f"unknown matching method '{method}'; choose one of {sorted(MATCHERS)} "
                          "(config key matching.methods.<name>.method).")
    fn = MATCHERS[method]
    accepted = inspect.signature(fn).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"matching method '{method}' does not take {unknown}; it takes "
                          f"{[p for p in accepted if p != 'data']}.")
    return fn(data, **params)
