"""Parity of ganmatch.matching with R's MatchIt, run live: the same data, the same settings, side by side.

MatchIt runs through Rscript (Debian: `apt-get install r-cran-matchit`). So that propensity-fit differences
cannot hide algorithm differences, MatchIt's own fitted score (glm, logit) is passed to both as a precomputed
distance (`distance = ps` in R, `distance: score` here). For each case the table reports the matched counts,
whether the pairs (or the subclass partition) are identical, and the largest weight difference.

Data: MatchIt's lalonde (614 units) and the offline demo's binary covariates (`--demo`, simulated here with the
demo's planted label model). Cases MatchIt cannot run here (optimal and full need the optmatch package, which
Debian does not ship) are reported with ganmatch's numbers and MatchIt's reason.

    python benchmarks/matchit_parity.py            # writes benchmarks/results/matchit_parity.{csv,md}
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

LALONDE_COVS = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]

# name, MatchIt arguments (R code; `ps` is the shared score), ganmatch method and parameters
CASES = [
    ("nearest 1:1", 'method = "nearest", distance = d$ps', "nearest", {"distance": "score"}),
    ("nearest, caliper 0.1 SD", 'method = "nearest", distance = d$ps, caliper = 0.1', "nearest",
     {"distance": "score", "caliper": 0.1}),
    ("nearest 2:1, rounds", 'method = "nearest", distance = d$ps, ratio = 2', "nearest",
     {"distance": "score", "ratio": 2}),
    ("nearest 2:1 with replacement", 'method = "nearest", distance = d$ps, ratio = 2, replace = TRUE', "nearest",
     {"distance": "score", "ratio": 2, "replace": True}),
    ("nearest, smallest first", 'method = "nearest", distance = d$ps, m.order = "smallest"', "nearest",
     {"distance": "score", "m_order": "smallest"}),
    ("nearest, exact on {b1} + {b2}", 'method = "nearest", distance = d$ps, exact = ~ {b1} + {b2}',
     "nearest", {"distance": "score", "exact": ["{b1}", "{b2}"]}),
    ("nearest, caliper 0.25 SD + {c} 0.5 SD", 'method = "nearest", distance = d$ps, caliper = c(0.25, {c} = 0.5)',
     "nearest", {"distance": "score", "caliper": 0.25, "covariate_caliper": {"{c}": 0.5}}),
    ("nearest, discard both", 'method = "nearest", distance = d$ps, discard = "both"', "nearest",
     {"distance": "score", "discard": "both"}),
    ("nearest, ATC", 'method = "nearest", distance = d$ps, estimand = "ATC"', "nearest",
     {"distance": "score", "estimand": "ATC"}),
    ("nearest, Mahalanobis", 'method = "nearest", distance = "mahalanobis"', "nearest",
     {"distance": "mahalanobis"}),
    ("nearest, scaled Euclidean", 'method = "nearest", distance = "scaled_euclidean"', "nearest",
     {"distance": "scaled_euclidean"}),
    ("exact", 'method = "exact"', "exact", {}),
    ("subclass 6, ATT", 'method = "subclass", distance = d$ps, subclass = 6', "subclass",
     {"distance": "score", "subclass": 6}),
    ("subclass 6, ATE", 'method = "subclass", distance = d$ps, subclass = 6, estimand = "ATE"', "subclass",
     {"distance": "score", "subclass": 6, "estimand": "ATE"}),
    ("cem (Sturges)", 'method = "cem"', "cem", {}),
    ("optimal 1:1", 'method = "optimal", distance = d$ps', "optimal", {"distance": "score"}),
    ("full, ATT", 'method = "full", distance = d$ps', "full", {"distance": "score"}),
]

# The formula per case: exact and cem match on the categorical covariates, Mahalanobis on the numeric ones;
# {b1}, {b2} (two binary covariates) and {c} (a continuous one) are filled in per data set.
NAMES = {"lalonde": {"b1": "married", "b2": "nodegree", "c": "age"},
         "demo covariates": {"b1": "young", "b2": "makeup", "c": "age"}}


def fill(value, names: dict):
    """A case's strings, lists and dicts with the data set's covariate names filled in."""
    if isinstance(value, str):
        for key, name in names.items():
            value = value.replace("{" + key + "}", name)
        return value
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    if isinstance(value, dict):
        return {fill(k, names): fill(v, names) for k, v in value.items()}
    return value


def cases(dataset: str) -> list[tuple]:
    return [tuple(fill(x, NAMES[dataset]) for x in case) for case in CASES]

R_SCRIPT = r"""
suppressPackageStartupMessages(library(MatchIt))
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]
d <- read.csv(file.path(out, "data.csv"), stringsAsFactors = TRUE)
rownames(d) <- d$id
f_all <- as.formula(readLines(file.path(out, "formula_all.txt")))
ps_fit <- matchit(f_all, data = d, method = NULL, distance = "glm")
d$ps <- ps_fit$distance
write.csv(data.frame(id = d$id, ps = sprintf("%.17g", d$ps)), file.path(out, "ps.csv"), row.names = FALSE)
cases <- read.csv(file.path(out, "cases.csv"), stringsAsFactors = FALSE)
has_optmatch <- requireNamespace("optmatch", quietly = TRUE)
for (i in seq_len(nrow(cases))) {
  f <- as.formula(cases$formula[i])
  if (grepl("optimal|full", cases$args[i]) && !has_optmatch) {
    writeLines("optmatch is not installed (Debian does not package it)", file.path(out, paste0("case", i, ".skip")))
    next
  }
  m <- tryCatch(eval(parse(text = paste0("matchit(f, data = d, ", cases$args[i], ")"))),
                error = function(e) e)
  if (inherits(m, "error")) { writeLines(conditionMessage(m), file.path(out, paste0("case", i, ".skip"))); next }
  sub <- if (is.null(m$subclass)) NA else as.integer(m$subclass)
  write.csv(data.frame(id = d$id, weight = sprintf("%.17g", m$weights), subclass = sub),
            file.path(out, paste0("case", i, "_units.csv")), row.names = FALSE)
  if (!is.null(m$match.matrix)) {
    mm <- m$match.matrix
    pairs <- do.call(rbind, lapply(seq_len(ncol(mm)), function(j) data.frame(focal = rownames(mm), other = mm[, j])))
    pairs <- pairs[!is.na(pairs$other), ]
    write.csv(pairs, file.path(out, paste0("case", i, "_pairs.csv")), row.names = FALSE)
  }
}
cat(as.character(packageVersion("MatchIt")), file = file.path(out, "version.txt"))
"""


def lalonde() -> pd.DataFrame | None:
    """MatchIt's lalonde as R ships it (id, treat, the covariates, re78)."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lalonde.csv"
        subprocess.run(["Rscript", "-e", f'data("lalonde", package = "MatchIt"); '
                        f'write.csv(cbind(id = rownames(lalonde), lalonde), "{path}", row.names = FALSE)'],
                       check=True, capture_output=True)
        return pd.read_csv(path)


