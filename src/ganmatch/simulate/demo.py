"""The embedded demo: a planted-confounding face-like dataset rendered by a seeded StyleGAN2 generator.

No face dataset or face GAN ships offline, so the demo builds one whose ground truth is known:
latents are drawn around identity centres, each covariate is a threshold of a known direction in W,
the treatment depends on the covariates (confounding), and every photo is rendered, then misaligned by a
random similarity transform whose landmarks are recorded, exactly as a detector would report them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ganmatch.faces.align import LANDMARK_COLUMNS, canonical_landmarks, similarity_warp
from ganmatch.gan.render import render
from ganmatch.gan.stylegan2 import float64_twin, seeded_normal, stable_scalar

# Covariate -> (base rate, effect on the treatment's logit). Signs and sizes follow CelebA-HQ's confounding
# (men: older, smile less, wear glasses more often, no makeup, darker skin more often; see seed-notes).
PLANTED = {
    "young": (0.75, -1.6),
    "smiling": (0.45, -0.8),
    "eyeglasses": (0.06, 2.8),
    "makeup": (0.40, -3.0),
    "dark_skin": (0.09, 1.5),
}
TREATMENT_INTERCEPT = 0.9  # logit of P(male) for a person with none of the attributes
TREATMENT_SEPARATION = 1.5  # the treatment's own latent coordinate: +/- this many units
OUTCOME_WEIGHTS = {"young": 0.8, "smiling": 0.6, "makeup": -0.7}  # confounded terms of the planted outcome


# The simulated face recogniser (an identity-level descriptor standing in for dlib's, same threshold).
# same person when the L2 distance of two descriptors is at most this (dlib's rule)
FACE_THRESHOLD = 0.6
FACE_DIM = 64               # descriptor length (unit vectors)
FACE_NOISE = 0.038         # typical per-photo noise per coordinate: same-person distances ~0.4, ~6% above 0.6
# log-SD of the per-photo noise level: some photos are much worse (false rejections)
FACE_NOISE_SPREAD = 0.35
FACE_GLASSES_NOISE = 1.4    # glasses multiply a photo's noise level (recognisers do worse on them)
FACE_LOOKALIKES = 0.25      # share of people with a look-alike: another person within the threshold's reach


@dataclass
class DemoData:
    """Everything the demo 'download' writes: labels, true latents, landmarks and raw photos, and the
    simulated face recogniser's descriptors with its truth (look-alike pairs, error rates)."""

    labels: pd.DataFrame
    latents: np.ndarray  # float32 (N, w_dim), the true W of each photo
    landmarks: pd.DataFrame
    photos: np.ndarray  # uint8 (N, raw, raw, 3), misaligned
    directions: pd.DataFrame  # unit direction in W of the treatment and each covariate
    latent_truth: dict  # how attributes and the outcome follow from a latent (see `planted_coordinates`)
    faces: np.ndarray | None = None  # float32 (N, FACE_DIM) unit descriptors, rows as labels
    face_truth: dict | None = None


def planted_group_means() -> dict:
    """The covariate means per group that the planted confounding implies in the population (enumerating the
    independent covariates and the treatment's logistic model), in the layout of
    resources/paper/reported.json: unmatched [control, treated]; matched: the target of matching for the
    treated (ATT), the treated means for both groups."""
    import itertools

    names = list(PLANTED)
    base = np.array([PLANTED[c][0] for c in names])
    effect = np.array([PLANTED[c][1] for c in names])
    combos = np.array(list(itertools.product([0, 1], repeat=len(names))), float)
    p_combo = np.prod(np.where(combos == 1, base, 1 - base), axis=1)
    p_male = 1.0 / (1.0 + np.exp(-(TREATMENT_INTERCEPT + combos @ effect)))
    treated = (p_combo * p_male) @ combos / (p_combo * p_male).sum()
    control = (p_combo * (1 - p_male)) @ combos / (p_combo * (1 - p_male)).sum()
    treated, control = ([stable_scalar(v, 12) for v in x] for x in (treated, control))  # the same on any CPU
    # the source names the module's old place: truth.json is part of the demo world's checked bytes
    return {
        "source": "planted: ganmatch.data.demo.PLANTED base rates and treatment model (population values)",
        "group_means": {
            "unmatched": {c: [float(control[j]), float(treated[j])] for j, c in enumerate(names)},
            "matched": {c: [float(treated[j]), float(treated[j])] for j, c in enumerate(names)},
        },
    }


