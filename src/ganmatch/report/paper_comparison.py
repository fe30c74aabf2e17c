"""The run next to the paper: covariate means before/after matching beside the paper's reported numbers (or,
on the demo, beside the planted truth), and the nearest-neighbour quality table beside the paper's rows,
including "gan + facial constraint" (nearest neighbours under the matching cost with the face penalty).

Reference numbers come from a JSON file: `resources/paper/reported.json` (the paper's, with its source) or the
demo's `truth.json`; both hold `group_means: {unmatched|matched: {covariate: [control, treated]}}`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ganmatch.analysis import distances
from ganmatch.analysis.retrieval import retrieval_quality_table
from ganmatch.errors import InputDataError
from ganmatch.report.plots import GROUP_COLOURS, plt, pretty, save_figure, wrap

MEANS_COLUMNS = ["covariate", "group", "sample", "method", "run_mean", "ci_low", "ci_high", "reference",
                 "difference", "reference_source"]


def load_reference(path: str) -> dict:
    """The reference JSON (reported.json or truth.json's `covariate_means` block), checked for group means."""
    with open(path) as fh:
        data = json.load(fh)
    data = data.get("covariate_means", data)
    if "group_means" not in data:
        raise InputDataError(f"{path}: no 'group_means' block "
                             f"({{unmatched|matched: {{covariate: [control, treated]}}}}).")
    return data


def means_comparison(means: pd.DataFrame, reference: dict, method: str) -> pd.DataFrame:
    """One row per covariate, group and sample (before, and after `method`): the run's mean with its 95%
    interval, the reference value and their difference. Covariates the reference lacks get NaN."""
    need = {"covariate", "group", "sample", "mean", "ci_low", "ci_high", "method"}
    if not need <= set(means.columns):
        raise InputDataError(f"paper_comparison: group means lack {sorted(need - set(means.columns))}.")
    if method not in set(means["method"]):
        raise InputDataError(f"paper_comparison: method '{method}' is not among the matched methods "
                             f"{sorted(set(means['method']))} (config key paper_comparison.method).")
    sub = means[(means["method"] == method)].copy()
    group_pos = sub["group"].map({"control": 0, "treated": 1, 0: 0, 1: 1}).astype(int)
    ref = reference["group_means"]
    sub["reference"] = [
        float(ref[s][c][g]) if c in ref.get(s, {}) else np.nan
        for s, c, g in zip(sub["sample"], sub["covariate"], group_pos, strict=True)
    ]
    sub = sub.rename(columns={"mean": "run_mean"})
    sub["difference"] = sub["run_mean"] - sub["reference"]
    sub["reference_source"] = reference.get("source", "")
    sub["group"] = np.where(group_pos == 1, "treated", "control")
    return sub[MEANS_COLUMNS].reset_index(drop=True)


def constrained_neighbours(ids, X: np.ndarray, F: np.ndarray, threshold: float, k: int,
                           metric: str = "euclidean",
                           constraint_metric: str = "euclidean") -> pd.DataFrame:
    """Each image's k nearest neighbours (self excluded) under the matching cost D + 1e6 [F > threshold]:
    the images within the face threshold by D first, then the rest by D (ties: lower position).
    Scope "all", in the neighbours-table layout."""
    ids = np.asarray(ids).astype(str)
    n = len(ids)
    kk = min(int(k), n - 1)
    if kk <= 0:
        return pd.DataFrame({"query": [], "neighbour": [], "distance": [], "rank": [], "scope": []})
    Xp, Fp = distances.prepare(X, metric), distances.prepare(F, constraint_metric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fi, fd = distances.knn(F, kk, constraint_metric)
        xi, xd = distances.knn(X, min(n - 1, 2 * kk), metric)
    q, nb, dist = [], [], []
    for i in range(n):
        within = fi[i][fd[i] <= threshold]
        if len(within) == fi.shape[1] and fi.shape[1] < n - 1:  # the list may be cut short: the full row
            row = distances.pair_distances(Fp, Fp, np.full(n, i), np.arange(n), constraint_metric)
            within = np.flatnonzero((row <= threshold) & (np.arange(n) != i))
        d_in = distances.pair_distances(Xp, Xp, np.full(len(within), i), within, metric)
        o = np.lexsort((within, d_in))
        take, dtake = list(within[o][:kk]), list(d_in[o][:kk])
        if len(take) < kk:
            seen = set(within.tolist())
            rest = [(float(d), int(j)) for j, d in zip(xi[i], xd[i], strict=True) if int(j) not in seen]
            if len(rest) < kk - len(take):  # rare: compute the row
                row = distances.pair_distances(Xp, Xp, np.full(n, i), np.arange(n), metric)
                rest = sorted((float(row[j]), j) for j in range(n) if j != i and j not in seen)
            for d, j in rest[: kk - len(take)]:
                take.append(j)
                dtake.append(d)
        q += [i] * len(take)
        nb += take
        dist += dtake
    q, nb = np.asarray(q, np.int64), np.asarray(nb, np.int64)
    rank = np.concatenate([np.arange(1, c + 1) for c in np.bincount(q, minlength=n)]) if len(q) else []
    return pd.DataFrame({"query": ids[q], "neighbour": ids[nb], "distance": np.asarray(dist, np.float32),
                         "rank": np.asarray(rank, np.int32), "scope": "all"})


def neighbour_comparison(run: pd.DataFrame, reported: list | None) -> pd.DataFrame:
    """The run's nearest-neighbour rows and the paper's rows, one table with a `source` column. Both measure
    the nearest images among all images (`scope` "all": the paper's table, whose gender mismatch only exists
    there), as the `neighbour_quality` figure's identity and "among all images" panels do."""
    ours = run[run["scope"] == "all"].assign(source="this run")
    paper = pd.DataFrame(reported or []).assign(source="paper", scope="all")
    out = pd.concat([ours, paper], ignore_index=True)
    first = ["source", "embedding", "scope"]
    return out[first + [c for c in out.columns if c not in first]]


RUN_DATA = {
    "demo": ("demo: simulated people, each a cluster in the latent space", False),
    "celeba_hq": ("CelebA-HQ, the paper's data", True),
}


def run_data(source: str) -> tuple[str, bool]:
    """What this run's images are, and whether its retrieval errors compare with the paper's CelebA-HQ numbers
    (only a CelebA-HQ run's identities are the same kind of thing: real people, several photos each)."""
    return RUN_DATA.get(source, (f"{source}: your photos (not the paper's CelebA-HQ)", False))


def paper_comparison(means: pd.DataFrame, nn: pd.DataFrame, pdf: str, png: str | None = None,
                     reference_label: str = "paper", treatment: str = "treated", flag: str = "",
                     run_label: str = "this run", comparable: bool = True) -> pd.DataFrame:
    """Left: each covariate's mean per group, before and after matching, this run (dots with 95% intervals)
    beside the reference (crosses); a method the balance stage did not judge (`flag`, e.g. 'too few pairs (3 <
    10)') is marked as in the love plot (hollow squares after matching, the status in the title). Right:
    identity retrieval error at top-1/5/10 per embedding, this run's rows and the paper's (CelebA-HQ) rows on
    separate axes, each titled with its data (`run_label`); unless `comparable`, the run's panel says that its
    identities are not the paper's kind. Returns `means` (the drawn numbers of the left panel)."""
    covs = list(dict.fromkeys(means["covariate"]))
    err_cols = [c for c in ("err_top1", "err_top5", "err_top10") if c in nn.columns]
    rows = nn.reset_index(drop=True)
    parts = [(src, rows[rows["source"] == src]) for src in ("this run",
                                                            "paper") if (rows["source"] == src).any()]
    fig = plt.figure(figsize=(7.5 + 1.0 * len(covs), 4.4))
    grid = fig.add_gridspec(max(1, len(parts)), 2, width_ratios=[max(3, 2 * len(covs)), 5], wspace=0.75,
                            hspace=0.9, height_ratios=[max(2, len(p)) for _, p in parts] or [1])
    ax1 = fig.add_subplot(grid[:, 0])
    x = np.arange(len(covs))
    labels = {"control": f"not {treatment}", "treated": treatment}
    not_judged = f" [{flag}: not judged]" if flag else ""
    for si, sample in enumerate(("unmatched", "matched")):
        for gi, group in enumerate(("control", "treated")):
            rows = (means["sample"] == sample) & (means["group"] == group)
            sel = means[rows].set_index("covariate").reindex(covs)
            dx = (-0.3 if sample == "unmatched" else 0.1) + 0.15 * gi
            y = sel["run_mean"].to_numpy(float)
            err = np.vstack([y - sel["ci_low"].to_numpy(float), sel["ci_high"].to_numpy(float) - y])
            when = "before" if sample == "unmatched" else "after"
            filled = si and not flag
            ax1.errorbar(
                x + dx,
                y,
                yerr=np.nan_to_num(np.abs(err)),
                linestyle="none",
                capsize=2,
                color=GROUP_COLOURS[gi],
                marker="s" if si and flag else "o",
                mfc=GROUP_COLOURS[gi] if filled else "white",
                label=f"{labels[group]}, {when} (this run)" + (not_judged if si else ""),
            )
            ax1.plot(
                x + dx,
                sel["reference"].to_numpy(float),
                linestyle="none",
                marker="x",
                markersize=7,
                color="black",
                label=f"{reference_label}" if si == 0 and gi == 0 else None,
            )
    ax1.set_xticks(x, [pretty(c) for c in covs], rotation=30, ha="right")
    ax1.set_ylim(-0.05, 1.05)
    ax1.set_ylabel("mean of covariate (fraction)")
    method = means["method"].iloc[0] if len(means) else ""
    after = "hollow squares: after, not judged" if flag else "filled: after"
    ax1.set_title(
        f"Group means: before | after {pretty(method)}\n(open: before, {after}, x: "
        f"{reference_label})" + (f"\n[{flag}: not judged]" if flag else ""),
        fontsize=9,
        color="#b2182b" if flag else "black",
    )
    ax1.grid(axis="y", alpha=0.3)
    ax1.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.32), ncol=2)
    colours = ["#8da0cb", "#66c2a5", "#fc8d62"]
    titles = {
        "this run": f"This run ({run_label})"
        + ("" if comparable else ":\nnot comparable with the paper's numbers below"),
        "paper": "The paper (CelebA-HQ: photos of real people)",
    }
    for k, (src, part) in enumerate(parts):
        ax = fig.add_subplot(grid[k, 1])
        width = 0.8 / max(1, len(err_cols))
        ypos = np.arange(len(part))
        for j, col in enumerate(err_cols):
            bars = ax.barh(
                ypos + (j - (len(err_cols) - 1) / 2) * width,
                part[col].to_numpy(float),
                width,
                color=colours[j % 3],
                label=f"top-{col[len('err_top') :]}",
                hatch="///" if src == "paper" else None,
                edgecolor="white" if src == "paper" else None,
            )
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        ax.set_yticks(ypos, list(part["embedding"]), fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.25)
        ax.set_title(
            wrap(titles[src], 52),
            fontsize=8,
            color="#b2182b" if src == "this run" and not comparable else "black",
        )
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("identity retrieval error among all images (fraction)", fontsize=8)
        if k == len(parts) - 1:
            ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(
        "This run next to the paper's reported numbers"
        if reference_label == "paper"
        else f"This run next to the {reference_label}",
        fontsize=10,
        y=1.02,
    )
    save_figure(fig, pdf, png)
    return means.reset_index(drop=True)


