"""Parameter parsing the blueprints share: the method picker and the pairs page's query (also what the pairs
export reads, so an export is exactly the rows the page shows)."""

from __future__ import annotations

from werkzeug.exceptions import BadRequest

from ganmatch.explore.pairs import COVARIATE_FILTERS, FLAG_FILTERS, PER_PAGE, PairQuery, sort_keys
from ganmatch.explore.params import Params
from ganmatch.explore.results import Method, Run

FILTER_PARAMS = {
    "method",
    "sort",
    "order",
    "penalised",
    "gap_min",
    "gap_max",
    "dist_max",
    "same_identity",
    "image",
}
PAGE_PARAMS = {"page", "per_page"}


def method_param(p: Params, run: Run) -> str | None:
    return p.choice("method", run.methods, next(iter(run.methods), None))


def pair_params(run: Run, paging: bool = True) -> set[str]:
    return FILTER_PARAMS | (PAGE_PARAMS if paging else set()) | {f"f_{c}" for c in run.covariates}


def pair_query(p: Params, m: Method, run: Run) -> PairQuery:
    """The pairs page's filters, each checked against what this method's table has (a filter the method cannot
    apply is a 400 naming it, not silently ignored)."""
    pairs = m.pairs
    missing = {
        "gap_min": ("reference_gap", "a reference gap"),
        "gap_max": ("reference_gap", "a reference gap"),
        "penalised": ("penalised", "penalised flags"),
        "same_identity": ("same_identity", "identities"),
    }
    for name, (col, what) in missing.items():
        if p.raw(name) is not None and col not in pairs:
            raise BadRequest(
                f"parameter {name!r}: method {m.name!r} has no {what} (column {col!r} is not in its "
                "matches table); remove the filter or pick a method that writes it"
            )
    covs = {}
    for c in run.covariates:
        v = p.choice(f"f_{c}", COVARIATE_FILTERS, None)
        if v and f"t_{c}" not in pairs:
            raise BadRequest(f"parameter 'f_{c}': the pairs of {m.name!r} carry no {c!r} values")
        if v:
            covs[c] = v
    image = p.raw("image")
    if image is not None and image not in run.index_ids:
        raise BadRequest("parameter 'image': no image with that id in this results folder")
    default_sort = "subclass" if m.weighted and "subclass" in pairs else "rank"
    return PairQuery(
        sort=p.choice("sort", sort_keys(pairs), default_sort),
        descending=p.choice("order", {"asc", "desc"}, "asc") == "desc",
        covariates=covs,
        penalised=p.choice("penalised", FLAG_FILTERS, None),
        gap_min=p.float("gap_min", None, 0, 1e12),
        gap_max=p.float("gap_max", None, 0, 1e12),
        dist_max=p.float("dist_max", None, 0, 1e12),
        same_identity=p.choice("same_identity", FLAG_FILTERS, None),
        image=image,
        page=p.int("page", 1, 1, 10**6),
        per_page=int(p.choice("per_page", [str(n) for n in PER_PAGE], "50")),
    )
