"""A run's results folder, read once and read-only, as the tables the explorer's pages slice.

Everything a page shows is computed here at start-up (pairs joined with covariates and with their distance in
every embedding, balance tables pivoted wide), so a request only filters, sorts and slices small frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.analysis.balance import difference_axis_label
from ganmatch.data.io import read_npy, read_parquet
from ganmatch.errors import InputDataError

INDEX_COLUMNS = {"image_id", "path", "identity", "split", "shard"}
BALANCE_STATS = ["smd", "var_ratio", "ks_max", "mean_treated", "mean_control"]
REF_COLUMNS = ("treated_ref", "control_ref")
PHOTO_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}


@dataclass
class Method:
    """One matching method: its enriched pairs (rank 1 = closest) and its wide balance table.

    A method is `weighted` when its rows are not one-to-one pairs of weight 1 (full matching, subclasses, k:1
    with replacement): its rows are then treated-control links inside subclasses, and counts are of treated
    units, controls and subclasses, never of rows."""

    name: str
    embedding: str
    pairs: pd.DataFrame
    balance: pd.DataFrame | None = None
    threshold: float | None = None
    axis_label: str = (
        "Absolute standardised mean difference"  # what the differences are (balance.difference_axis_label)
    )
    has_refs: bool = False
    has_penalised: bool = False
    has_gap: bool = False
    units_in: int | None = None  # images the method was given (its units table)
    units_matched: int | None = None  # of those, images with a weight > 0

    @cached_property
    def weighted(self) -> bool:
        p = self.pairs
        if not len(p):
            return False
        w = p["weight"].to_numpy(float) if "weight" in p else np.ones(len(p))
        return bool(
            (np.abs(w - 1) > 1e-12).any()
            or p["treated_id"].duplicated().any()
            or p["control_id"].duplicated().any()
        )

    @cached_property
    def n_treated(self) -> int:
        return int(self.pairs["treated_id"].nunique())

    @cached_property
    def n_controls(self) -> int:
        return int(self.pairs["control_id"].nunique())

    @cached_property
    def n_subclasses(self) -> int | None:
        return int(self.pairs["subclass"].nunique()) if "subclass" in self.pairs and self.weighted else None

    def counts(self) -> str:
        """What the method matched, in words: 'n pairs' or 'a treated and b controls in c subclasses'."""
        if not self.weighted:
            return f"{len(self.pairs)} pair{'s' if len(self.pairs) != 1 else ''}"
        sub = f" in {self.n_subclasses} subclasses" if self.n_subclasses is not None else ""
        return f"{self.n_treated} treated and {self.n_controls} controls{sub}, weighted"

    def distance_label(self) -> str:
        """What the `distance` column measures."""
        if self.embedding:
            return f"distance on the {self.embedding} embedding"
        if "treated_logit" in self.pairs:
            return "distance = |difference in propensity logit|"
        return "the method's own distance"

    def summary(self) -> dict:
        """The overview's row: counts, max |SMD| before and after, covariates above the threshold."""
        bal = self.balance if self.balance is not None else pd.DataFrame()
        return {
            "name": self.name,
            "embedding": self.embedding,
            "counts": self.counts(),
            "treated": self.n_treated,
            "controls": self.n_controls,
            "subclasses": self.n_subclasses,
            "weighted": self.weighted,
            "max_smd_before": bal["abs_smd_before"].max() if "abs_smd_before" in bal else None,
            "max_smd_after": bal["abs_smd_after"].max() if "abs_smd_after" in bal else None,
            "n_unbalanced": int((~bal["balanced"]).sum()) if "balanced" in bal else None,
        }

    @cached_property
    def subclass_sizes(self) -> dict:
        """subclass -> (treated, controls) in it, for a weighted method's group headers."""
        if "subclass" not in self.pairs:
            return {}
        g = self.pairs.groupby("subclass")
        t, c = g["treated_id"].nunique(), g["control_id"].nunique()
        return {k: (int(t[k]), int(c[k])) for k in t.index}

    def mismatches(self, covariates: list[str]) -> dict[str, int]:
        """Per covariate, the rows whose treated and control differ on it (what a balance row links to)."""
        return {
            c: int((self.pairs[f"t_{c}"] != self.pairs[f"c_{c}"]).sum())
            for c in covariates
            if f"t_{c}" in self.pairs
        }