def face_descriptors(
    owner: np.ndarray, glasses: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """A simulated face recogniser: identity-level unit descriptors (FACE_DIM) with per-photo noise.

    Each person gets a random code; FACE_LOOKALIKES of them are paired with another person (any gender)
    whose code is pulled towards theirs, so the pair's photos sit around the threshold (false matches, what
    lets a cross-gender match satisfy the constraint, as the paper's 301 of 1,200). Each photo adds noise
    whose level is lognormal (bad photos are falsely rejected) and larger with glasses. Returns the
    descriptors and a truth dict: threshold, look-alike identity pairs, and the false non-match / match
    rates over all photo pairs of the same / different people.
    """
    n_id = int(owner.max()) + 1
    code = rng.standard_normal((n_id, FACE_DIM))
    code /= np.linalg.norm(code, axis=1, keepdims=True)
    perm = rng.permutation(n_id)
    n_pairs = int(round(FACE_LOOKALIKES * n_id / 2))
    pairs = perm[: 2 * n_pairs].reshape(-1, 2)
    for a, b in pairs:  # b moves to within ~0.35 of a on the sphere
        v = code[b] - (code[b] @ code[a]) * code[a]
        v /= np.linalg.norm(v)
        angle = rng.uniform(0.15, 0.45)
        code[b] = np.cos(angle) * code[a] + np.sin(angle) * v
    level = FACE_NOISE * np.exp(FACE_NOISE_SPREAD * rng.standard_normal(len(owner)))
    level *= np.where(glasses == 1, FACE_GLASSES_NOISE, 1.0)
    desc = code[owner] + level[:, None] * rng.standard_normal((len(owner), FACE_DIM))
    desc = (desc / np.linalg.norm(desc, axis=1, keepdims=True)).astype(np.float32)
    same_err, same_n, diff_err, diff_n = pair_error_counts(desc, owner, FACE_THRESHOLD)
    truth = {
        "threshold": FACE_THRESHOLD,
        "dim": FACE_DIM,
        "lookalike_pairs": [[f"id{a:04d}", f"id{b:04d}"] for a, b in pairs],
        "false_non_match_rate": same_err / same_n if same_n else float("nan"),
        "false_match_rate": diff_err / diff_n if diff_n else float("nan"),
    }
    return desc, truth


def pair_error_counts(desc: np.ndarray, owner: np.ndarray, threshold: float, block: int = 1024):
    """Over all photo pairs: (same-person pairs farther than `threshold`, same-person pairs, different-person
    pairs within it, different-person pairs), in row blocks so memory stays linear (30,000 photos: 4.5e8
    pairs).
    """
    x = desc.astype(np.float64)
    n = len(x)
    same_err = same_n = diff_err = diff_n = 0
    cols = np.arange(n)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * x[rows] @ x.T))
        upper = cols[None, :] > rows[:, None]
        same = owner[rows][:, None] == owner[None, :]
        far = d > threshold
        same_err += int(np.count_nonzero(far & same & upper))
        same_n += int(np.count_nonzero(same & upper))
        diff_err += int(np.count_nonzero(~far & ~same & upper))
        diff_n += int(np.count_nonzero(~same & upper))
    return same_err, same_n, diff_err, diff_n


def semantic_directions(generator, n: int, seed: int = 0) -> np.ndarray:
    """Orthonormal (n, w_dim) directions along which the generator's images change most at the mean w.

    These are the top right-singular vectors of the Jacobian of G at w_avg (the closed-form idea of SeFa),
    so planted attributes are visible in the pixels and recoverable by projection. Computed in float64 with
    each vector's sign fixed (largest component positive), so they do not depend on the CPU's kernels.
    """
    twin = float64_twin(generator)
    w_avg = twin.mean_w(2000, seed=seed)
    eps = 1e-2 * float(w_avg.abs().mean() + 1e-3)
    steps = eps * torch.eye(len(w_avg), dtype=torch.float64)
    with torch.no_grad():  # central differences for all coordinates in one batch
        plus = twin.synthesis(w_avg + steps, noise_mode="const").flatten(1)
        minus = twin.synthesis(w_avg - steps, noise_mode="const").flatten(1)
    jac = ((plus - minus) / (2 * eps)).T  # (pixels, w_dim)
    _, _, vh = torch.linalg.svd(jac, full_matrices=False)
    dirs = vh[:n].numpy().astype(np.float64)
    dirs *= np.sign(dirs[np.arange(n), np.abs(dirs).argmax(axis=1)])[:, None]
    return dirs


