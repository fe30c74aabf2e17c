"""A balance table as cobalt prints it: `print(bal.tab(m.out, un = TRUE, stats = c("m", "v", "ks"),
thresholds = c(m = .1)))` as fixed-width plain text, rendered from the long table of `balance.balance_table`.

Blocks as cobalt's: Balance Measures (Type, Diff.Un, V.Ratio.Un, KS.Un, Diff.Adj, M.Threshold, V.Ratio.Adj,
KS.Adj; 4 decimals, '.' where a statistic does not apply, 'N/A' where it is infinite), the balance tally and
the covariate with the greatest mean difference, and Sample sizes (All, Matched (ESS), Matched (Unweighted),
Unmatched; the two Matched rows are one when they agree). A heading names the estimand and what divided each
mean difference, which cobalt leaves to its call.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

DIGITS = 4
STAT_COLUMNS = (("smd", "Diff"), ("var_ratio", "V.Ratio"), ("ks_max", "KS"))
DENOM_WORDS = {"treated": "the treated group's SD", "control": "the control group's SD",
               "pooled": "the pooled SD sqrt((var_t + var_c) / 2)", "all": "the whole sample's SD"}


def format_column(values, digits: int = DIGITS) -> list[str]:
    """Numbers as R's `format(round(x, digits))` prints a column: one number of decimals for all (the fewest
    that show every rounded value), '-0' kept for small negatives, '.' for NaN and 'N/A' for infinities."""
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    r = np.round(np.where(finite, v, 0.0), digits)
    decimals = max([len(f"{abs(x):.{digits}f}".rstrip("0").split(".")[1]) for x in r[finite]], default=0)
    out = []
    for x, rx, ok in zip(v, r, finite, strict=True):
        if np.isnan(x):
            out.append(".")
        elif not ok:
            out.append("N/A")
        else:
            s = f"{abs(rx):.{decimals}f}"
            out.append(("-" if x < 0 else "") + s)
    return out


def format_counts(values) -> list[str]:
    """Sample sizes as cobalt prints them: integers as '429.' and effective sizes to 2 decimals, padded so the
    decimal points line up, when any size has decimals; plain integers otherwise."""
    r = np.round(np.asarray(values, np.float64), 2)
    text = [f"{x:.2f}".rstrip("0").rstrip(".") for x in r]
    width = max((len(s.split(".")[1]) for s in text if "." in s), default=0)
    if width == 0:
        return text
    return [s + " " * (width - len(s.split(".")[1])) if "." in s else s + "." + " " * width for s in text]


def render_frame(frame: pd.DataFrame, row_names: bool = True) -> str:
    """A DataFrame of strings as R's print.data.frame: row names left-justified, columns right-justified,
    one space between."""
    cols = [str(c) for c in frame.columns]
    cells = [[str(v) for v in frame[c]] for c in frame.columns]
    widths = [max([len(h), *map(len, col)]) for h, col in zip(cols, cells, strict=True)]
    names = [str(i) for i in frame.index] if row_names else [""] * len(frame)
    nw = max([0, *map(len, names)])
    lines = [" " * nw + "".join(" " + h.rjust(w) for h, w in zip(cols, widths, strict=True))]
    for i, name in enumerate(names):
        lines.append(name.ljust(nw) + "".join(" " + col[i].rjust(w) for col, w in zip(cells, widths,
                                                                                      strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def threshold_label(status: str, threshold: float) -> str:
    """cobalt's M.Threshold cell ('Balanced, <0.1' / 'Not Balanced, >0.1'); other statuses (too few pairs,
    not estimable) as they are."""
    t = f"{round(float(threshold), 3):g}"
    # a note after the status (e.g. 'balanced; ratio 5 not met') is kept
    head, sep, rest = status.partition("; ")
    return {"balanced": f"Balanced, <{t}", "not balanced": f"Not Balanced, >{t}"}.get(head, head) + sep + rest


def difference_note(table: pd.DataFrame, estimand: str, s_d_denom: str, binary: str) -> str:
    """One sentence: what each mean difference is (cobalt leaves this to the call's arguments)."""
    smd = table[table["stat"] == "smd"]
    used = sorted(set(smd.loc[smd["diff_type"] == "std", "s_d_denom"]) - {s_d_denom})
    fallback = f" ({', '.join(sorted(set(smd.loc[smd['s_d_denom'].isin(used), 'covariate'])))}: zero SD, " \
               "the whole sample's instead)" if used else ""
    return (f"Estimand {estimand}. Contin. covariates: standardised mean difference, divided by "
            f"{DENOM_WORDS[s_d_denom]} in the unadjusted sample (s_d_denom: {s_d_denom}){fallback}. "
            f"Binary covariates: " + ("raw difference in proportions (binary: raw)." if binary == "raw" else
                                      "standardised like the continuous ones, variance p(1 - p) (binary: "
                                      "std)."))


def balance_measures(table: pd.DataFrame, stats=("smd", "var_ratio", "ks_max")) -> pd.DataFrame:
    """The Balance Measures block as strings, one row per covariate, with the columns of `stats`."""
    wide = table.pivot_table(index="covariate", columns=["stat", "sample"], values="value", aggfunc="first",
                             sort=False, dropna=False)
    covs = list(dict.fromkeys(table["covariate"]))
    types = table.drop_duplicates("covariate").set_index("covariate")["type"]
    out = pd.DataFrame({"Type": types.reindex(covs).to_numpy()}, index=covs)
    smd = table[table["stat"] == "smd"].set_index(["covariate", "sample"])
    for sample, tag in (("unmatched", "Un"), ("matched", "Adj")):
        if sample not in set(table["sample"]):
            continue
        for stat, label in (c for c in STAT_COLUMNS if c[0] in stats):
            values = wide[(stat, sample)].reindex(covs) if (stat, sample) in wide else pd.Series(np.nan,
                                                                                                 index=covs)
            out[f"{label}.{tag}"] = format_column(values)
            if stat == "smd" and sample == _judged_sample(table):
                rows = smd.xs(sample, level="sample").reindex(covs)
                out["M.Threshold"] = [threshold_label(s, t) if pd.notna(t) else ""
                                      for s, t in zip(rows["status"], rows["threshold"], strict=True)]
    return out


def _judged_sample(table: pd.DataFrame) -> str:
    return "matched" if (table["sample"] == "matched").any() else "unmatched"


def tally_blocks(table: pd.DataFrame) -> list[str]:
    """The 'Balance tally for mean differences' and 'Variable with the greatest mean difference' blocks."""
    smd = table[(table["stat"] == "smd") & (table["sample"] == _judged_sample(table))]
    if smd.empty or smd["threshold"].isna().all():
        return []
    labels = [threshold_label(s, t) for s, t in zip(smd["status"], smd["threshold"], strict=True)]
    counts = pd.Series(labels).value_counts(sort=False)
    counts = counts.reindex(sorted(counts.index, key=lambda k: (not k.startswith("Balanced"),
                                                                not k.startswith("Not Balanced"))))
    tally = pd.DataFrame({"count": counts.to_numpy().astype(str)}, index=counts.index)
    tag = "Adj" if _judged_sample(table) == "matched" else "Un"
    finite = smd["value"].abs().replace(np.inf, np.nan)
    blocks = ["Balance tally for mean differences\n" + render_frame(tally)]
    if finite.notna().any():
        k = int(np.nanargmax(finite.abs().to_numpy()))
        row = smd.iloc[k]
        worst = pd.DataFrame({"Variable": [row["covariate"]], f"Diff.{tag}": format_column([row["value"]]),
                              "M.Threshold": [labels[k]]})
        blocks.append("Variable with the greatest mean difference\n" + render_frame(worst, row_names=False))
    return blocks


def sample_size_block(sizes: pd.DataFrame, adjusted: bool = True) -> str:
    """Sample sizes (columns Control, Treated) from `balance.sample_sizes`: All, and when `adjusted` Matched
    (ESS), Matched (Unweighted), Unmatched; Matched is one row when the effective and unweighted sizes agree,
    as cobalt."""
    s = sizes.set_index("group")
    groups = ["control", "treated"]
    rows = {"All": s.loc[groups, "all"].to_numpy(float)}
    matched, n_ess = s.loc[groups, "matched"].to_numpy(float), s.loc[groups, "ess"].to_numpy(float)
    if adjusted:
        if np.allclose(n_ess, matched):
            rows["Matched"] = matched
        else:
            rows["Matched (ESS)"], rows["Matched (Unweighted)"] = n_ess, matched
        rows["Unmatched"] = s.loc[groups, "unmatched"].to_numpy(float)
    table = pd.DataFrame(rows, index=["Control", "Treated"]).T
    text = pd.DataFrame({c: format_counts(table[c]) for c in table.columns}, index=table.index)
    return "Sample sizes\n" + render_frame(text)


def balance_text(table: pd.DataFrame, sizes: pd.DataFrame | None, estimand: str, s_d_denom: str, binary: str,
                 title: str = "", stats=("smd", "var_ratio", "ks_max")) -> str:
    """The whole cobalt-style report of one balance table (one method), ending in a newline; `stats` as
    cobalt's (mean differences, variance ratios, KS statistics)."""
    table = table.reset_index(drop=True)
    blocks = ([title] if title else []) + [textwrap.fill(difference_note(table, estimand, s_d_denom, binary),
                                                         100)]
    blocks.append("Balance Measures\n" + render_frame(balance_measures(table, stats)))
    blocks += tally_blocks(table)
    if sizes is not None:
        blocks.append(sample_size_block(sizes, adjusted=(table["sample"] == "matched").any()))
    return "\n\n".join(blocks) + "\n"
