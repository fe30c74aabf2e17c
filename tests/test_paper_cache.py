"""The paper_cache route: the reference study's released outputs (distance matrices, latents zip, annotations,
precomputed matches) read in their own formats, the matrices by memory map, and the paper's rules on them.

Every file is synthetic, written here in the released formats at small sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from test_matching_reference import random_case

from ganmatch.analysis import distances
from ganmatch.analysis.matrices import DistanceMatrix, matrix_knn, matrix_neighbour_table, open_matrix
from ganmatch.analysis.neighbours import neighbour_table
from ganmatch.errors import InputDataError
from ganmatch.matching import MatchData, match
from ganmatch.matching.matrix_rules import matrix_reference_pairs
from ganmatch.matching.reference_rules import dense_reference_pairs


def save_matrix(path, X, metric="euclidean", dtype=np.float32):
    """The released format: one .npy n x n matrix of pairwise distances (rows = columns = images in idx
    order)."""
    D = distances.pairwise(X, X, metric, force=True).astype(dtype)
    np.save(path, D)
    return path


def mapped(path, n=None):
    M = open_matrix(path, n)
    return DistanceMatrix(M, np.arange(M.shape[0]), path=str(path))


# ---------------------------------------------------------------- memory map and kNN


def test_matrices_are_memory_mapped_never_loaded(tmp_path, monkeypatch):
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    path = save_matrix(tmp_path / "dists_pairwise_gan.npy", X)
    calls = []
    real = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mmap_mode"))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    M = open_matrix(path, 40)
    assert calls == ["r"] and isinstance(M, np.memmap) and not M.flags.writeable
    D = DistanceMatrix(M, np.arange(40))
    assert isinstance(D.M, np.memmap)
    # a block read returns only the rows asked for
    assert D.rows([3, 5]).shape == (2, 40)


def test_bad_matrix_files_are_named(tmp_path):
    np.save(tmp_path / "rect.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(InputDataError, match="rect.npy.*square"):
        open_matrix(tmp_path / "rect.npy")
    np.save(tmp_path / "sq.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(InputDataError, match="sq.npy.*4 x 4 distances for 6 images"):
        open_matrix(tmp_path / "sq.npy", 6)
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    with pytest.raises(InputDataError, match="junk.npy"):
        open_matrix(tmp_path / "junk.npy")


@pytest.mark.parametrize("block_bytes", [1, 300, 1 << 20])
def test_matrix_neighbours_equal_the_embedding_neighbours(tmp_path, block_bytes):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    X[7] = X[3]  # ties
    treated = (rng.random(60) < 0.4).astype(int)
    ids = np.array([f"{i:05d}" for i in range(60)])
    want = neighbour_table(ids, X, k=5, treated=treated)
    got = matrix_neighbour_table(
        ids, mapped(save_matrix(tmp_path / "m.npy", X)), k=5, treated=treated, block_bytes=block_bytes
    )
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def test_matrix_knn_on_a_subset_of_rows(tmp_path):
    X = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    M = open_matrix(save_matrix(tmp_path / "m.npy", X))
    pos = np.array([2, 5, 6, 11, 20, 29])
    idx, dist = matrix_knn(DistanceMatrix(M, pos), 2, block_bytes=64)
    want_idx, want_dist = distances.knn(X[pos], 2)
    assert (idx == want_idx).all() and np.allclose(dist, want_dist)


# --------------------------------------------------------------- the paper's constrained matching on matrices


@pytest.mark.parametrize(
    "seed,n_id,n_pairs,extra",
    [
        (0, 120, 80, {}),
        (1, 200, 120, {"skip_cost": 1e7}),
        (2, 150, 100, {"penalty": 0.8}),
        (3, 150, 100, {"constraint": False}),
        (5, 400, 150, {"k": 2, "block_bytes": 4096}),  # short lists: rows read again; small blocks
    ],
)
def test_matrix_rules_equal_the_dense_reference(tmp_path, seed, n_id, n_pairs, extra):
    extra = dict(extra)
    X, F, R, treated, codes, glasses, thr = random_case(seed, n_id)
    use_f = extra.pop("constraint", True)
    k, block = extra.pop("k", 4), extra.pop("block_bytes", 1 << 20)
    kw = {"threshold": thr, "gap": (1e-2, 1e6), "n_pairs": n_pairs, **extra}
    G = mapped(save_matrix(tmp_path / "gan.npy", X, dtype=np.float64))
    Fm = mapped(save_matrix(tmp_path / "facial.npy", F)) if use_f else None
    Rm = mapped(save_matrix(tmp_path / "vgg.npy", R))
    got = matrix_reference_pairs(G, Fm, Rm, treated, codes, glasses == 0, k=k, block_bytes=block, **kw)
    want = dense_reference_pairs(X, F if use_f else None, R, treated, codes, glasses == 0, **kw)
    assert got.pairs == want.pairs
    assert got.skipped == want.skipped
    assert got.iterations == want.iterations and got.n_selectable == want.n_selectable
    assert len(got.pairs) > 5 and got.skipped
    if k == 2:
        assert got.n_refills > 0


def test_constant_rows_of_a_released_matrix_are_not_selectable(tmp_path):
    # the reference's code for a missing distance is a constant row, diagonal included: np.all(d[i] == d[i,
    # 0]), of the reference matrix or of the match cost (gan + 1e6 * [facial > 0.6], so a constant gan row
    # alone is not)
    X, F, R, treated, codes, glasses, thr = random_case(7, 60)
    matched = dense_reference_pairs(
        X, F, R, treated, codes, glasses == 0, threshold=thr, gap=(1e-2, 1e6), n_pairs=30
    ).pairs
    victim = matched[0][1]  # the first control the reference matched
    Dg = distances.pairwise(X, X, force=True).astype(np.float64)
    Dr = distances.pairwise(R, R, force=True)
    np.save(tmp_path / "facial.npy", distances.pairwise(F, F, force=True))

    def run_with(gan_row=None, vgg_row=None, diagonal=None):
        G, V = Dg.copy(), Dr.copy()
        if gan_row is not None:
            G[victim, :] = gan_row
        if vgg_row is not None:
            V[victim, :] = vgg_row
            if diagonal is not None:
                V[victim, victim] = diagonal
        np.save(tmp_path / "gan.npy", G)
        np.save(tmp_path / "vgg.npy", V)
        return matrix_reference_pairs(
            mapped(tmp_path / "gan.npy"),
            mapped(tmp_path / "facial.npy"),
            mapped(tmp_path / "vgg.npy"),
            treated,
            codes,
            glasses == 0,
            threshold=thr,
            n_pairs=30,
        )

    got = run_with(vgg_row=5.0)
    assert got.n_constant == 1 and victim not in [p.control for p in got.pairs]
    assert run_with(gan_row=7.0).n_constant == 0  # the facial penalty still varies along the row
    assert run_with(vgg_row=5.0, diagonal=0.0).n_constant == 0  # not constant once the diagonal differs


def test_match_entry_point_takes_distance_matrices(tmp_path):
    X, F, R, treated, codes, glasses, thr = random_case(6, 80)
    n = len(treated)
    mats = {
        name: mapped(save_matrix(tmp_path / f"{name}.npy", A))
        for name, A in (("gan", X), ("facial", F), ("vgg", R))
    }
    data = MatchData(
        ids=np.array([f"{i:05d}" for i in range(n)]),
        treated=treated,
        embeddings=mats,
        identity=codes.astype(str),
        covariates=pd.DataFrame({"eyeglasses": glasses}),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match(
            "greedy_constrained",
            data,
            semantics="reference",
            threshold=thr,
            n_pairs=40,
            reference_gap=(1e-2, 1e6),
            k=5,
        )
    want = dense_reference_pairs(X, F, R, treated, codes, glasses == 0, threshold=thr, n_pairs=40)
    ids = data.ids
    got = list(
        zip(
            res.pairs.treated_id,
            res.pairs.control_id,
            res.pairs.treated_ref,
            res.pairs.control_ref,
            res.pairs.penalised,
            strict=True,
        )
    )
    assert got == [(ids[p.treated], ids[p.control], ids[p.treated_ref], ids[p.control_ref], bool(p.penalised))
                   for p in want.pairs]
    assert np.allclose(res.pairs["distance"], [p.distance for p in want.pairs])
    assert res.units["weight"].sum() == 2 * len(res.pairs)


# ---------------------------------------------------------------- the released files, in their formats


def synthetic_release(root, seed: int = 0, n_id: int = 30, layers: int = 18, width: int = 8) -> dict:
    """The released outputs of a small CelebA-HQ (about 60 images) in the reference's formats: df.csv,
    dists_pairwise_{gan (float64), facial, vgg}.npy, celeba_hq_latents_stylegan2.zip (00001.npy ..., layers x
    width), and the two precomputed match files made by the reference's rules on these files."""
    import io
    import pickle
    import zipfile

    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, n_id)
    codes = np.repeat(np.arange(n_id), sizes)
    n = len(codes)
    male_id = rng.random(n_id) < 0.4
    male_id[:2] = [True, False]
    gender = male_id[codes].astype(int)
    centre = rng.normal(size=(n_id, 6))
    X = (centre[codes] + 0.5 * rng.normal(size=(n, 6))).astype(np.float32)
    F = (0.4 * centre[codes, :3] + 0.08 * rng.normal(size=(n, 3))).astype(np.float32)
    R = np.round(rng.normal(size=(n, 2)), 1).astype(np.float32)
    glasses = (rng.random(n) < 0.2).astype(int)
    root.mkdir(parents=True, exist_ok=True)
    save_matrix(root / "dists_pairwise_gan.npy", X, dtype=np.float64)
    save_matrix(root / "dists_pairwise_facial.npy", F)
    save_matrix(root / "dists_pairwise_vgg.npy", R)
    W = rng.normal(size=(n, layers, width)).astype(np.float32)
    W[:, :, 0] += 0.3 * gender[:, None]
    with zipfile.ZipFile(root / "celeba_hq_latents_stylegan2.zip", "w") as zf:
        for i in rng.permutation(n):  # any member order
            buf = io.BytesIO()
            np.save(buf, W[i])
            zf.writestr(f"generated_images_0.1/{i + 1:05d}.npy", buf.getvalue())
    df = pd.DataFrame(
        {
            "id": codes + 100,
            "gender": gender,
            "young": (rng.random(n) < 0.6).astype(int),
            "smiling": (rng.random(n) < 0.5).astype(int),
            "eyeglasses": glasses,
            "makeup": ((rng.random(n) < 0.7) & (gender == 0)).astype(int),
            "race4_pred": rng.choice(["White", "Black", "Asian", "Indian"], n, p=[0.6, 0.2, 0.1, 0.1]),
            "yaw": rng.normal(0, 10, n),
            "pitch": rng.normal(0, 5, n),
            "roll": rng.normal(0, 3, n),
            "quality": rng.random(n),
            "fname_id": [f"{i:05d}" for i in range(n)],
        }
    )
    df.columns = [c.lower() for c in df.columns]
    df.to_csv(root / "df.csv")  # pandas' own index becomes the unnamed first column
    # the released constrained matches: the reference's rules on these matrices (gap and penalty as the paper)
    run = dense_reference_pairs(X, F, R, gender, codes, glasses == 0, threshold=0.6, n_pairs=1200)
    Dr = distances.pairwise(R, R, force=True)
    pd.DataFrame(
        {
            "gender_0": [p.control for p in run.pairs],
            "gender_1": [p.treated for p in run.pairs],
            "gender_0_ref": [p.control_ref for p in run.pairs],
            "gender_1_ref": [p.treated_ref for p in run.pairs],
            "dist": [p.distance + 1e6 * p.penalised for p in run.pairs],
            "dist_ref0": [float(Dr[p.control, p.control_ref]) for p in run.pairs],
            "dist_ref1": [float(Dr[p.treated, p.treated_ref]) for p in run.pairs],
        }
    ).to_pickle(root / "matches_gender_num=1200_facerecthresh=0.6.pkl")
    # the released propensity matches: notebook 07's loop on the layer-averaged latents
    Z = W.mean(axis=1)
    p = LogisticRegression(random_state=42).fit(Z, gender).predict_proba(Z)[:, 1]
    g1, g2 = list(np.flatnonzero(gender == 1)), list(np.flatnonzero(gender == 0))
    np.random.seed(42)
    m1, m2 = [], []
    for i in np.random.permutation(len(g1)):
        d = np.abs(p[g1[i]] - p[g2])
        if d.min() <= 0.1:
            m1.append(np.int64(g1[i]))
            m2.append(np.int64(g2.pop(int(np.argmin(d)))))
    with open(root / "matches_propensity_caliper=0.1_matches=605.pkl", "wb") as fh:
        pickle.dump({"matches1": m1, "matches2": m2}, fh)
    return {
        "n": n,
        "X": X,
        "F": F,
        "R": R,
        "gender": gender,
        "codes": codes,
        "glasses": glasses,
        "W": W,
        "run": run,
        "propensity": list(zip(m1, m2, strict=True)),
    }


