"""Test fixture (not part of the package): a synthetic results folder of any size that keeps the pipeline's
data contracts (docs/architecture.md), and edit directions for a run that lacks them: what the explorer's
tests and benchmark run on.

`write_synthetic_run` writes `<root>/results/<dataset>/` and the demo-sized generator at
`<root>/resources/<dataset>/generator.pt`: latents drawn through the generator's mapping, covariates and a
confounded treatment planted along the directions its images change most, aligned PNGs rendered from the
latents (or plain tiles, fast, for 30,000 images), rejected and failed rows, embeddings, attributes from the
real latent models, matches with references and flags, balance from the real balance code, and
`edits/directions.parquet|.npy` in the edit stage's format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.analysis.attributes import LatentAttributeModel, conditional_direction
from ganmatch.data.io import read_parquet, write_npy, write_parquet, write_png, write_text

COVARIATES = ["young", "smiling", "eyeglasses"]
TREATMENT = "male"
REJECT_REASONS = ["no face found", "image is too small (12 x 12 px)", "cannot decode image: truncated file"]


def demo_generator(seed: int = 0):
    """The default demo's generator architecture (32 px, w_dim 16), seeded."""
    from ganmatch.gan.stylegan2 import make_generator

    return make_generator(
        size=32, z_dim=16, w_dim=16, n_mlp=2, channels={r: 32 for r in (4, 8, 16, 32)}, seed=seed
    )


def draw_latents(generator, n: int, seed: int) -> np.ndarray:
    """n W latents through the generator's mapping, photos of one person 3 in a row close together."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn((n + 2) // 3, generator.z_dim, generator=g).repeat_interleave(3, dim=0)[:n]
        z = z + 0.15 * torch.randn(n, generator.z_dim, generator=g)
        return generator.mapping(z).numpy().astype(np.float32)


def plant_labels(generator, W: np.ndarray, seed: int) -> pd.DataFrame:
    """Covariates = signs along the generator's most visible directions; treatment confounded with them."""
    from ganmatch.simulate.demo import semantic_directions

    rng = np.random.default_rng(seed)
    dirs = semantic_directions(generator, 1 + len(COVARIATES), seed=seed)
    S = (W - W.mean(0)) @ dirs.T
    S /= S.std(0)
    labels = pd.DataFrame({c: (S[:, 1 + j] > 0).astype(int) for j, c in enumerate(COVARIATES)})
    logit = 1.5 * S[:, 0] - 0.8 * S[:, 1] + 0.6 * S[:, 3]
    labels.insert(0, TREATMENT, (rng.random(len(W)) < 1 / (1 + np.exp(-logit))).astype(int))
    return labels


def tiles(W: np.ndarray, size: int) -> np.ndarray:
    """Plain colour tiles (fast stand-ins for rendered faces at 30,000 images)."""
    rgb = (np.tanh(W[:, :3]) * 100 + 128).clip(0, 255).astype(np.uint8)
    return np.broadcast_to(rgb[:, None, None, :], (len(W), size, size, 3))