def run_matchit(cs: list, data: pd.DataFrame, covariates: list[str], numeric: list[str], exact: list[str], tmp: Path) -> dict:
    """Run every case in R; returns the score, the MatchIt version and per case the units/pairs or a reason."""
    data.to_csv(tmp / "data.csv", index=False)
    (tmp / "formula_all.txt").write_text("treat ~ " + " + ".join(covariates))
    rows = []
    for _, args, method, _ in cs:
        covs = numeric if "mahalanobis" in args or "scaled_euclidean" in args else \
            exact if method in ("exact",) else covariates
        rows.append({"args": args, "formula": "treat ~ " + " + ".join(covs)})
    pd.DataFrame(rows).to_csv(tmp / "cases.csv", index=False)
    (tmp / "parity.R").write_text(R_SCRIPT)
    subprocess.run(["Rscript", str(tmp / "parity.R"), str(tmp)], check=True, capture_output=True, text=True)
    out = {"ps": pd.read_csv(tmp / "ps.csv").set_index("id")["ps"], "version": (tmp / "version.txt").read_text()}
    for i in range(1, len(cs) + 1):
        skip = tmp / f"case{i}.skip"
        if skip.exists():
            out[i] = {"skip": skip.read_text().strip()}
            continue
        units = pd.read_csv(tmp / f"case{i}_units.csv").set_index("id")
        pairs_file = tmp / f"case{i}_pairs.csv"
        out[i] = {"units": units, "pairs": pd.read_csv(pairs_file) if pairs_file.exists() else None}
    return out


