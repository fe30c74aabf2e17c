"""The reference study's greedy constrained matching: greedy on one embedding with an identity-verification
constraint, same-identity reference photos per pair, and whole identities removed once matched."""

from __future__ import annotations

import heapq
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ganmatch.analysis import distances
from ganmatch.analysis.matrices import DistanceMatrix
from ganmatch.errors import ConfigError, InputDataError
from ganmatch.matching.data import MatchData, MatchResult, PairRecord, make_result, split_groups
from ganmatch.matching.greedy import CrossLists
from ganmatch.matching.reference_rules import ReferenceRun, reference_pairs

if TYPE_CHECKING:
    from ganmatch.matching.distance import DistanceMeasure


class _References:
    """Same-identity reference photos per image and the choice of a reference pair for a match.

    refs(i) = other photos of i's identity that pass `exclude`; each carries its reference-embedding
    distance to i. For a pair (t, c) the references are the (r_t, r_c) minimising the gap
    |ref_dist(t, r_t) - ref_dist(c, r_c)| among gaps in [gap_low, gap_high] (ties: lower r_t, then r_c);
    a pair with no such references cannot be matched.
    """

    def __init__(self, identity_codes: np.ndarray, R: np.ndarray | None, metric: str, ref_ok: np.ndarray,
                 gap: tuple[float, float]):
        self.gap = gap
        self.R, self.metric = R, metric
        order = np.argsort(identity_codes, kind="stable")
        bounds = np.flatnonzero(np.diff(identity_codes[order])) + 1
        self.members = {int(identity_codes[g[0]]): g for g in np.split(order, bounds) if len(g)}
        self.codes, self.ref_ok = identity_codes, ref_ok
        self._refs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pairs: dict[tuple[int, int], tuple[int, int, float] | None] = {}

    def refs(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._refs:
            g = self.members[int(self.codes[i])]
            r = g[(g != i) & self.ref_ok[g]]
            if self.R is None or len(r) == 0:
                d = np.zeros(len(r), np.float32)
            else:
                d = distances.pairwise(self.R[i:i + 1], self.R[r], self.metric, force=True)[0]
            self._refs[i] = (r, d)
        return self._refs[i]

    def pair(self, t: int, c: int):
        """(r_t, r_c, gap) for images t and c (global positions), or None when no pair is admissible."""
        key = (t, c)
        if key not in self._pairs:
            rt, dt = self.refs(t)
            rc, dc = self.refs(c)
            out = None
            if len(rt) and len(rc):
                if self.R is None:
                    out = (int(rt[0]), int(rc[0]), 0.0)
                else:
                    gap = np.abs(dt.astype(np.float64)[:, None] - dc.astype(np.float64)[None, :])
                    gap[(gap < self.gap[0]) | (gap > self.gap[1])] = np.inf
                    j = int(np.argmin(gap))
                    if np.isfinite(gap.flat[j]):
                        a, b = divmod(j, gap.shape[1])
                        out = (int(rt[a]), int(rc[b]), float(gap[a, b]))
            self._pairs[key] = out
        return self._pairs[key]


def match_greedy_constrained(data: MatchData, embedding: str = "gan", metric: str = "euclidean",
                             constraint_embedding: str | None = "facial",
                             constraint_metric: str = "euclidean",
                             threshold: float = 0.6, mode: str = "penalty", penalty: float = 1e6,
                             reference_embedding: str | None = "vgg", reference_metric: str = "euclidean",
                             reference_exclude: dict | None = None, reference_gap: tuple = (1e-2, 1e6),
                             min_photos: int = 2, n_pairs: int | None = 1200, max_cost: float | None = None,
                             k: int = 100, random_state: int | None = None, semantics: str = "reference",
                             skip_cost: float = 1e5, *,
                             measure: DistanceMeasure | None = None) -> MatchResult:
    """The reference study's greedy constrained matching, driven by neighbour lists and a heap.

    `semantics="reference"` (default) reproduces csinva/matching-with-gans pair for pair, quirks included
    (see `reference_rules`): constant-row images dropped, an identity's only eligible photo kept as its
    reference, references among all other photos, a pair whose closest reference gap falls outside
    `reference_gap` skipped for that iteration and demoted to `skip_cost`, `n_pairs` iterations at most,
    ties row-major over (controls x treated). It needs mode "penalty", a reference embedding, `min_photos`
    2 and no `max_cost`.

    `semantics="corrected"` is the cleaned-up reading below (references must pass `reference_exclude`, a
    pair without admissible references is never matched, skips do not use up the `n_pairs` budget, ties go
    to the lower treated position). Its exact semantics (the dense version is a loop over the full matrices):
    - cost(t, c) = D(t, c) in `embedding`, plus `penalty` when the `constraint_embedding` distance
      F(t, c) > `threshold` (mode "penalty", as the paper: +1e6), or the pair is forbidden (mode "hard");
      `constraint_embedding=None` means no constraint.
    - an image is selectable when its identity has >= `min_photos` photos and it has a reference: another
      photo of its identity not excluded by `reference_exclude` ({column: value}; default
      {"eyeglasses": 1} when that covariate exists).
    - a pair is admissible when references (r_t, r_c) exist whose `reference_embedding` distances to t and
      c differ by a gap within `reference_gap` (inclusive); the pair's references minimise that gap
      (ties: lower positions). `reference_embedding=None` takes the first reference of each side.
    - repeat: take the admissible pair of live images with the smallest cost (ties: lower treated, then
      control position); record it; remove every image of both identities. Stop after `n_pairs` pairs,
      when the cost (D plus any penalty) exceeds `max_cost`, or when no admissible pair is left. `max_cost`
      caps that cost, not a distance as MatchIt's caliper does, hence its own name.
    Pairs whose constraint distance exceeds the threshold are flagged `penalised`; `distance` is D.
    `measure`: the distance step's result for `embedding` (`distance.distance_measure`, as every distance
    method's); None reads the embedding's rows here (a released distance matrix is read as it is).
    """
    if mode not in ("penalty", "hard"):
        raise ConfigError(f"greedy_constrained: mode must be 'penalty' or 'hard', got '{mode}'.")
    if semantics not in ("reference", "corrected"):
        raise ConfigError("greedy_constrained: semantics must be 'reference' or 'corrected', got "
                          f"'{semantics}' "
                          "(config key matching.methods.<name>.semantics).")
    if data.identity is None:
        raise InputDataError(
            "greedy_constrained needs image identities (column identity of the image index).")
    try:
        reference_gap = tuple(float(x) for x in reference_gap)
    except (TypeError, ValueError):
        raise ConfigError(
            "greedy_constrained: reference_gap must be two numbers [low, high], got "
            f"{reference_gap!r} "
            "(config key matching.methods.<name>.reference_gap; YAML reads 1.0e6 as text, "
            "write 1.0e+6)."
        ) from None
    t_idx, c_idx = split_groups(data, "greedy_constrained")
    if isinstance(data.embeddings.get(embedding), DistanceMatrix):
        return _on_matrices(
            data,
            embedding,
            constraint_embedding,
            reference_embedding,
            reference_exclude,
            semantics,
            mode,
            min_photos,
            max_cost,
            threshold,
            penalty,
            skip_cost,
            reference_gap,
            n_pairs,
            k,
        )
    if measure is not None:
        X, metric = measure.features(), measure.metric
    else:
        X = data.embedding(embedding)
    F = data.embedding(constraint_embedding) if constraint_embedding else None
    R = data.embedding(reference_embedding) if reference_embedding else None
    codes = pd.factorize(data.identity)[0]
    if F is not None:
        check_threshold_scale(F, constraint_metric, codes, threshold, constraint_embedding)
    ref_ok, warn = reference_eligible(data, reference_exclude)
    if semantics == "reference":
        _check_reference_params(mode, R, min_photos, max_cost)
        run = reference_pairs(
            X,
            F,
            R,
            data.treated,
            codes,
            ref_ok,
            metric,
            constraint_metric,
            reference_metric,
            threshold,
            penalty,
            skip_cost,
            tuple(reference_gap),
            n_pairs,
            k,
        )
        return _reference_result(
            data,
            embedding,
            run,
            warn,
            n_pairs,
            {
                "metric": metric,
                "k": k,
                "mode": mode,
                "threshold": threshold,
                "semantics": semantics,
                "skip_cost": skip_cost,
            },
        )
    selectable = selectable_images(codes, ref_ok, min_photos)
    refs = _References(codes, R, reference_metric, ref_ok, tuple(reference_gap))
    lists = CrossLists(X[t_idx], X[c_idx], metric, k)
    streams = threshold_streams(lists, F, t_idx, c_idx, selectable, constraint_metric, metric, threshold, k)
    search = _ConstrainedHeap(
        lists,
        streams,
        refs,
        F,
        t_idx,
        c_idx,
        codes,
        selectable,
        constraint_metric,
        threshold,
        penalty if mode == "penalty" else None,
    )
    out = search.run(n_pairs, max_cost)
    info = {
        "max_cost": search.cost_cap,
        "metric": metric,
        "k": k,
        "mode": mode,
        "threshold": threshold,
        "semantics": semantics,
        "n_selectable_treated": int(selectable[t_idx].sum()),
        "n_selectable_control": int(selectable[c_idx].sum()),
        "n_penalised": int(sum(o.penalised for o in out)),
        "n_refills": lists.n_refills,
        "warnings": warn,
    }
    if n_pairs is not None and len(out) < n_pairs:
        warn.append(f"greedy_constrained: found {len(out)} admissible pairs of the {n_pairs} asked for.")
        warnings.warn(warn[-1], stacklevel=3)
    return _pairs_result(data, embedding, out, info)


# -------------------------------------------------------------- the parts: eligibility, candidate lists, heap


def reference_eligible(data: MatchData, reference_exclude: dict | None) -> tuple[np.ndarray, list[str]]:
    """Photos that may serve as a reference (not excluded by `reference_exclude`, {column: value}; default
    {"eyeglasses": 1} when that covariate exists), and warnings for excluded columns the data lacks."""
    if reference_exclude is None:
        cov_cols = set(data.covariates.columns) if data.covariates is not None else set()
        reference_exclude = {"eyeglasses": 1} if "eyeglasses" in cov_cols else {}
    ref_ok, warn = np.ones(len(data.ids), bool), []
    for col, value in reference_exclude.items():
        if data.covariates is None or col not in data.covariates:
            warn.append(f"reference_exclude: column '{col}' not in the covariates; ignored.")
            continue
        ref_ok &= data.covariates[col].to_numpy() != value
    return ref_ok, warn


def selectable_images(codes: np.ndarray, ref_ok: np.ndarray, min_photos: int) -> np.ndarray:
    """Images whose identity has >= `min_photos` photos and another photo that may serve as its reference."""
    same_group = np.bincount(codes, weights=ref_ok)[codes].astype(np.int64) - ref_ok
    return (np.bincount(codes)[codes] >= min_photos) & (same_group > 0)


def threshold_streams(
    lists: CrossLists,
    F: np.ndarray | None,
    t_idx: np.ndarray,
    c_idx: np.ndarray,
    selectable: np.ndarray,
    constraint_metric: str,
    metric: str,
    threshold: float,
    k: int,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per selectable treated position: the controls within the constraint threshold, sorted by (D, control).

    Found from the constraint embedding's own neighbour lists (complete when its k-th distance is still within
    the threshold: then a full row); D is the matching distance of `lists`."""
    streams: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if F is None:
        return streams
    fl = CrossLists(F[t_idx], F[c_idx], constraint_metric, k)
    for t in range(len(t_idx)):
        if not selectable[t_idx[t]]:
            continue
        cols, fd = fl.idx[t], fl.dist[t]
        if not fl.complete[t] and len(fd) and fd[-1] <= threshold:
            fd = distances.pairwise(fl.Xt[t : t + 1], fl.Xc, constraint_metric, force=True)[0]
            cols = np.arange(len(c_idx))
        cols = cols[fd <= threshold]
        if len(cols):
            d = distances.pairwise(lists.Xt[t : t + 1], lists.Xc[cols], metric, force=True)[0]
            o = np.lexsort((cols, d))
            streams[t] = (cols[o], d[o])
    return streams


class _ConstrainedHeap:
    """The corrected semantics' greedy search: one heap over two streams per treated image (controls within
    the threshold, and penalised or unconstrained ones), lazily advanced as identities are removed."""

    def __init__(
        self, lists, streams, refs, F, t_idx, c_idx, codes, selectable, constraint_metric, threshold, penalty
    ):
        self.lists, self.streams, self.refs = lists, streams, refs
        self.t_idx, self.c_idx, self.codes, self.selectable = t_idx, c_idx, codes, selectable
        self.F, self.threshold, self.constraint_metric = F, threshold, constraint_metric
        self.Fp = distances.prepare(F, constraint_metric) if F is not None else None
        self.alive_c = selectable[c_idx].copy()
        self.id_alive = np.ones(codes.max() + 1, bool)
        self.stream_pos = dict.fromkeys(streams, 0)
        self.use_violating = F is None or penalty is not None
        self.extra_cost = 0.0 if F is None else float(penalty or 0.0)
        self.heap: list = []  # (cost, t, c, stream, distance); stream 0 = within threshold, 1 = penalised
        self.cost_cap = np.inf

    def admissible(self, t: int, c: int) -> bool:
        return self.refs.pair(int(self.t_idx[t]), int(self.c_idx[c])) is not None

    def _stream_head(self, t: int):
        cols, d = self.streams[t]
        p = self.stream_pos[t]
        while p < len(cols) and not (self.alive_c[cols[p]] and self.admissible(t, int(cols[p]))):
            p += 1
        self.stream_pos[t] = p
        return (float(d[p]), int(cols[p])) if p < len(cols) else None

    def _violating(self, t: int, c: int) -> bool:
        if self.F is not None:
            f = float(
                distances.pair_distances(
                    self.Fp, self.Fp, self.t_idx[t], self.c_idx[c], self.constraint_metric
                )[0]
            )
            if f <= self.threshold:
                return False
        return self.admissible(t, c)

    def push(self, t: int, stream: int) -> None:
        h = self._stream_head(t) if stream == 0 else self.lists.head(t, self.alive_c, self._violating)
        if h is not None:
            heapq.heappush(
                self.heap, (h[0] + (self.extra_cost if stream == 1 else 0.0), t, h[1], stream, h[0])
            )

    def run(self, n_pairs: int | None, max_cost: float | None) -> list[PairRecord]:
        """The pairs in matching order."""
        self.cost_cap = np.inf if max_cost is None else float(max_cost)
        for t in range(len(self.t_idx)):
            if not self.selectable[self.t_idx[t]]:
                continue
            if t in self.streams:
                self.push(t, 0)
            if self.use_violating:
                self.push(t, 1)
        limit = np.inf if n_pairs is None else int(n_pairs)
        c_codes = self.codes[self.c_idx]
        out = []
        while self.heap and len(out) < limit:
            cost, t, c, stream, d = self.heap[0]
            if cost > self.cost_cap:
                break
            heapq.heappop(self.heap)
            if not self.id_alive[self.codes[self.t_idx[t]]]:
                continue
            if not self.alive_c[c]:
                self.push(t, stream)
                continue
            rt, rc, gap = self.refs.pair(int(self.t_idx[t]), int(self.c_idx[c]))
            out.append(PairRecord(treated=self.t_idx[t], control=self.c_idx[c], distance=d, treated_ref=rt,
                                  control_ref=rc, penalised=stream == 1 and self.F is not None,
                                  reference_gap=gap))
            for g in (self.codes[self.t_idx[t]], self.codes[self.c_idx[c]]):
                self.id_alive[g] = False
            self.alive_c &= self.id_alive[c_codes]
        return out


def reference_semantics_problems(mode: str, has_reference: bool, min_photos: int, max_cost) -> dict[str, str]:
    """{parameter: why} for settings that have no meaning in the reference study's loop (semantics
    'reference'); the start-up check (`ganmatch.settings.checks`) and the matcher both refuse them."""
    bad = {}
    if mode != "penalty":
        bad["mode"] = f"mode '{mode}' (the reference only penalises: mode: penalty)"
    if not has_reference:
        bad["reference_embedding"] = (
            "no reference_embedding (the reference always chooses references by a distance)"
        )
    if min_photos != 2:
        bad["min_photos"] = (
            f"min_photos {min_photos} (the reference's rule is fixed: single-photo identities only)"
        )
    if max_cost is not None:
        bad["max_cost"] = f"max_cost {max_cost} (the reference has no cost cap)"
    return bad


def _check_reference_params(mode: str, R, min_photos: int, max_cost) -> None:
    """Settings that have no meaning in the reference study's loop stop the run instead of being ignored."""
    bad = reference_semantics_problems(mode, R is not None, min_photos, max_cost)
    if bad:
        raise ConfigError(
            "greedy_constrained with semantics 'reference' cannot take "
            + "; ".join(bad.values())
            + " (config keys matching.methods.<name>.*); use semantics: corrected for these."
        )


