"""Exact kNN: known answers, equality with a brute-force sort of `pairwise`, ties, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ganmatch.analysis import distances, neighbours
from ganmatch.errors import InputDataError


def brute(X, k, metric="euclidean", Y=None, exclude_self=True):
    P = distances.pairwise(X, Y, metric)
    if Y is None and exclude_self:
        np.fill_diagonal(P, np.inf)
    cols = np.broadcast_to(np.arange(P.shape[1]), P.shape)
    o = np.lexsort((cols, P), axis=-1)[:, :k]
    return o, np.take_along_axis(P, o, axis=1)


def test_known_answer_on_a_line():
    X = np.array([[0.0], [1.0], [3.0], [7.0]], np.float32)
    idx, dist = distances.knn(X, 2)
    assert idx.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert np.allclose(dist, [[1, 3], [1, 2], [2, 3], [4, 6]])
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    idx, dist = distances.knn(X, 1, exclude_self=False)
    assert idx[:, 0].tolist() == [0, 1, 2, 3] and (dist == 0).all()


def test_ties_broken_by_lower_index():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], np.float32)
    idx, dist = distances.knn(X[:1], 3, Y=X[1:], exclude_self=False)
    assert idx.tolist() == [[0, 1, 2]] and np.allclose(dist, 1)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block", [7, 2048])
def test_equals_brute_force(metric, block):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(400, 24)) + 3).astype(np.float32)
    X[10] = X[20] = X[30]  # exact duplicates: ties at distance 0
    Y = rng.normal(size=(150, 24)).astype(np.float32)
    for args in ({}, {"Y": Y, "exclude_self": False}):
        idx, dist = distances.knn(X, 12, metric, block_size=block, **args)
        o, d = brute(X, 12, metric, **args)
        assert (idx == o).all()
        assert (dist == d).all()  # bit-identical to pairwise


def test_many_ties_take_the_wide_search(monkeypatch):
    monkeypatch.setattr(distances, "_MARGIN", 1)
    rng = np.random.default_rng(1)
    base = rng.normal(size=(1, 8)).astype(np.float32)
    X = np.vstack([np.repeat(base, 40, axis=0), rng.normal(size=(60, 8)).astype(np.float32) + 100])
    X = X[rng.permutation(len(X))]
    idx, dist = distances.knn(X, 5, block_size=16)
    o, d = brute(X, 5)
    assert (idx == o).all() and (dist == d).all()


def test_chunked_matmul_for_wide_embeddings(monkeypatch):
    monkeypatch.setattr(distances, "_CHUNK", 8)
    rng = np.random.default_rng(6)
    X = (rng.normal(size=(200, 30)) + 2).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        idx, dist = distances.knn(X, 7, metric, block_size=64)
        o, d = brute(X, 7, metric)
        assert (idx == o).all() and (dist == d).all()


def test_high_offset_data_stays_exact():
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(300, 64)) * 0.01 + 1000).astype(np.float32)
    idx, _ = distances.knn(X, 10, block_size=50)
    assert (idx == brute(X, 10)[0]).all()


def test_wplus_is_flattened():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(50, 3, 8)).astype(np.float32)
    a = distances.knn(W, 4)
    b = distances.knn(W.reshape(50, 24), 4)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_k_larger_than_n_warns_and_truncates():
    X = np.arange(8, dtype=np.float32).reshape(4, 2)
    with pytest.warns(UserWarning, match="only 3"):
        idx, dist = distances.knn(X, 10)
    assert idx.shape == (4, 3)
    with pytest.warns(UserWarning):
        idx, _ = distances.knn(X[:1], 3)
    assert idx.shape == (1, 0)


def test_bad_input_errors():
    X = np.ones((5, 3), np.float32)
    X[2, 1] = np.nan
    with pytest.raises(InputDataError, match=r"NaN.*\[2\]"):
        distances.knn(X, 2)
    with pytest.raises(InputDataError, match="metric"):
        distances.knn(np.ones((3, 2)), 1, metric="manhattan")
    with pytest.raises(InputDataError, match="zero norm"):
        distances.knn(np.zeros((3, 2)), 1, metric="cosine")
    with pytest.raises(InputDataError, match="positive integer"):
        distances.knn(np.ones((3, 2)), 0)
    with pytest.raises(InputDataError, match="features"):
        distances.knn(np.ones((3, 2)), 1, Y=np.ones((3, 4)))


def test_pairwise_refuses_big_dense(monkeypatch):
    monkeypatch.setattr(distances, "MAX_DENSE", 10)
    with pytest.raises(InputDataError, match="too big"):
        distances.pairwise(np.ones((4, 2)), np.ones((4, 2)))
    assert distances.pairwise(np.ones((4, 2)), np.zeros((4, 2)), force=True).shape == (4, 4)


def test_cosine_values():
    X = np.array([[1, 0], [0, 2], [1, 1], [-3, 0]], np.float32)
    P = distances.pairwise(X, metric="cosine")
    assert np.allclose(P[0], [0, 1, 1 - np.sqrt(0.5), 2], atol=1e-6)


def test_pair_distances_match_pairwise():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 16)).astype(np.float32)
    P = distances.pairwise(X)
    r, c = rng.integers(0, 30, 50), rng.integers(0, 30, 50)
    assert (distances.pair_distances(distances.prepare(X), distances.prepare(X), r, c) == P[r, c]).all()


def test_neighbour_table_contract():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    ids = [f"img{i}" for i in range(40)]
    treated = np.array([1] * 15 + [0] * 25)
    tab = neighbours.neighbour_table(ids, X, k=5, treated=treated)
    assert list(tab.columns) == ["query", "neighbour", "distance", "rank", "scope"]
    assert tab["distance"].dtype == np.float32
    assert (tab.groupby(["scope", "query"]).size() == 5).all()
    allq = tab[tab.scope == "all"]
    assert (allq["query"] != allq["neighbour"]).all()
    cross = tab[tab.scope == "cross"]
    grp = pd.Series(treated, index=ids)
    assert (grp.loc[cross["query"]].to_numpy() != grp.loc[cross["neighbour"]].to_numpy()).all()
    first = tab[(tab.scope == "all") & (tab["rank"] == 1)].set_index("query")
    idx, dist = distances.knn(X, 1)
    assert first.loc[ids, "neighbour"].tolist() == [ids[j] for j in idx[:, 0]]
    with pytest.raises(InputDataError, match="0/1"):
        neighbours.neighbour_table(ids, X, 3, treated=np.full(40, 2))
    with pytest.raises(InputDataError, match="unique"):
        neighbours.neighbour_table(["a"] * 40, X, 3)


def test_pairwise_memmap_equals_in_memory(tmp_path):
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((37, 5)).astype(np.float32), rng.standard_normal((23, 5)).astype(np.float32)
    dense = distances.pairwise(X, Y)
    mapped = distances.pairwise(X, Y, out_path=tmp_path / "d.npy", block_size=4)
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32
    assert np.array_equal(np.asarray(mapped), dense)
    assert [p.name for p in tmp_path.iterdir()] == ["d.npy"]  # no temporary left behind


@pytest.mark.parametrize("metric,d", [("euclidean", 7), ("cosine", 7), ("l1", 7), ("euclidean", 768)])
def test_row_search_equals_knn_on_the_chosen_rows(metric, d):
    """A refill's search (one row among a subset, prepared once) gives knn's indices and float32 distances,
    ties by index included (duplicated rows)."""
    rng = np.random.default_rng(11)
    X = (rng.normal(size=(20, d)) + 2).astype(np.float32)
    Y = (rng.normal(size=(300, d)) + 2).astype(np.float32)
    Y[50:60] = Y[40]
    X[3] = Y[40]
    search = distances.RowSearch(X, Y, metric)
    for row in range(len(X)):
        cols = np.flatnonzero(rng.random(len(Y)) < 0.6)
        for k in (1, 5, 12, len(cols) + 3):
            got = search.nearest(row, cols, k)
            idx, dist = brute(X[row:row + 1], k, metric, Y=Y[cols], exclude_self=False)
            assert got[0].tolist() == cols[idx[0]].tolist() and np.array_equal(got[1], dist[0])
    with pytest.raises(InputDataError, match="features"):
        distances.RowSearch(X, Y[:, :3], metric)