@dataclass
class Run:
    """What the explorer knows about one results folder; `files` maps every servable name to its path."""

    root: Path
    dataset: str
    index: pd.DataFrame
    stages: pd.DataFrame
    rejected: pd.DataFrame
    treatment: str | None
    covariates: list[str]
    methods: dict[str, Method]
    embeddings: list[str]
    images: dict[str, str]
    figures: dict[str, Path]
    attributes_cv: pd.DataFrame | None = None
    outcomes: pd.DataFrame | None = None
    attributes: pd.DataFrame | None = None
    index_ids: frozenset = frozenset()  # every indexed image id (what /view and /unit accept)
    face_size: int = (
        0  # pixel size of the aligned faces (0: none): thumbnails scale smoothly when it is large
    )

    def image_info(self, image_id: str) -> dict:
        """The image's identity, treatment and covariates (index and attributes tables), for the views."""
        out: dict = {}
        row = self.index.loc[self.index["image_id"] == image_id]
        if len(row):
            r = row.iloc[0]
            for c in ("identity", self.treatment):
                if c and c in r.index:
                    out[c] = r[c]
        if self.attributes is not None:
            att = self.attributes.loc[self.attributes["image_id"].astype(str) == image_id]
            if len(att):
                for c in self.covariates:
                    out[c] = att.iloc[0][c]
        return out

    def original_path(self, image_id: str) -> Path | None:
        """The image's original photo (the index's `path`, relative to the project the results folder belongs
        to), if it is an image file inside that project (a stored path can point nowhere else)."""
        row = self.index.loc[self.index["image_id"] == image_id, "path"] if "path" in self.index else []
        if not len(row):
            return None
        rel = str(row.iloc[0])
        if "\0" in rel or Path(rel).suffix.lower() not in PHOTO_TYPES:
            return None
        project = self.root.parent.parent
        return inside(project, project / rel)


def table(root: Path, rel: str, required: bool = False) -> pd.DataFrame | None:
    """Read `root/rel` as Parquet; None when absent (unless required); a broken file raises naming it."""
    path = root / rel
    if not path.is_file():
        if required:
            raise InputDataError(
                f"{path}: not found; is {root} the results folder of a finished run (results/<dataset>)?"
            )
        return None
    try:
        return read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable table gets one clear message
        raise InputDataError(
            f"{path}: not a readable Parquet table ({exc}); rerun the stage that writes it."
        ) from exc


def shard_tables(root: Path, folder: str) -> pd.DataFrame | None:
    """All `folder/shard_<k>.parquet` tables of a stage concatenated (None when the stage did not run)."""
    paths = sorted((root / folder).glob("shard_*.parquet"), key=lambda p: (len(p.name), p.name))
    if not paths:
        return None
    return pd.concat([table(root, str(p.relative_to(root))) for p in paths], ignore_index=True)


def inside(root: Path, path: str | Path) -> Path | None:
    """`path` resolved (symlinks followed) if it is a file inside `root`, else None."""
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_file() and real.is_relative_to(root) else None