def test_annotations_latents_and_released_matches_are_read_in_their_formats(tmp_path):
    from ganmatch.data import paper_cache

    rel = synthetic_release(tmp_path)
    n = rel["n"]
    ann = paper_cache.read_annotations(tmp_path / "df.csv")
    index = paper_cache.paper_index(ann, "male", "gender", ["young", "black", "yaw"], 0.2, 0)
    assert index["image_id"].tolist() == [f"{i:05d}" for i in range(n)]
    assert (index["matrix_row"] == np.arange(n)).all() and (index["male"] == rel["gender"]).all()
    assert index["identity"].nunique() == len(np.unique(rel["codes"]))
    assert (index["black"] == (ann["race4_pred"] == "Black")).all() and index["yaw"].dtype == float
    Z = paper_cache.read_latents(tmp_path / "celeba_hq_latents_stylegan2.zip", n, "mean")
    assert np.allclose(Z, rel["W"].mean(axis=1))
    flat = paper_cache.read_latents(tmp_path / "celeba_hq_latents_stylegan2.zip", n, None)
    assert flat.shape == (n, 18 * 8) and np.array_equal(flat[3], rel["W"][3].ravel())
    with pytest.raises(InputDataError, match="latents missing"):
        paper_cache.read_latents(tmp_path / "celeba_hq_latents_stylegan2.zip", n + 2, "mean")
    obj = paper_cache.read_released_pickle(tmp_path / "matches_gender_num=1200_facerecthresh=0.6.pkl")
    table = paper_cache.released_matches(obj, rel["gender"])
    assert list(
        zip(table.treated_pos, table.control_pos, table.treated_ref, table.control_ref, strict=True)
    ) == [(p.treated, p.control, p.treated_ref, p.control_ref) for p in rel["run"].pairs]
    prop = paper_cache.released_matches(
        paper_cache.read_released_pickle(tmp_path / "matches_propensity_caliper=0.1_matches=605.pkl"),
        rel["gender"],
    )
    assert list(zip(prop.treated_pos, prop.control_pos, strict=True)) == rel["propensity"]
    assert (prop["treated_ref"] == -1).all()