def model_frame(data: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Factor columns as 0/1 dummies (all levels: exact strata and cem keep every level)."""
    parts = []
    for c in covariates:
        if not pd.api.types.is_numeric_dtype(data[c]):
            parts.append(pd.get_dummies(data[c], prefix=c).astype(int))
        else:
            parts.append(data[[c]])
    return pd.concat(parts, axis=1).reset_index(drop=True)


def run_ganmatch(cs: list, data: pd.DataFrame, ps: pd.Series, covariates, numeric, exact) -> dict:
    from ganmatch.matching import MatchData, match

    frame = model_frame(data, sorted(set(covariates) | set(numeric) | set(exact)))
    frame["ps"] = ps.reindex(data["id"]).to_numpy(np.float64)
    md = MatchData(ids=data["id"].astype(str).to_numpy(), treated=data["treat"].to_numpy(), covariates=frame)

    def columns(names):
        return [x for c in names for x in frame.columns if x == c or x.startswith(c + "_")]

    out = {}
    for i, (_, _args, method, params) in enumerate(cs, start=1):
        p = dict(params)
        if p.get("distance") == "score":
            p["score"] = "ps"
        elif p.get("distance") in ("mahalanobis", "scaled_euclidean"):
            p["covariates"] = numeric
        if method in ("exact", "cem"):
            cols = exact if method == "exact" else covariates
            p["covariates"] = columns(cols)
        result = match(method, md, **p)
        ref = reference_pairs(md, method, p)
        if ref is not None:
            t, c = ("treated_id", "control_id") if p.get("estimand", "ATT") != "ATC" else ("control_id", "treated_id")
            result.info["same_as_reference"] = ref == set(zip(result.pairs[t], result.pairs[c], strict=True))
        out[i] = result
    return out


def dense_nearest(D: np.ndarray, order, ratio: int = 1, replace: bool = False, caliper: float = np.inf,
                  ok: np.ndarray | None = None, tie: np.ndarray | None = None):
    """MatchIt's nearest-neighbour algorithm written out on a full (focal x other) distance matrix, as the
    reference ganmatch is held to: focal units in `order`; without replacement `ratio` rounds of one match each
    (no first match: out of later rounds), with replacement the `ratio` nearest at once; within `caliper` and
    `ok`. Ties by `tie` (a per-(focal, other) rank; default the other's index). Returns a set of pairs."""
    D = np.where(ok if ok is not None else True, D, np.inf)
    tie = np.broadcast_to(np.arange(D.shape[1]), D.shape) if tie is None else tie
    used = np.zeros(D.shape[1], bool)
    out, dropped = set(), set()
    for r in range(1 if replace else ratio):
        for t in order:
            if t in dropped:
                continue
            cand = [j for j in np.lexsort((tie[t], D[t])) if np.isfinite(D[t, j]) and D[t, j] <= caliper
                    and not used[j]][: ratio if replace else 1]
            if not cand and r == 0:
                dropped.add(t)
            for j in cand:
                used[j] = not replace
                out.add((int(t), int(j)))
    return out


def scalar_ties(score_f: np.ndarray, score_o: np.ndarray) -> np.ndarray:
    """MatchIt's tie order on a scalar score: the lower side first, then outwards from the focal unit's place
    in the units sorted by (score, index)."""
    pos = np.empty(len(score_o), np.int64)
    pos[np.lexsort((np.arange(len(score_o)), score_o))] = np.arange(len(score_o))
    below = score_o[None, :] < score_f[:, None]
    return np.where(below, -pos[None, :], len(score_o) + pos[None, :])


def reference_pairs(md, method: str, params: dict) -> set | None:
    """The dense reference's pairs (ids) for a nearest case; None for other methods."""
    from ganmatch.analysis import distances
    from ganmatch.matching import distance_measure
    from ganmatch.matching import options as opt
    from ganmatch.matching.nearest import focal_order

    if method != "nearest":
        return None
    keys = ("embedding", "metric", "covariates", "score")
    m = distance_measure(md, params["distance"], **{k: params[k] for k in keys if k in params})
    discarded = opt.common_support(m.score, md.treated, params.get("discard", "none"))
    focal = opt.focal_value(params.get("estimand", "ATT"))
    f = np.flatnonzero((md.treated == focal) & ~discarded)
    o = np.flatnonzero((md.treated != focal) & ~discarded)
    X = m.features()
    D = distances.pairwise(X[f], X[o], m.metric, force=True).astype(np.float64) if not m.scalar else \
        np.abs(m.score[f][:, None] - m.score[o][None, :])
    cal = opt.score_caliper(m.score, discarded, params.get("caliper"), True) if m.scalar else np.inf
    covcal = opt.CovariateCaliper(md, params.get("covariate_caliper"), True, discarded)
    ok = covcal.ok(f[:, None], o[None, :]) if covcal else np.ones((len(f), len(o)), bool)
    strata = opt.strata(md, params.get("exact"))
    ok &= strata[f][:, None] == strata[o][None, :]
    m_order = params.get("m_order") or ("largest" if m.scalar and focal == 1 else "smallest" if m.scalar else "data")
    order = focal_order(m_order, len(f), m.score[f] if m.scalar else None, 0)
    tie = scalar_ties(m.score[f], m.score[o]) if m.scalar else None
    pairs = dense_nearest(D, order, params.get("ratio", 1), params.get("replace", False), cal, ok, tie)
    return {(md.ids[f[a]], md.ids[o[b]]) for a, b in pairs}


def compare(r: dict, g, focal_estimand: str) -> dict:
    """Pairs identical? subclass partition identical? largest weight difference."""
    units = g.units.set_index("image_id")
    w_g = units["weight"]
    w_r = r["units"]["weight"].reindex(w_g.index.astype(type(r["units"].index[0]))).to_numpy(np.float64)
    row = {"max_weight_diff": float(np.max(np.abs(w_g.to_numpy() - w_r))),
           "n_matched_matchit": int((w_r > 0).sum()), "n_matched_ganmatch": int((w_g > 0).sum())}
    if r["pairs"] is not None:
        t, c = ("treated_id", "control_id") if focal_estimand != "ATC" else ("control_id", "treated_id")
        ours = set(zip(g.pairs[t].astype(str), g.pairs[c].astype(str), strict=True))
        theirs = set(zip(r["pairs"]["focal"].astype(str), r["pairs"]["other"].astype(str), strict=True))
        row["pairs_identical"] = ours == theirs
        row["n_pairs_matchit"], row["n_pairs_ganmatch"] = len(theirs), len(ours)
    sub_r = r["units"]["subclass"].reindex(w_g.index)
    if sub_r.notna().any() and units["subclass"].notna().any():
        both = pd.DataFrame({"r": sub_r.to_numpy(), "g": units["subclass"].to_numpy()}).dropna()
        same = both.groupby("r")["g"].nunique().max() == 1 and both.groupby("g")["r"].nunique().max() == 1
        row["subclasses_identical"] = bool(same and (sub_r.isna().to_numpy() == units["subclass"].isna().to_numpy()).all())
    return row


BUGGY = ("4.5.1", "4.5.2", "4.5.3")   # kosukeimai/MatchIt#163: calipers and nearest search broken on some systems


def status(identical: bool, same_as_reference, version: str) -> str:
    if identical:
        return "identical"
    if same_as_reference is True and version in BUGGY:
        return (f"differs: MatchIt {version} misses calipers and nearest controls here (MatchIt#163, fixed in 4.5.4); "
                "ganmatch = MatchIt's algorithm written out")
    return "DIFFERENT"


def parity(dataset: str, data: pd.DataFrame, covariates, numeric, exact, tmp: Path) -> pd.DataFrame:
    cs = cases(dataset)
    r = run_matchit(cs, data, covariates, numeric, exact, tmp)
    g = run_ganmatch(cs, data, r["ps"], covariates, numeric, exact)
    rows = []
    for i, (name, args, _method, params) in enumerate(cs, start=1):
        res = g[i]
        base = {"data": dataset, "case": name, "matchit_call": f"matchit({args})", "matchit": r["version"],
                "same_as_reference": res.info.get("same_as_reference", np.nan)}
        if "skip" in r[i]:
            rows.append({**base, "status": f"MatchIt not run: {r[i]['skip']}",
                         "n_matched_ganmatch": int((res.units["weight"] > 0).sum()),
                         "n_pairs_ganmatch": len(res.pairs) if len(res.pairs) else np.nan})
            continue
        row = compare(r[i], res, params.get("estimand", "ATT"))
        ok = row["max_weight_diff"] < 1e-9 and row.get("pairs_identical", True) and row.get("subclasses_identical", True)
        rows.append({**base, "status": status(ok, base["same_as_reference"], r["version"]), **row})
    return pd.DataFrame(rows)


def demo_covariates(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """The demo's kind of data: binary labels correlated with the treatment (women younger, smiling more,
    more makeup), plus a continuous age, drawn here so the benchmark needs no generator."""
    rng = np.random.default_rng(seed)
    male = rng.random(n) < 0.45
    p = lambda base, shift: np.clip(base + shift * np.where(male, -1, 1), 0.02, 0.98)  # noqa: E731
    frame = pd.DataFrame({
        "id": [f"demo{i:04d}" for i in range(n)], "treat": male.astype(int),
        "young": (rng.random(n) < p(0.6, 0.15)).astype(int), "smiling": (rng.random(n) < p(0.5, 0.1)).astype(int),
        "makeup": (rng.random(n) < p(0.3, 0.25)).astype(int), "eyeglasses": (rng.random(n) < 0.1 + 0.1 * male).astype(int),
        "age": np.round(rng.normal(35 + 6 * male, 9, n), 1), "dark_skin": (rng.random(n) < 0.25).astype(int)})
    return frame


def main(argv=None) -> None:
    from ganmatch.data.io import write_table_pair

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "matchit_parity"))
    args = ap.parse_args(argv)
    if shutil.which("Rscript") is None:
        raise SystemExit("Rscript not found: apt-get install r-cran-matchit")
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "lalonde").mkdir()
        tables.append(parity("lalonde", lalonde(), LALONDE_COVS, ["age", "educ", "re74", "re75"],
                             ["race", "married", "nodegree"], Path(tmp) / "lalonde"))
        (Path(tmp) / "demo").mkdir()
        demo = demo_covariates()
        covs = ["young", "smiling", "makeup", "eyeglasses", "age", "dark_skin"]
        tables.append(parity("demo covariates", demo, covs, ["age"], ["young", "smiling", "makeup"], Path(tmp) / "demo"))
    table = pd.concat(tables, ignore_index=True)
    head = ("# ganmatch.matching vs R's MatchIt\n\nGenerated by `python benchmarks/matchit_parity.py`. Both sides match "
            "on MatchIt's own glm score (a precomputed distance), so only the algorithms are compared. "
            "`identical`: same pairs (or the same subclass partition) and weights equal to 1e-9.\n\n")
    write_table_pair(table, Path(args.out), head)
    print(table.to_string())


if __name__ == "__main__":
    main()