def image_paths(root: Path, aligned: pd.DataFrame) -> dict[str, str]:
    """image_id -> its aligned PNG under `root/aligned/shard_<k>/` (the last two parts of `aligned_path`, so a
    moved results folder still works and no stored path can point outside it), as a string (30,000 Paths are
    slow)."""
    ok = aligned[aligned["status"] == "ok"]
    base = str(root / "aligned")
    out = {}
    for image_id, rel in zip(ok["image_id"].astype(str), ok["aligned_path"].astype(str), strict=True):
        parts = rel.replace("\\", "/").rsplit("/", 2)[-2:]
        if (
            len(parts) == 2
            and parts[0].startswith("shard_")
            and parts[1] not in ("", ".", "..")
            and "\0" not in rel
        ):
            out[image_id] = f"{base}/{parts[0]}/{parts[1]}"
    return out


def infer_treatment(
    index: pd.DataFrame,
    attributes: pd.DataFrame | None,
    covariates: list[str],
    matches: dict[str, pd.DataFrame],
) -> str | None:
    """The 0/1 column that is 1 for every matched treated image and 0 for every control (the config's
    treatment is not stored in the results); None when no column fits."""
    cols = dict(index.set_index("image_id").items())
    if attributes is not None:
        for c, v in attributes.set_index("image_id").items():
            cols.setdefault(c, v)
    binary = [
        c
        for c, v in cols.items()
        if c not in INDEX_COLUMNS
        and c not in covariates
        and pd.api.types.is_numeric_dtype(v)
        and set(pd.unique(v.dropna())) <= {0, 1}
    ]
    treated = (
        pd.Index(pd.concat([m["treated_id"] for m in matches.values()]).astype(str).unique())
        if matches
        else pd.Index([])
    )
    control = (
        pd.Index(pd.concat([m["control_id"] for m in matches.values()]).astype(str).unique())
        if matches
        else pd.Index([])
    )
    for c in binary:
        v = cols[c]
        v.index = v.index.astype(str)
        if (v.reindex(treated) == 1).all() and (v.reindex(control) == 0).all():
            return c
    return binary[0] if len(binary) == 1 else None


def wide_balance(long: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """balance/<method>.parquet (long) -> one row per covariate with each stat before and after, and the
    |SMD| threshold."""
    piv = long.pivot_table(
        index="covariate", columns=["stat", "sample"], values="value", aggfunc="first", sort=False
    )
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(long["covariate"])), name="covariate"))
    for stat in BALANCE_STATS:
        for sample, tag in (("unmatched", "before"), ("matched", "after")):
            if (stat, sample) in piv.columns:
                out[f"{stat}_{tag}"] = piv[(stat, sample)].reindex(out.index).astype(float)
    lead = {}
    for tag in ("before", "after"):
        if f"smd_{tag}" in out:
            lead[f"abs_smd_{tag}"] = out[f"smd_{tag}"].abs()
    smd = long[long["stat"] == "smd"]
    threshold = (
        float(smd["threshold"].dropna().iloc[0])
        if "threshold" in smd and smd["threshold"].notna().any()
        else None
    )
    if "abs_smd_after" in lead and threshold is not None:
        lead["balanced"] = lead["abs_smd_after"] < threshold
    return pd.concat([pd.DataFrame(lead, index=out.index), out], axis=1).reset_index(), threshold


def embedding_rows(root: Path) -> dict[str, tuple[pd.Series, np.ndarray]]:
    """Every embeddings/<name>.npy (memory-mapped) with its id -> row Series."""
    out = {}
    for npy in sorted((root / "embeddings").glob("*.npy")):
        ids = table(root, f"embeddings/{npy.stem}.parquet")
        if ids is None:
            continue
        try:
            X = read_npy(npy, mmap=True)
        except (OSError, ValueError) as exc:  # truncated or not an array: name the file, not numpy's words
            raise InputDataError(
                f"{npy}: not a readable .npy array ({exc}); the file is truncated or damaged: "
                "rerun the embedding stage that writes it."
            ) from exc
        if len(X) != len(ids):
            raise InputDataError(
                f"{npy}: {len(X)} rows but {npy.with_suffix('.parquet')} has {len(ids)} ids; "
                "rerun the embedding."
            )
        out[npy.stem] = (pd.Series(np.arange(len(ids)), index=ids["image_id"].astype(str)), X)
    return out