def check_threshold_scale(
    F: np.ndarray,
    metric: str,
    codes: np.ndarray,
    threshold: float,
    name: str | None,
    n_sample: int = 4000,
    seed: int = 0,
) -> None:
    """Stop when `threshold` lies outside the constraint embedding's distances (every sampled pair, same
    person or not, above it or below it): the value was meant for another embedding's scale."""
    n = len(F)
    if n < 2:
        return
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, n_sample)
    b = (a + rng.integers(1, n, n_sample)) % n
    order = np.argsort(codes, kind="stable")
    same = np.flatnonzero(codes[order][1:] == codes[order][:-1])[:n_sample]
    a = np.r_[a, order[same]]
    b = np.r_[b, order[same + 1]]
    Fp = distances.prepare(F, metric, f"embedding '{name}'")
    d = distances.pair_distances(Fp, Fp, a, b, metric)
    lo, hi = float(d.min()), float(d.max())
    if not lo <= threshold <= hi:
        raise ConfigError(
            f"greedy_constrained: threshold {threshold} is outside the scale of the constraint "
            f"embedding '{name}' ({metric} distances of sampled pairs span {lo:.4g} - "
            f"{hi:.4g}); "
            "set matching.methods.<name>.threshold for this embedding (dlib: 0.6; FaceNet on "
            "unit vectors: about 1.1)."
        )