def test_a_released_pickle_cannot_run_code(tmp_path):
    import pickle

    from ganmatch.data import paper_cache

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"matches1": [Boom()]}))
    with pytest.raises(InputDataError, match="refused to load builtins.print"):
        paper_cache.read_released_pickle(tmp_path / "evil.pkl")


def test_placed_files_are_verified_and_a_missing_one_says_where_from(tmp_path):
    from ganmatch.data import paper_cache
    from ganmatch.errors import DownloadError
    from ganmatch.stages.download import download_configured

    path = tmp_path / "dists_pairwise_vgg.npy"
    entry = {"urls": [], "path": str(path), "sha256": None, "description": "from the Drive folder X"}
    lock = tmp_path / "lock.json"
    with pytest.raises(
        DownloadError, match=r"no URL is configured.*Get it from from the Drive folder X and put it at"
    ):
        download_configured(str(path), entry, {"lock": str(lock), "retries": 1, "timeout": 1})
    np.save(path, np.zeros((3, 3), np.float32))
    sha = paper_cache.verify_present(entry, lock)  # first use: recorded
    assert sha in lock.read_text()
    assert paper_cache.verify_present(entry, lock) == sha  # later runs: checked
    np.save(path, np.ones((3, 3), np.float32))
    with pytest.raises(DownloadError, match="differs from the one recorded on first use"):
        paper_cache.verify_present(entry, lock)
    with pytest.raises(DownloadError, match="is not the configured"):
        paper_cache.verify_present({**entry, "sha256": "0" * 64}, None)