def pair_embedding_distances(
    pairs: pd.DataFrame, embeddings: dict[str, tuple[pd.Series, np.ndarray]], a: str, b: str
) -> dict[str, np.ndarray]:
    """Euclidean distance between the images in columns a and b of `pairs`, in every embedding (NaN where an
    image has no row)."""
    out = {}
    for name, (rows, X) in embeddings.items():
        ra = rows.reindex(pairs[a].astype(str)).to_numpy()
        rb = rows.reindex(pairs[b].astype(str)).to_numpy()
        ok = ~(np.isnan(ra) | np.isnan(rb))
        d = np.full(len(pairs), np.nan)
        if ok.any():
            xa = np.asarray(X[ra[ok].astype(np.int64)], np.float64).reshape(int(ok.sum()), -1)
            xb = np.asarray(X[rb[ok].astype(np.int64)], np.float64).reshape(int(ok.sum()), -1)
            d[ok] = np.linalg.norm(xa - xb, axis=1)
        out[name] = d
    return out


def enrich_pairs(
    pairs: pd.DataFrame,
    attributes: pd.DataFrame | None,
    covariates: list[str],
    embeddings: dict,
    identity: pd.Series | None = None,
) -> pd.DataFrame:
    """Matches table + rank by distance + each side's covariates (`t_<c>`, `c_<c>`) + `dist_<embedding>`, and
    `same_identity` from the index's identities where the matching stage did not write it."""
    df = pairs.copy()
    for c in ("treated_id", "control_id", *REF_COLUMNS):
        if c in df:
            df[c] = df[c].astype(str)
    if "same_identity" not in df and identity is not None:
        ti, ci = identity.reindex(df["treated_id"]).to_numpy(), identity.reindex(df["control_id"]).to_numpy()
        df["same_identity"] = pd.notna(ti) & (ti == ci)
    df = df.sort_values(["distance", "treated_id"], kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    if attributes is not None and covariates:
        att = attributes.set_index(attributes["image_id"].astype(str))[covariates]
        for side, col in (("t", "treated_id"), ("c", "control_id")):
            vals = att.reindex(df[col])
            for c in covariates:
                df[f"{side}_{c}"] = vals[c].to_numpy(float)
    for name, d in pair_embedding_distances(df, embeddings, "treated_id", "control_id").items():
        df[f"dist_{name}"] = d
    if all(c in df for c in REF_COLUMNS):
        for name, d in pair_embedding_distances(df, embeddings, *REF_COLUMNS).items():
            df[f"refdist_{name}"] = d
    return df


def stage_counts(index, aligned, latents, embeddings, attributes, methods: dict[str, Method]) -> pd.DataFrame:
    """One row per stage: images in, accepted, rejected (what the overview's first table shows); a matching
    method's images in are those it was given, accepted those it kept (each image once, whatever its rows)."""
    rows = [{"stage": "index", "images": len(index), "ok": len(index), "rejected": 0}]
    if aligned is not None:
        ok = int((aligned["status"] == "ok").sum())
        rows.append({"stage": "alignment", "images": len(aligned), "ok": ok, "rejected": len(aligned) - ok})
    if latents is not None:
        ok = int((latents["status"] == "ok").sum())
        rows.append({"stage": "projection", "images": len(latents), "ok": ok, "rejected": len(latents) - ok})
    for name, (rows_, _) in embeddings.items():
        rows.append({"stage": f"embedding '{name}'", "images": len(rows_), "ok": len(rows_), "rejected": 0})
    if attributes is not None:
        rows.append({"stage": "attributes", "images": len(attributes), "ok": len(attributes), "rejected": 0})
    for name, m in methods.items():
        kept = m.units_matched if m.units_matched is not None else m.n_treated + m.n_controls
        given = m.units_in if m.units_in is not None else kept
        rows.append({"stage": f"matching '{name}'", "images": given, "ok": kept, "rejected": given - kept})
    return pd.DataFrame(rows)


def rejected_images(aligned: pd.DataFrame | None, latents: pd.DataFrame | None) -> pd.DataFrame:
    """Images a stage rejected, with the stage and its reason."""
    parts = []
    for stage, t in (("alignment", aligned), ("projection", latents)):
        if t is not None:
            bad = t[t["status"] != "ok"]
            parts.append(
                pd.DataFrame(
                    {
                        "image_id": bad["image_id"].astype(str),
                        "stage": stage,
                        "status": bad["status"].astype(str),
                        "reason": bad["reason"].fillna("").astype(str),
                    }
                )
            )
    if not parts:
        return pd.DataFrame({"image_id": [], "stage": [], "status": [], "reason": []})
    return pd.concat(parts, ignore_index=True)


def load_run(folder: str | Path) -> Run:
    """Read a results folder (results/<dataset>) into a Run; raises InputDataError naming a missing or broken
    file."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise InputDataError(f"{folder}: no such folder; pass a run's results folder, e.g. results/demo.")
    index = table(root, "images.parquet", required=True)
    index["image_id"] = index["image_id"].astype(str)
    aligned = shard_tables(root, "aligned")
    latents = shard_tables(root, "latents")
    attributes = table(root, "attributes.parquet")
    covariates = (
        [c[: -len("_source")] for c in attributes.columns if c.endswith("_source")]
        if attributes is not None
        else []
    )
    match_paths = sorted((root / "matches").glob("*.parquet"))
    matches = {p.stem: table(root, f"matches/{p.name}") for p in match_paths}
    embeddings = embedding_rows(root)
    treatment = infer_treatment(index, attributes, covariates, matches)
    identity = index.set_index("image_id")["identity"] if "identity" in index else None
    methods = {}
    for name, pairs in matches.items():
        long = table(root, f"balance/{name}.parquet")
        wide, threshold = wide_balance(long) if long is not None and len(long) else (None, None)
        emb = str(pairs["embedding"].iloc[0]) if "embedding" in pairs and len(pairs) else ""
        label = difference_axis_label(long[long["stat"] == "smd"]) if wide is not None else Method.axis_label
        units = table(root, f"matches/units/{name}.parquet")
        given = matched = None
        if units is not None and "weight" in units:
            given, matched = len(units), int((units["weight"].fillna(0) > 0).sum())
        methods[name] = Method(
            name,
            emb,
            enrich_pairs(pairs, attributes, covariates, embeddings, identity),
            wide,
            threshold,
            axis_label=label,
            has_refs=all(c in pairs for c in REF_COLUMNS),
            has_penalised="penalised" in pairs,
            has_gap="reference_gap" in pairs,
            units_in=given,
            units_matched=matched,
        )
    figures = {p.stem: p for p in sorted((root / "figures").glob("*.png")) if inside(root, p)}
    images = image_paths(root, aligned) if aligned is not None else {}
    return Run(
        root=root,
        dataset=root.name,
        index=index,
        stages=stage_counts(index, aligned, latents, embeddings, attributes, methods),
        rejected=rejected_images(aligned, latents),
        treatment=treatment,
        covariates=covariates,
        methods=methods,
        embeddings=list(embeddings),
        images=images,
        figures=figures,
        attributes_cv=table(root, "attributes_cv.parquet"),
        outcomes=table(root, "outcomes.parquet"),
        attributes=attributes,
        face_size=face_size(images),
        index_ids=frozenset(index["image_id"]),
    )


def face_size(images: dict[str, str]) -> int:
    """The pixel width of the first readable aligned face (all faces of a run have one size); 0 when none."""
    from PIL import Image

    for path in list(images.values())[:20]:
        try:
            with Image.open(path) as im:
                return int(im.width)
        except (OSError, ValueError):
            continue
    return 0