def _reference_result(data: MatchData, embedding: str, run: ReferenceRun, warn: list, n_pairs, info: dict):
    """Matches table and info of a reference-semantics run (skipped pairs listed in the info)."""
    ids = data.ids
    info = {
        **info,
        "max_cost": np.inf,
        "n_selectable_treated": run.n_selectable[0],
        "n_selectable_control": run.n_selectable[1],
        "n_constant_rows": run.n_constant,
        "n_penalised": int(sum(p.penalised for p in run.pairs)),
        "n_skipped": len(run.skipped),
        "iterations": run.iterations,
        "n_refills": run.n_refills,
        "skipped": [(str(ids[t]), str(ids[c]), round(g, 6)) for t, c, g in run.skipped],
        "warnings": warn,
    }
    if n_pairs is not None and len(run.pairs) < n_pairs:
        warn.append(
            f"greedy_constrained (reference): {len(run.pairs)} pairs from {run.iterations} "
            "iterations "
            f"of the {n_pairs} allowed ({len(run.skipped)} skipped for their reference gap)."
        )
        warnings.warn(warn[-1], stacklevel=3)
    return _pairs_result(data, embedding, run.pairs, info)


def _pairs_result(data: MatchData, embedding: str, pairs: list[PairRecord], info: dict) -> MatchResult:
    """The matches table of the constrained matchers' pairs, in matching order."""
    ids = data.ids

    def col(name: str, dtype):
        return np.asarray([getattr(p, name) for p in pairs], dtype)

    extra = {
        "treated_ref": ids[col("treated_ref", np.int64)],
        "control_ref": ids[col("control_ref", np.int64)],
        "penalised": col("penalised", bool),
        "reference_gap": col("reference_gap", np.float64),
    }
    return make_result(data, "greedy_constrained", embedding, col("treated", np.int64),
                       col("control", np.int64), col("distance", np.float64), info, extra=extra)