def _basis(directions: np.ndarray) -> np.ndarray:
    """Complete the semantic directions to an orthonormal basis of W (columns).

    Gram-Schmidt over the unit vectors in a fixed order (the next one always the unit vector with the largest
    remainder): a continuous function of the directions, unlike an SVD of the (degenerate) complement's
    projector, whose basis may rotate freely under a last-bit change."""
    w_dim = directions.shape[1]
    basis = [d / np.sqrt(np.sum(d * d)) for d in directions]
    candidates = list(range(w_dim))
    while len(basis) < w_dim:
        best = None
        for i in candidates:
            v = np.eye(w_dim)[i]
            for b in basis:
                v = v - np.sum(v * b) * b
            norm = np.sqrt(np.sum(v * v))
            if best is None or norm > best[0] + 1e-9:
                best = (norm, i, v)
        norm, i, v = best
        candidates.remove(i)
        basis.append(v / norm)
    return np.stack(basis, axis=1)


def draw_people(rng: np.random.Generator, cfg: dict, w_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The people of the demo, the first draws of `simulate`'s stream: latent coordinates (n_identities,
    w_dim) in the basis whose first axes are the treatment and the covariates, the treatment, and each
    person's photo count."""
    names = list(PLANTED)
    n_sem = 1 + len(names)
    n_id = cfg["n_identities"]
    lo, hi = cfg["photos_per_identity"]
    has = np.stack([rng.random(n_id) < PLANTED[c][0] for c in names], axis=1).astype(float)
    coords = cfg["nuisance_scale"] * rng.standard_normal((n_id, w_dim))
    coords[:, 1:n_sem] = (2 * has - 1) * cfg["separation"] + cfg["attribute_noise"] * rng.standard_normal(
        (n_id, n_sem - 1)
    )
    logit = TREATMENT_INTERCEPT + has @ np.array([PLANTED[c][1] for c in names])
    treated = (rng.random(n_id) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    coords[:, 0] = (2 * treated - 1) * TREATMENT_SEPARATION + cfg["attribute_noise"] * rng.standard_normal(
        n_id
    )
    return coords, treated, rng.integers(lo, hi + 1, size=n_id)


def demo_image_ids(cfg: dict, seed: int) -> list[str]:
    """The image ids the demo's download will write (`img00000`, ...), known without rendering anything: the
    start-up checks use them for `edit.images.ids`."""
    n_photos = draw_people(np.random.default_rng(seed), cfg, cfg["w_dim"])[2]
    return [f"img{i:05d}" for i in range(int(n_photos.sum()))]


def simulate(generator, cfg: dict, seed: int) -> DemoData:
    """Draw identities, photos, covariates, treatment and outcome; render and misalign every photo.

    Latent coordinates are taken in an orthonormal basis of W whose first axes are the treatment and the
    covariates: a person with attribute j sits at +separation on axis j, without it at -separation (plus
    `attribute_noise`), so attributes are discrete visual factors as in real faces; the remaining axes are
    nuisance variation of SD `nuisance_scale`; photos scatter around their person by `photo_spread`.
    """
    rng = np.random.default_rng(seed)
    names = list(PLANTED)
    n_sem = 1 + len(names)  # treatment direction first
    # the world is computed in float64, then rounded: the same bytes on any CPU
    twin = float64_twin(generator)
    dirs = semantic_directions(twin, n_sem, seed=seed)
    basis = _basis(dirs)
    w_dim = basis.shape[0]
    w_avg = np.array([stable_scalar(v) for v in twin.mean_w(2000, seed=seed).tolist()])
    with torch.no_grad():
        mapped = twin.mapping(torch.from_numpy(seeded_normal(seed, (2000, generator.z_dim)))).numpy()
    w_scale = stable_scalar(np.sqrt(np.mean(np.var(mapped, axis=0))))

    n_id = cfg["n_identities"]
    coords, treated, n_photos = draw_people(rng, cfg, w_dim)
    owner = np.repeat(np.arange(n_id), n_photos)
    photo = (
        coords[owner]
        + cfg["photo_spread"] * rng.standard_normal((len(owner), w_dim)) * np.r_[0.0, np.ones(w_dim - 1)]
    )
    latents = (w_avg + w_scale * photo @ basis.T).astype(np.float32)

    labels = pd.DataFrame(
        {
            "image_id": [f"img{i:05d}" for i in range(len(owner))],
            "identity": [f"id{k:04d}" for k in owner],
            "male": treated[owner],
        }
    )
    for j, c in enumerate(names):
        labels[c] = (photo[:, 1 + j] > 0).astype(int)
    test_ids = rng.random(n_id) < cfg["test_fraction"]
    labels["split"] = np.where(test_ids[owner], "test", "train")
    noise = rng.standard_normal(len(owner))
    labels["outcome"] = (
        cfg["effect"] * labels["male"] + sum(w * labels[c] for c, w in OUTCOME_WEIGHTS.items()) + 0.5 * noise
    )

    photos, marks = render_misaligned(twin, latents, cfg, rng)
    landmarks = pd.DataFrame(marks.reshape(len(owner), 10), columns=list(LANDMARK_COLUMNS))
    landmarks.insert(0, "image_id", labels["image_id"])
    directions = pd.DataFrame(dirs.astype(np.float32), index=["male", *names]).reset_index(names="attribute")
    latent_truth = {
        "w_avg": w_avg.tolist(),
        "w_scale": w_scale,
        "effect": float(cfg["effect"]),
        "separation": {"male": TREATMENT_SEPARATION, **{c: float(cfg["separation"]) for c in names}},
        "outcome_weights": dict(OUTCOME_WEIGHTS),
    }
    faces, face_truth = face_descriptors(
        owner, labels["eyeglasses"].to_numpy(), np.random.default_rng([seed, 15])
    )
    return DemoData(labels, latents, landmarks, photos, directions, latent_truth, faces, face_truth)


def planted_coordinates(W: np.ndarray, directions: pd.DataFrame, latent_truth: dict) -> pd.DataFrame:
    """Each planted attribute's coordinate of W latents in units of its separation: the distance between the
    centres of faces with and without it (2 x `demo.separation`), so the centres sit at +0.5 and -0.5.

    The attribute is present where the coordinate is positive. W+ latents are averaged over layers first.
    """
    W = np.asarray(W, np.float64)
    W = W.mean(axis=1) if W.ndim == 3 else W
    centred = (W - np.asarray(latent_truth["w_avg"])) / latent_truth["w_scale"]
    return pd.DataFrame(
        {
            r.attribute: centred
            @ np.asarray(r[1:], np.float64)
            / (2 * latent_truth["separation"][r.attribute])
            for r in directions.itertuples(index=False)
        }
    )


def planted_outcome(
    W: np.ndarray, directions: pd.DataFrame, latent_truth: dict, treatment: str = "male"
) -> np.ndarray:
    """The demo outcome as a function of the latent, without its noise: effect * treated + weighted
    covariates."""
    present = planted_coordinates(W, directions, latent_truth) > 0
    out = latent_truth["effect"] * present[treatment].to_numpy(float)
    for name, weight in latent_truth["outcome_weights"].items():
        out = out + weight * present[name].to_numpy(float)
    return out


def edit_truth(
    originals: np.ndarray,
    edited: np.ndarray,
    directions: pd.DataFrame,
    latent_truth: dict,
    outcomes: list[str],
    treatment: str = "male",
) -> dict[str, np.ndarray]:
    """The demo's truth about edits, as columns for the edit table (`ganmatch.gan.edits.summarise`): per
    planted attribute `true_delta_<a>` (change of its coordinate, `planted_coordinates`) and `true_flip_<a>`,
    and per outcome `outcome_before_<o>` / `outcome_<o>` (`planted_outcome`). `originals` are repeated to the
    edits' rows."""
    before = planted_coordinates(originals, directions, latent_truth)
    after = planted_coordinates(edited, directions, latent_truth)
    columns = {}
    for a in before.columns:
        columns[f"true_delta_{a}"] = (after[a] - before[a]).to_numpy(np.float32)
        columns[f"true_flip_{a}"] = ((after[a] > 0) != (before[a] > 0)).to_numpy()
    for o in outcomes:
        columns[f"outcome_before_{o}"] = planted_outcome(originals, directions, latent_truth, treatment)
        columns[f"outcome_{o}"] = planted_outcome(edited, directions, latent_truth, treatment)
    return columns


def render_misaligned(generator, latents, cfg, rng):
    """Render each latent, then place it in a raw photo by a random similarity transform.

    The aligned frame's canonical landmarks move with the photo, so the stored landmarks are exactly what an
    ideal detector would report; alignment must undo the transform.
    """
    aligned = render(generator, latents)
    size = aligned.shape[1]
    raw = cfg["raw_size"]
    mis = cfg["misalign"]
    base = canonical_landmarks(size)
    photos = np.empty((len(aligned), raw, raw, 3), np.uint8)
    marks = np.empty((len(aligned), 5, 2), np.float64)
    centre_shift = (raw - size) / 2.0
    for i, img in enumerate(aligned):
        angle = rng.uniform(-mis["rotate_deg"], mis["rotate_deg"])
        scale = (raw / size) * 0.6 * (1.0 + rng.uniform(-mis["scale"], mis["scale"]))
        shift = rng.uniform(-mis["shift"], mis["shift"], size=2) * raw + centre_shift
        photos[i], marks[i] = similarity_warp(img, base, angle, scale, shift, (raw, raw))
    return photos, np.round(marks, 6)  # micro-pixels: BLAS's last bits in the transform do not reach the file