def random_pairs(rng, treated: np.ndarray, control: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    n = min(n, len(treated), len(control))
    return rng.choice(treated, n, replace=False), rng.choice(control, n, replace=False)


def write_synthetic_run(
    root: str | Path,
    dataset: str = "synthetic",
    n_images: int = 300,
    n_pairs: int = 40,
    shard_size: int = 100,
    render: bool = True,
    face_dim: int = 32,
    figures: bool = True,
    seed: int = 0,
) -> Path:
    """Write a complete results folder under `root`; returns `<root>/results/<dataset>`. `face_dim` is the
    size of the stand-in face-recognition embedding ('facial': photos of one person close together); `figures`
    adds the love plot (the overview's gallery)."""
    from ganmatch.gan.render import render as render_latents
    from ganmatch.gan.weights import save_generator
    from ganmatch.matching import matched_weights

    root = Path(root)
    res = root / "results" / dataset
    rng = np.random.default_rng(seed)
    generator = demo_generator(seed)
    save_generator(generator, root / "resources" / dataset / "generator.pt")
    W = draw_latents(generator, n_images, seed)
    labels = plant_labels(generator, W, seed)
    ids = np.array([f"img{i:05d}" for i in range(n_images)])
    shard = np.arange(n_images) // shard_size
    index = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"resources/{dataset}/images/{i}.png" for i in ids],
            "identity": [f"id{i // 3:05d}" for i in range(n_images)],
            "split": np.where(rng.random(n_images) < 0.7, "train", "test"),
            "shard": shard,
        }
    )
    index = pd.concat([index, labels], axis=1)
    index["outcome"] = index[TREATMENT] + 0.5 * index["young"] + rng.standard_normal(n_images)
    write_parquet(index, res / "images.parquet")

    rejected = rng.random(n_images) < 0.02
    failed = ~rejected & (rng.random(n_images) < 0.01)
    for k in np.unique(shard):
        rows = np.flatnonzero(shard == k)
        paths = [f"results/{dataset}/aligned/shard_{k}/{ids[i]}.png" for i in rows]
        ok = ~rejected[rows]
        images = render_latents(generator, W[rows[ok]]) if render else tiles(W[rows[ok]], generator.size)
        for p, img in zip(np.array(paths)[ok], images, strict=True):
            write_png(img, root / p)
        write_parquet(
            pd.DataFrame(
                {
                    "image_id": ids[rows],
                    "aligned_path": np.where(ok, paths, ""),
                    "status": np.where(ok, "ok", "rejected"),
                    "reason": np.where(ok, "", [REJECT_REASONS[i % len(REJECT_REASONS)] for i in rows]),
                }
            ),
            res / "aligned" / f"shard_{k}.parquet",
        )
        keep = rows[ok]
        write_parquet(
            pd.DataFrame(
                {
                    "image_id": ids[keep],
                    "status": np.where(failed[keep], "failed", "ok"),
                    "reason": np.where(failed[keep], "loss did not decrease", ""),
                    "loss": np.float32(0.01),
                    "psnr": np.float32(35.0),
                    "steps": 100,
                }
            ),
            res / "latents" / f"shard_{k}.parquet",
        )
        write_npy(W[keep], res / "latents" / f"shard_{k}.npy")

    good = np.flatnonzero(~rejected & ~failed)
    facial = (
        np.repeat(rng.standard_normal(((n_images + 2) // 3, face_dim)), 3, axis=0)[:n_images]
        + 0.3 * rng.standard_normal((n_images, face_dim))
    ).astype(np.float32) / np.sqrt(2 * face_dim)
    for name, X in (("gan", W), ("facial", facial)):
        write_npy(X[good], res / "embeddings" / f"{name}.npy")
        write_parquet(pd.DataFrame({"image_id": ids[good]}), res / "embeddings" / f"{name}.parquet")

    from ganmatch.analysis.attributes import attributes_table

    attributes, cv = attributes_table(index, ids[good], W[good], COVARIATES, cv_folds=3, random_state=seed)
    write_parquet(attributes, res / "attributes.parquet")
    write_parquet(cv, res / "attributes_cv.parquet")

    treated = good[index[TREATMENT].to_numpy()[good] == 1]
    control = good[index[TREATMENT].to_numpy()[good] == 0]
    methods = {"gan_greedy": {}, "constrained": {"refs": True}, "propensity": {"logits": True}}
    tables = []
    for name, extra in methods.items():
        t, c = random_pairs(rng, treated, control, n_pairs)
        pairs = pd.DataFrame(
            {
                "treated_id": ids[t],
                "control_id": ids[c],
                "distance": np.linalg.norm(W[t] - W[c], axis=1).astype(np.float64),
                "weight": 1.0,
                "subclass": np.arange(len(t)),
                "method": name,
                "embedding": "gan",
            }
        )
        if extra.get("refs"):
            same = lambda i: ids[i - 1] if i % 3 else ids[min(i + 1, n_images - 1)]  # noqa: E731 - another photo of the person
            pairs["treated_ref"] = [same(i) for i in t]
            pairs["control_ref"] = [same(i) for i in c]
            pairs["penalised"] = rng.random(len(t)) < 0.1
            pairs["reference_gap"] = rng.exponential(0.05, len(t))
        if extra.get("logits"):
            pairs["treated_logit"] = rng.standard_normal(len(t))
            pairs["control_logit"] = pairs["treated_logit"] + 0.01 * rng.standard_normal(len(t))
        write_parquet(pairs, res / "matches" / f"{name}.parquet")
        units = pd.DataFrame({"image_id": ids, "weight": matched_weights(ids, pairs)})
        units_and_balance(res, index, attributes, name, pairs, units, tables)
    pairs, units = full_matching(rng, ids, treated, control, n_pairs)
    units_and_balance(res, index, attributes, "propensity_full", pairs, units, tables)
    write_parquet(pairs, res / "matches" / "propensity_full.parquet")
    summary = pd.concat(tables, ignore_index=True)
    write_parquet(summary, res / "balance" / "summary.parquet")
    if figures:
        from ganmatch.report.figures import love_plot

        write_parquet(
            love_plot(
                summary, str(res / "figures" / "love_plot.pdf"), str(res / "figures" / "love_plot.png")
            ),
            res / "figures" / "love_plot.parquet",
        )
    write_directions(res)
    return res


def units_and_balance(res: Path, index, attributes, name: str, pairs, units, tables: list) -> None:
    """matches/units/<name>.parquet and the method's balance tables, from the real balance code."""
    from ganmatch.stages.balance import method_balance

    write_parquet(units, res / "matches" / "units" / f"{name}.parquet")
    bal = method_balance(index, attributes, units, TREATMENT, COVARIATES, 0.1, name)
    for key, suffix in (("table", ""), ("means", "_means"), ("sizes", "_sizes")):
        write_parquet(bal[key], res / "balance" / f"{name}{suffix}.parquet")
    write_text(bal["text"], res / "balance" / f"{name}.txt")
    tables.append(bal["table"])


def full_matching(rng, ids, treated, control, n_pairs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A full matching's output in the matching stage's format: subclasses of a few treated and several
    controls, a row per treated-control link in a subclass, each control weighted by its subclass's
    treated/control ratio (`n_pairs // 3` treated, at most 40, and twice as many controls in four
    subclasses)."""
    n_t = max(4, min(n_pairs // 3, 40))
    t = rng.choice(treated, n_t, replace=False)
    c = rng.choice(control, 2 * n_t, replace=False)
    sub_t, sub_c = np.arange(n_t) % 4, np.arange(2 * n_t) % 4
    logit = rng.standard_normal(4)
    rows = []
    for k in range(4):
        tk, ck = t[sub_t == k], c[sub_c == k]
        for i in tk:
            for j in ck:
                rows.append(
                    {
                        "treated_id": ids[i],
                        "control_id": ids[j],
                        "distance": 0.0,
                        "weight": len(tk) / len(ck),
                        "subclass": k,
                        "method": "propensity_full",
                        "embedding": "",
                        "treated_logit": logit[k],
                        "control_logit": logit[k],
                    }
                )
    pairs = pd.DataFrame(rows)
    w = np.zeros(len(ids))
    w[t] = 1.0
    for k in range(4):
        w[c[sub_c == k]] = (sub_t == k).sum() / (sub_c == k).sum()
    return pairs, pd.DataFrame({"image_id": ids, "weight": w})


def write_directions(
    results: str | Path, conditional: dict[str, list[str]] | None = None, seed: int = 0
) -> Path:
    """edits/directions.parquet + .npy for a run, in the edit stage's format, from the latent attribute models
    fitted on its projected latents and its attributes table (labels; the treatment included).

    Stands in for the edit stage where it has not run (tests, screenshots); writes only under
    `results/edits/`. A covariate without both classes gets a skipped row with its reason.
    """
    from ganmatch.analysis.embeddings import gather_latents

    res = Path(results)
    tables = sorted(res.glob("latents/shard_*.parquet"), key=lambda p: (len(p.name), p.name))
    ids, X = gather_latents(tables, [p.with_suffix(".npy") for p in tables])
    index = read_parquet(res / "images.parquet").set_index("image_id")
    attributes = read_parquet(res / "attributes.parquet").set_index("image_id")
    covariates = [c[: -len("_source")] for c in attributes.columns if c.endswith("_source")]
    treatment = next(
        (
            c
            for c in index.columns
            if c not in covariates
            and c not in {"identity", "split", "shard", "path"}
            and set(pd.unique(index[c].dropna())) <= {0, 1}
        ),
        None,
    )
    names = ([treatment] if treatment else []) + covariates
    labels = pd.DataFrame(
        {c: (attributes if c in attributes else index)[c].reindex(ids).to_numpy(float) for c in names}
    )
    model = LatentAttributeModel(cv_folds=3, random_state=seed).fit(X, labels)
    cv = model.cv_table_.set_index("attribute")
    if conditional is None and treatment and len(covariates) >= 2:
        conditional = {treatment: covariates[:2]}
    rows, vectors = [], []

    def add(direction, attribute, cond, vector, skipped=""):
        row = -1
        if vector is not None:
            row = len(vectors)
            vectors.append(vector)
        scores = X @ vector if vector is not None else np.array([np.nan])
        rows.append(
            {
                "direction": direction,
                "attribute": attribute,
                "conditional_on": ",".join(cond),
                "cv_accuracy": float(cv.loc[attribute, "cv_accuracy"]),
                "norm": 1.0 if vector is not None else np.nan,
                "n_positive": int(np.nansum(labels[attribute])),
                "skipped": bool(skipped),
                "reason": skipped,
                "row": row,
                "score_sd": float(np.std(scores)),
            }
        )

    for name in names:
        vec = model.directions_.get(name)
        add(name, name, [], vec, "" if vec is not None else "too few positives or negatives for a direction")
    for target, cond in (conditional or {}).items():
        if target in model.directions_ and all(c in model.directions_ for c in cond):
            add(
                f"{target}|{','.join(cond)}",
                target,
                cond,
                conditional_direction(model.directions_, target, cond),
            )
    write_parquet(pd.DataFrame(rows), res / "edits" / "directions.parquet")
    write_npy(np.stack(vectors).astype(np.float32), res / "edits" / "directions.npy")
    return res / "edits"