def _on_matrices(
    data: MatchData,
    embedding,
    constraint_embedding,
    reference_embedding,
    reference_exclude,
    semantics,
    mode,
    min_photos,
    max_cost,
    threshold,
    penalty,
    skip_cost,
    reference_gap,
    n_pairs,
    k,
) -> MatchResult:
    """The reference rules on released distance matrices (`matrix_rules`): every embedding the method names
    must then be a `DistanceMatrix`, and only the reference semantics are defined on them."""
    from ganmatch.matching.matrix_rules import matrix_reference_pairs

    names = {
        "embedding": embedding,
        "constraint_embedding": constraint_embedding,
        "reference_embedding": reference_embedding,
    }
    mats = {}
    for key, name in names.items():
        if name is None:
            continue
        M = data.embeddings.get(name)
        if not isinstance(M, DistanceMatrix):
            raise ConfigError(
                f"greedy_constrained: '{embedding}' is a distance matrix, so '{name}' (config "
                f"key matching.methods.<name>.{key}) must be one too (an embedding of kind "
                "matrix)."
            )
        mats[key] = M
    if semantics != "reference":
        raise ConfigError(
            "greedy_constrained on distance matrices runs the reference study's rules only: "
            "set matching.methods.<name>.semantics: reference."
        )
    _check_reference_params(mode, mats.get("reference_embedding"), min_photos, max_cost)
    ref_ok, warn = reference_eligible(data, reference_exclude)
    codes = pd.factorize(data.identity)[0]
    run = matrix_reference_pairs(
        mats["embedding"],
        mats.get("constraint_embedding"),
        mats["reference_embedding"],
        data.treated,
        codes,
        ref_ok,
        threshold,
        penalty,
        skip_cost,
        tuple(reference_gap),
        n_pairs,
        k,
    )
    return _reference_result(
        data,
        embedding,
        run,
        warn,
        n_pairs,
        {
            "metric": "matrix",
            "k": k,
            "mode": mode,
            "threshold": threshold,
            "semantics": semantics,
            "skip_cost": skip_cost,
        },
    )
