"""Matching treated to control images, in MatchIt's terms: a distance (an embedding, a propensity score,
Mahalanobis or scaled Euclidean on covariates, or a precomputed score) and a method (nearest, greedy, optimal,
full, subclass, exact, cem, or the reference study's greedy_constrained), with MatchIt's options (exact,
caliper, ratio, replace, discard, estimand) on every method that takes them.

One entry point, `match(method, data, **params)`; `METHODS` lists each method's parameters. Every matcher
reads a `MatchData` and returns a `MatchResult`: the pairs table (treated_id, control_id, distance, weight,
subclass, method, embedding, ...; empty for subclass methods) and the units table (image_id, treated, weight,
subclass, discarded, distance). Matchers never write files.
"""

from __future__ import annotations

from ganmatch.matching.constrained import match_greedy_constrained
from ganmatch.matching.data import PAIR_COLUMNS, MatchData, MatchResult, matched_weights
from ganmatch.matching.distance import (
    DISTANCES,
    DistanceMeasure,
    PropensityModel,
    distance_measure,
    fit_logistic_irls,
    propensity_scores,
)
from ganmatch.matching.greedy import greedy_pairs
from ganmatch.matching.methods import METHODS, REQUIRED, match, method_parameters
from ganmatch.matching.optimal import full_sets, optimal_sets

__all__ = [
    "DISTANCES", "METHODS", "PAIR_COLUMNS", "REQUIRED", "DistanceMeasure",
    "MatchData", "MatchResult", "PropensityModel", "distance_measure", "fit_logistic_irls", "full_sets",
    "greedy_pairs", "match", "match_greedy_constrained", "matched_weights", "method_parameters",
    "optimal_sets",
    "propensity_scores",
]
