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
from ganmatch.errors import InputDataError
from ganmatch.matching import MatchData, match
from ganmatch.matching.matrix_rules import matrix_reference_pairs
from ganmatch.matching.reference_rules import dense_reference_pairs


def save_matrix(path, X, metric="euclidean", dtype=np.float32):
    """The released format: one .npy n x n matrix of pairwise distances (rows = columns = images in idx order)."""
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
    X[7] = X[3]                                    # ties
    treated = (rng.random(60) < 0.4).astype(int)
    ids = np.array([f"{i:05d}" for i in range(60)])
    want = distances.neighbour_table(ids, X, k=5, treated=treated)
    got = matrix_neighbour_table(ids, mapped(save_matrix(tmp_path / "m.npy", X)), k=5, treated=treated,
                                 block_bytes=block_bytes)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def test_matrix_knn_on_a_subset_of_rows(tmp_path):
    X = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    M = open_matrix(save_matrix(tmp_path / "m.npy", X))
    pos = np.array([2, 5, 6, 11, 20, 29])
    idx, dist = matrix_knn(DistanceMatrix(M, pos), 2, block_bytes=64)
    want_idx, want_dist = distances.knn(X[pos], 2)
    assert (idx == want_idx).all() and np.allclose(dist, want_dist)


# ---------------------------------------------------------------- the paper's constrained matching on matrices


@pytest.mark.parametrize("seed,n_id,n_pairs,extra", [
    (0, 120, 80, {}),
    (1, 200, 120, {"skip_cost": 1e7}),
    (2, 150, 100, {"penalty": 0.8}),
    (3, 150, 100, {"constraint": False}),
    (5, 400, 150, {"k": 2, "block_bytes": 4096}),    # short lists: rows read again; small blocks
])
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
    # the reference's code for a missing distance is a constant row, diagonal included: np.all(d[i] == d[i, 0]),
    # of the reference matrix or of the match cost (gan + 1e6 * [facial > 0.6], so a constant gan row alone is not)
    X, F, R, treated, codes, glasses, thr = random_case(7, 60)
    matched = dense_reference_pairs(X, F, R, treated, codes, glasses == 0, threshold=thr, gap=(1e-2, 1e6),
                                    n_pairs=30).pairs
    victim = matched[0][1]                           # the first control the reference matched
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
        return matrix_reference_pairs(mapped(tmp_path / "gan.npy"), mapped(tmp_path / "facial.npy"),
                                      mapped(tmp_path / "vgg.npy"), treated, codes, glasses == 0, threshold=thr,
                                      n_pairs=30)

    got = run_with(vgg_row=5.0)
    assert got.n_constant == 1 and victim not in [p[1] for p in got.pairs]
    assert run_with(gan_row=7.0).n_constant == 0          # the facial penalty still varies along the row
    assert run_with(vgg_row=5.0, diagonal=0.0).n_constant == 0   # not constant once the diagonal differs


def test_match_entry_point_takes_distance_matrices(tmp_path):
    X, F, R, treated, codes, glasses, thr = random_case(6, 80)
    n = len(treated)
    mats = {name: mapped(save_matrix(tmp_path / f"{name}.npy", A))
            for name, A in (("gan", X), ("facial", F), ("vgg", R))}
    data = MatchData(ids=np.array([f"{i:05d}" for i in range(n)]), treated=treated, embeddings=mats,
                     identity=codes.astype(str), covariates=pd.DataFrame({"eyeglasses": glasses}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match("greedy_constrained", data, semantics="reference", threshold=thr, n_pairs=40,
                    reference_gap=(1e-2, 1e6), k=5)
    want = dense_reference_pairs(X, F, R, treated, codes, glasses == 0, threshold=thr, n_pairs=40)
    ids = data.ids
    got = list(zip(res.pairs.treated_id, res.pairs.control_id, res.pairs.treated_ref, res.pairs.control_ref,
                   res.pairs.penalised, strict=True))
    assert got == [(ids[t], ids[c], ids[rt], ids[rc], bool(p)) for t, c, rt, rc, _, p, _ in want.pairs]
    assert np.allclose(res.pairs["distance"], [p[4] for p in want.pairs])
    assert res.units["weight"].sum() == 2 * len(res.pairs)