@pytest.mark.slow
def test_paper_cache_workflow_on_synthetic_released_files(tmp_path):
    """The paper_cache config end to end with Snakemake on ~60 images, every file placed by hand."""
    import yaml
    from helpers import copy_workflow, snakemake

    work = copy_workflow(tmp_path / "work")
    rel = synthetic_release(work / "resources/paper_cache")
    overlay = {
        "downloads": {
            "files": {
                "annotations": {"urls": []},  # placed by hand: nothing is downloaded
                "matches_constrained": {"urls": [], "sha256": None},  # synthetic copies, not the repository's
                "matches_propensity": {"urls": [], "sha256": None},
            }
        },
        "attributes": {"cv_folds": 2},
    }
    (work / "synthetic.yaml").write_text(yaml.safe_dump(overlay))
    snakemake(work, "--configfile", "config/paper_cache.yaml", "synthetic.yaml")
    res = work / "results/paper_cache"
    summary = pd.read_parquet(res / "paper_matches/summary.parquet").set_index("method")
    n_rel = len(rel["run"].pairs)
    assert summary.loc["gan_constrained", "n_released"] == n_rel > 3
    assert (
        summary.loc["gan_constrained", "n_same_position"]
        == n_rel
        == summary.loc["gan_constrained", "n_same_refs"]
    )
    assert summary.loc["propensity_paper", "n_same_position"] == len(rel["propensity"]) > 3
    assert (summary["first_difference"] == 0).all()
    assert "identical at the same position" in (res / "paper_matches/summary.md").read_text()
    assert pd.read_csv(res / "paper_matches/summary.csv")["n_same_position"].tolist() == \
        summary["n_same_position"].tolist()
    ours = pd.read_parquet(res / "matches/gan_constrained.parquet")
    assert ours["penalised"].tolist() == [p.penalised for p in rel["run"].pairs]
    # kNN read from the memory-mapped matrix equals the kNN of the embedding the matrix was made from
    ids = np.array([f"{i:05d}" for i in range(rel["n"])])
    want = neighbour_table(ids, rel["X"], k=10, treated=rel["gender"])
    got = pd.read_parquet(res / "neighbours/gan.parquet")
    assert got[["query", "neighbour", "rank", "scope"]].equals(want[["query", "neighbour", "rank", "scope"]])
    lock = (work / "resources/paper_cache/downloads.lock.json").read_text()
    for name in (
        "df.csv",
        "dists_pairwise_gan.npy",
        "celeba_hq_latents_stylegan2.zip",
        "facerecthresh=0.6.pkl",
    ):
        assert name in lock, name
    for fig in (
        "covariate_means",
        "love_plot",
        "propensity_overlap",
        "neighbour_quality",
        "paper_comparison",
    ):
        assert (res / f"figures/{fig}.pdf").is_file(), fig
    balance = pd.read_parquet(res / "balance/gan_constrained.parquet")
    assert {"yaw", "quality", "black"} <= set(balance["covariate"])
    assert (balance.loc[balance["covariate"] == "yaw", "type"] == "Contin.").all()
    # the fraction figures leave the measured covariates (degrees) to the love plot
    for fig in ("covariate_means", "paper_comparison"):
        shown = set(pd.read_parquet(res / f"figures/{fig}.parquet")["covariate"])
        assert {"young", "black"} <= shown and not {"yaw", "pitch", "roll"} & shown, fig
    nn = pd.read_csv(res / "figures/paper_comparison_neighbours.csv")
    assert nn.astype(str).apply(lambda c: c.str.contains("gan \\+ facial constraint")).any().any()


