"""The paper's figures, drawn from the pipeline's tables; each returns the numbers it drew."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path  # noqa: E402

GROUP_COLOURS = {0: "#d95f02", 1: "#1b9e77"}  # control, treated: the same in every figure
SAMPLE_STYLE = {"unmatched": {"marker": "o", "alpha": 0.45}, "matched": {"marker": "s", "alpha": 1.0}}


def save_figure(fig, pdf: str, png: str | None = None, dpi: int = 150) -> None:
    """Write a figure to PDF (and PNG) atomically, then close it."""
    with atomic_path(pdf, ".pdf") as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight")
    if png:
        with atomic_path(png, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def group_labels(treatment: str) -> dict[int, str]:
    """Readable group names, e.g. male = 1 -> 'male', 0 -> 'not male' (female for the gender treatment)."""
    if treatment.lower() == "male":
        return {1: "male", 0: "female"}
    return {1: treatment, 0: f"not {treatment}"}


def covariate_means(means: pd.DataFrame, pdf: str, png: str | None = None, treatment: str = "treated") -> pd.DataFrame:
    """Covariate means per group, before (unmatched) and after (matched) matching, with 95% intervals.

    One panel per matching method, as in the paper's main figure; `means` is balance.group_means output
    with a `method` column.
    """
    labels = group_labels(treatment)
    methods = list(dict.fromkeys(means["method"]))
    covs = list(dict.fromkeys(means["covariate"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(1.2 + 1.3 * len(covs) * len(methods), 3.6), squeeze=False, sharey=True)
    x = np.arange(len(covs))
    offsets = {(s, g): d for (s, g), d in zip([("unmatched", 0), ("unmatched", 1), ("matched", 0), ("matched", 1)],
                                              (-0.27, -0.09, 0.09, 0.27), strict=True)}
    for ax, method in zip(axes[0], methods, strict=True):
        sub = means[means["method"] == method]
        for (sample, group), dx in offsets.items():
            name = "treated" if group == 1 else "control"  # balance.group_means labels groups by name
            rows = sub[(sub["sample"] == sample) & (sub["group"] == name)].set_index("covariate").reindex(covs)
            y = rows["mean"].to_numpy(float)
            err = np.vstack([y - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - y])
            ax.errorbar(x + dx, y, yerr=err, linestyle="none", capsize=2, color=GROUP_COLOURS[group],
                        label=f"{labels[group]}, {'before' if sample == 'unmatched' else 'after'} matching",
                        **SAMPLE_STYLE[sample])
        ax.set_xticks(x, [c.replace("_", " ") for c in covs], rotation=30, ha="right")
        ax.set_title(f"{method}")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("fraction of images with attribute")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle("Covariate means per group, before and after matching (95% intervals)", fontsize=10)
    save_figure(fig, pdf, png)
    return means.reset_index(drop=True)