def run_nn_quality(
    neighbours: Mapping[str, pd.DataFrame],
    constrained: pd.DataFrame | None,
    identity: pd.Series,
    attributes: pd.DataFrame,
    constrained_name: str,
) -> pd.DataFrame:
    """The run's nearest-neighbour quality per embedding, plus the constrained-cost row when given."""
    tables = dict(neighbours)
    if constrained is not None:
        tables[constrained_name] = constrained
    return retrieval_quality_table(tables, identity, attributes)


def comparison_tables(
    means: pd.DataFrame,
    reference_path: str,
    method: str,
    spec: dict,
    neighbours: Mapping[str, pd.DataFrame],
    embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]],
    identity: pd.Series,
    attributes: pd.DataFrame,
    k: int,
    pdf: str,
    png: str | None = None,
    treatment: str = "treated",
    paper_path: str | None = None,
    matrices: Mapping | None = None,
    flag: str = "",
    source: str = "celeba_hq",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything the paper_comparison figure shows: the means beside the reference, and the nearest-neighbour
    table (the run's embeddings, "<embedding> + <constraint> constraint" when `method` is greedy_constrained
    with a constraint, and the paper's rows from `paper_path`, else the reference's). `embeddings`: name ->
    (ids, X); `matrices`: name -> (ids, DistanceMatrix) for released distance matrices (paper_cache).
    `flag`: the method's balance status when it was not judged; `source`: the run's data (`run_data`)."""
    reference = load_reference(reference_path)
    paper = load_reference(paper_path) if paper_path else reference
    table = means_comparison(means, reference, method)
    constrained, name = None, ""
    emb, con = spec.get("embedding"), spec.get("constraint_embedding")
    if spec.get("method") == "greedy_constrained" and emb in embeddings and con in embeddings:
        ids, X = embeddings[emb]
        cid, F = embeddings[con]
        pos = pd.Series(np.arange(len(cid)), index=cid)
        keep = np.isin(ids, cid)
        constrained = constrained_neighbours(
            ids[keep],
            X[keep],
            F[pos.loc[ids[keep]].to_numpy()],
            float(spec["threshold"]),
            k,
            spec["metric"],
            spec["constraint_metric"],
        )
        name = f"{emb} + {con} constraint"
    elif spec.get("method") == "greedy_constrained" and emb in (matrices or {}) and con in (matrices or {}):
        # released matrices (source paper_cache)
        from ganmatch.analysis.matrices import matrix_constrained_neighbours

        constrained = matrix_constrained_neighbours(
            matrices[emb][0],
            matrices[emb][1],
            matrices[con][1],
            float(spec.get("threshold", 0.6)),
            k,
            float(spec.get("penalty", 1e6)),
        )
        name = f"{emb} + {con} constraint"
    nn = neighbour_comparison(
        run_nn_quality(neighbours, constrained, identity, attributes, name), paper.get("neighbour_quality")
    )
    label = "paper" if "neighbour_quality" in reference else "planted truth"
    run_label, comparable = run_data(source)
    paper_comparison(
        table,
        nn,
        pdf,
        png,
        reference_label=label,
        treatment=treatment,
        flag=flag,
        run_label=run_label,
        comparable=comparable,
    )
    return table, nn