def test_start_up_checks_name_the_key():
    import yaml
    from helpers import ROOT

    from ganmatch.settings.checks import paper_cache_problems
    from ganmatch.settings.config import fill_defaults

    config = yaml.safe_load((ROOT / "config/paper_cache.yaml").read_text())
    assert paper_cache_problems(config) == []
    filled = fill_defaults({"paper_cache": {}}, ROOT / "config/schema.yaml")["paper_cache"]
    assert filled == {"annotations": "resources/paper_cache/df.csv", "treatment_column": "gender",
                      "metrics": ["yaw", "pitch", "roll", "quality"], "test_fraction": 0.2, "released": {}}
    bad = yaml.safe_load((ROOT / "config/paper_cache.yaml").read_text())
    bad["matching"]["methods"]["propensity"]["embedding"] = "gan"          # a matrix under a nearest method
    bad["paper_cache"]["released"]["nope"] = bad["paper_cache"]["released"]["gan_constrained"]
    bad["embeddings"]["vgg"]["path"] = "resources/paper_cache/elsewhere.npy"
    bad["attributes"]["embedding"] = "facial"
    problems = "\n".join(paper_cache_problems(bad))
    for key in ("'matching.methods.propensity.embedding'",
                "'paper_cache.released.nope' names no matching method",
                "'embeddings.vgg.path'", "'attributes.embedding'"):
        assert key in problems, key
    demo = {"source": "demo", "embeddings": {"m": {"kind": "matrix", "path": "x.npy"}}}
    assert "'embeddings.m.kind' is matrix" in paper_cache_problems(demo)[0]


def test_smallest_k_is_exact_with_many_ties():
    from ganmatch.analysis.matrices import smallest_k

    V = np.random.default_rng(4).integers(0, 5, (200, 40)).astype(float)
    V[3, :] = np.inf
    for k in (1, 3, 7, 40):
        idx, val = smallest_k(V, k)
        want = np.array([np.lexsort((np.arange(40), row))[:k] for row in V])
        assert (idx == want).all() and (val == np.take_along_axis(V, want, axis=1)).all()


def test_benchmark_runs_small_and_deletes_its_matrix(tmp_path):
    import sys

    from helpers import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import paper_cache as bench

    bench.main(["--n", "400", "--dir", str(tmp_path), "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out.csv").set_index("case")
    assert {"write_matrix", "knn", "constrained"} <= set(table.index)
    assert table.loc["knn", "rows"] == 400 * 10 * 2 and table.loc["constrained", "pairs"] > 0
    assert (table.loc[["knn", "constrained"], "peak_rss_gb"] > 0).all()
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob("*.npz"))
