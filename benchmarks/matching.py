"""Benchmark of exact kNN and greedy constrained matching (issue 6), on synthetic data.

Each case runs in its own process (so peak memory is its own) with BLAS/torch threads limited:
- knn: k=100 exact neighbours of N x D float32 (D=512, and 18 x 512 W+ with --full), time and peak RSS,
  with ganmatch (`distances.knn`, backend "auto"; exact, distances bit-identical to `pairwise`), faiss-cpu's
  exact flat search (`IndexFlatL2`, float32 distances, ties in any order) and scikit-learn's brute-force
  `NearestNeighbors` in the same run, against one raw float32 matmul X @ X.T and the blocked matmul;
- constrained: greedy constrained matching (gan distance, facial penalty, vgg references) at N, with the
  reference study's semantics and with the corrected ones;
- dense: the reference rules on full matrices (`dense_reference_pairs`) at small N, and our heap version on
  the same data for the time ratio and a check that both give the same pairs;
- matchit: MatchIt's nearest, nearest with a caliper, optimal and full on a precomputed propensity score,
subclass
  on it, cem and cardinality on the two covariates, at 5,000 and 30,000 units, with ganmatch, pymatchit-causal
  (the
  `peers` extra, when installed) and R's MatchIt with optmatch (when `R_LIBS` or /opt/r-peers has them), each
  with
  its objective (pair and full methods), matched units and largest |SMD| (`--only matchit`, `--tools`); a peer
  row
  past 5 minutes is recorded as a timeout.

Default run (a few minutes on 2 cores): N=10,000.  `--full`: N=30,000, W+ and 1,200 pairs (run once).
Writes benchmarks/results/matching.csv and matching.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _limit_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _peak_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _rss_gb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


# ---------------------------------------------------------------- synthetic data


def synthetic_faces(n: int, seed: int = 0, d_gan: int = 512, d_face: int = 128, d_vgg: int = 256):
    """Identities with 1-9 photos, gender per identity, a gan embedding, a facial embedding in which photos
    of one identity lie within ~0.4 (a few look-alike identities across genders within 0.6), and a vgg
    embedding; 10% of photos wear glasses."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 10, size=n)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    sizes[-1] -= sizes.sum() - n
    n_id = len(sizes)
    ident = np.repeat(np.arange(n_id), sizes)
    male = (rng.random(n_id) < 0.42).astype(int)[ident]
    gan = (rng.normal(size=(n_id, d_gan))[ident] * 3 + rng.normal(size=(n, d_gan)) * 2).astype(np.float32)
    look = rng.integers(0, n_id // 3, size=n_id)  # look-alike groups of ~3 identities
    face = rng.normal(size=(n_id // 3 + 1, d_face))[look] + 0.45 * rng.normal(size=(n_id, d_face))
    face = face / np.linalg.norm(face, axis=1, keepdims=True)
    facial = (face[ident] + rng.normal(size=(n, d_face)) * 0.02).astype(np.float32)
    vgg = (rng.normal(size=(n_id, d_vgg))[ident] + rng.normal(size=(n, d_vgg)) * 0.5).astype(np.float32)
    glasses = (rng.random(n) < 0.1).astype(int)
    ids = np.array([f"img{i:06d}" for i in range(n)])
    return ids, male, ident.astype(str), gan, facial, vgg, pd.DataFrame({"eyeglasses": glasses})


# ---------------------------------------------------------------- cases (run in a child process)


def case_knn(n: int, d: int, k: int, nlat: int = 1) -> dict:
    import numpy as np

    from ganmatch.analysis import distances

    X = np.random.default_rng(0).normal(size=(n, nlat * d)).astype(np.float32)
    warm = _warm_knn(X[:2048], k)
    base = _rss_gb()
    t = time.perf_counter()
    idx, _ = distances.knn(X, k)
    sec = time.perf_counter() - t
    return {"case": "knn", "n": n, "dim": f"{nlat}x{d}" if nlat > 1 else str(d), "k": k, "seconds": sec,
            "warmup_seconds": warm,
            "peak_gb": _peak_gb(), "extra_gb": _peak_gb() - base, "input_gb": X.nbytes / 1024**3,
            "backend": distances._choose_backend("auto", None, X.shape[1], True)[0]}


def case_knn_faiss(n: int, d: int, k: int, nlat: int = 1) -> dict:
    """faiss-cpu's exact flat L2 search of X against itself (k + 1: the row itself comes back too)."""
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    X = np.random.default_rng(0).normal(size=(n, nlat * d)).astype(np.float32)
    base = _rss_gb()
    t = time.perf_counter()
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(X)
    index.search(X, k + 1)
    sec = time.perf_counter() - t
    return {"case": "knn_faiss", "n": n, "dim": f"{nlat}x{d}" if nlat > 1 else str(d), "k": k, "seconds": sec,
            "peak_gb": _peak_gb(), "extra_gb": _peak_gb() - base, "backend": f"faiss {faiss.__version__}"}


def case_knn_sklearn(n: int, d: int, k: int, nlat: int = 1) -> dict:
    """scikit-learn's brute-force NearestNeighbors (kneighbors() without X leaves each row out)."""
    import numpy as np
    import sklearn
    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(0).normal(size=(n, nlat * d)).astype(np.float32)
    base = _rss_gb()
    t = time.perf_counter()
    NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X).kneighbors()
    sec = time.perf_counter() - t
    return {"case": "knn_sklearn", "n": n, "dim": f"{nlat}x{d}" if nlat > 1 else str(d), "k": k,
            "seconds": sec, "peak_gb": _peak_gb(), "extra_gb": _peak_gb() - base,
            "backend": f"scikit-learn {sklearn.__version__}"}


def case_matmul(n: int, d: int, nlat: int = 1) -> dict:
    import numpy as np

    X = np.random.default_rng(0).normal(size=(n, nlat * d)).astype(np.float32)
    base = _rss_gb()
    t = time.perf_counter()
    G = X @ X.T
    sec = time.perf_counter() - t
    del G
    return {"case": "matmul", "n": n, "dim": f"{nlat}x{d}" if nlat > 1 else str(d), "seconds": sec,
            "peak_gb": _peak_gb(), "extra_gb": _peak_gb() - base}


def case_matmul_blocked(n: int, d: int, nlat: int = 1, block: int = 2048) -> dict:
    """The same product computed in row blocks into one reused buffer: the matmul work inside knn."""
    import numpy as np

    X = np.random.default_rng(0).normal(size=(n, nlat * d)).astype(np.float32)
    buf = np.empty((block, n), np.float32)
    base = _rss_gb()
    t = time.perf_counter()
    for i0 in range(0, n, block):
        np.matmul(X[i0:i0 + block], X.T, out=buf[: min(block, n - i0)])
    sec = time.perf_counter() - t
    return {"case": "matmul_blocked", "n": n, "dim": f"{nlat}x{d}" if nlat > 1 else str(d), "seconds": sec,
            "peak_gb": _peak_gb(), "extra_gb": _peak_gb() - base}


def _warm_knn(X=None, k: int = 10) -> float:
    """Seconds of a first small search (of X, default 2,048 x 64): loads ganmatch's compiled kNN kernels from
    numba's on-disk cache (compiled once per install), a one-off per process."""
    import numpy as np

    from ganmatch.analysis import distances

    X = np.random.default_rng(1).normal(size=(2048, 64)).astype(np.float32) if X is None else X
    t = time.perf_counter()
    distances.knn(X, k, block_size=1024)
    return time.perf_counter() - t


def case_constrained(n: int, n_pairs: int, k: int = 100, semantics: str = "reference") -> dict:
    import warnings

    from ganmatch.matching import MatchData, match

    warm = _warm_knn()
    ids, male, ident, gan, facial, vgg, cov = synthetic_faces(n)
    data = MatchData(ids=ids, treated=male, embeddings={"gan": gan, "facial": facial, "vgg": vgg},
                     identity=ident, covariates=cov)
    base = _rss_gb()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match("greedy_constrained", data, n_pairs=n_pairs, k=k, semantics=semantics)
    sec = time.perf_counter() - t
    return {"case": f"greedy_constrained ({semantics})", "n": n, "dim": "512/128/256", "k": k, "seconds": sec,
            "peak_gb": _peak_gb(), "extra_gb": _peak_gb() - base, "pairs": int(len(res.pairs)),
            "penalised": int(res.pairs["penalised"].sum()) if len(res.pairs) else 0,
            "skipped": res.info.get("n_skipped", 0), "refills": res.info["n_refills"], "warmup_seconds": warm}


def case_dense(n: int, n_pairs: int) -> dict:
    """The reference rules read literally on full matrices (`dense_reference_pairs`, which holds the n x n
    cost matrix and slices it every iteration, as the reference) against the heap version on the same data."""
    import warnings

    import pandas as pd

    from ganmatch.matching import MatchData, match
    from ganmatch.matching.reference_rules import dense_reference_pairs

    warm = _warm_knn()
    ids, male, ident, gan, facial, vgg, cov = synthetic_faces(n)
    codes = pd.factorize(ident)[0]
    base = _rss_gb()
    t = time.perf_counter()
    ref = dense_reference_pairs(gan, facial, vgg, male, codes, cov["eyeglasses"].to_numpy() != 1,
                                n_pairs=n_pairs)
    sec_dense = time.perf_counter() - t
    data = MatchData(ids=ids, treated=male, embeddings={"gan": gan, "facial": facial, "vgg": vgg},
                     identity=ident, covariates=cov)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = match("greedy_constrained", data, n_pairs=n_pairs, semantics="reference")
    sec = time.perf_counter() - t
    want = [(ids[p.treated], ids[p.control], ids[p.treated_ref], ids[p.control_ref]) for p in ref.pairs]
    got = list(zip(res.pairs.treated_id, res.pairs.control_id, res.pairs.treated_ref, res.pairs.control_ref,
                   strict=True))
    return {"case": "dense_reference", "n": n, "dim": "512/128/256", "seconds": sec_dense,
            "heap_seconds": sec,
            "pairs": len(ref.pairs), "skipped": len(ref.skipped), "same_pairs": bool(want == got),
            "peak_gb": _peak_gb(), "extra_gb": _peak_gb() - base, "warmup_seconds": warm}


# ----------------------------------------------------------- MatchIt's methods: ganmatch, pymatchit-causal, R

SCORE = {"distance": "score", "score": "ps"}
# name -> (ganmatch method and options, pymatchit options, R options; caliper in score SDs)
MATCHIT_METHODS = {
    "nearest": ("nearest", SCORE, {"method": "nearest"}, {"method": "nearest"}),
    "caliper": ("nearest", {**SCORE, "caliper": 0.1}, {"method": "nearest", "caliper": 0.1},
                {"method": "nearest", "caliper": 0.1}),
    "optimal": ("optimal", SCORE, {"method": "optimal"}, {"method": "optimal"}),
    "full": ("full", SCORE, {"method": "full"}, {"method": "full"}),
    "subclass": ("subclass", {**SCORE, "subclass": 6}, {"method": "subclass", "subclass": 6},
                 {"method": "subclass", "subclass": 6}),
    "cem": ("cem", {"covariates": ["x1", "x2"]}, {"method": "cem"}, {"method": "cem"}),
    # tols 0.05 SDs of the treated on x1 and x2, 1:1 (pymatchit-causal: std_tols is its tolerance in SDs)
    "cardinality": ("cardinality", {"covariates": ["x1", "x2"], "tols": 0.05}, {"method": "cardinality",
                    "std_tols": 0.05, "ratio": 1}, {"method": "cardinality", "tols": 0.05}),
}
OBJECTIVE_METHODS = ("nearest", "caliper", "optimal", "full")      # total within-set distance compared
PEER_TIMEOUT = 300              # seconds; a row past it is recorded as a timeout
TREATED_SHARE = 8_693 / 30_000        # the issue's 30,000 units with 8,693 treated


def synthetic_scores(n: int, seed: int = 0):
    """n units, a share of 8,693 / 30,000 treated chosen by a confounded logistic model of two covariates, and
    the model's propensity score as a precomputed distance (MatchIt's numeric `distance`)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    lin = 0.8 * x[:, 0] - 0.5 * x[:, 1]
    noisy = lin + rng.logistic(size=n)
    treat = np.zeros(n, int)
    treat[np.argsort(-noisy)[: round(n * TREATED_SHARE)]] = 1
    ps = 1.0 / (1.0 + np.exp(-(lin - np.log((1 - TREATED_SHARE) / TREATED_SHARE))))
    return pd.DataFrame({"id": [f"u{i}" for i in range(n)], "treat": treat, "x1": x[:, 0], "x2": x[:, 1],
                         "ps": ps})


def subclass_objective(frame, subclass) -> float:
    """The total within-set distance on the score: every (treated, control) pair of a matched set summed
    (pairs, k:1 sets and full matching's stars alike)."""
    import numpy as np
    import pandas as pd

    d = pd.DataFrame({"ps": frame["ps"].to_numpy(), "t": frame["treat"].to_numpy(),
                      "s": pd.to_numeric(pd.Series(np.asarray(subclass, dtype=object)),
                                         errors="coerce").to_numpy()})
    d = d.dropna().sort_values(["s", "t"])
    total = 0.0
    for _, g in d.groupby("s"):
        a, b = g.loc[g["t"] == 1, "ps"].to_numpy(), g.loc[g["t"] == 0, "ps"].to_numpy()
        total += float(np.abs(a[:, None] - b[None, :]).sum())
    return total


def max_abs_smd(frame, weights) -> float:
    """The largest |weighted mean difference| of x1, x2 over the treated's SD (the balance every tool
    reaches)."""
    import numpy as np

    w, t = np.asarray(weights, np.float64), frame["treat"].to_numpy()
    out = 0.0
    for c in ("x1", "x2"):
        x = frame[c].to_numpy()
        a, b = w[t == 1].sum(), w[t == 0].sum()
        if a <= 0 or b <= 0:
            return float("nan")
        d = (np.dot(w[t == 1], x[t == 1]) / a - np.dot(w[t == 0], x[t == 0]) / b) / x[t == 1].std(ddof=1)
        out = max(out, abs(float(d)))
    return out


WARMUP_UNITS = 500           # each tool's first call, on the first units, untimed
BEST_OF = 3                  # then the fastest of up to 3 calls on all units ...
REPEAT_BELOW = 10.0          # ... repeated only while a call takes under 10 s


def _best_of(run, frame):
    """A tool's warm timing: one untimed call on the first WARMUP_UNITS units (imports, compiled kernels and
    caches loaded, as R's packages are), then the fastest of up to BEST_OF calls on all units. Returns the
    seconds, the last call's result and the calls timed."""
    run(frame.iloc[:WARMUP_UNITS].reset_index(drop=True))
    best, runs = float("inf"), 0
    while True:
        sec, out = run(frame)
        best, runs = min(best, sec), runs + 1
        if runs >= BEST_OF or sec > REPEAT_BELOW:
            return best, out, runs


def case_matchit(tool: str, method: str, n: int) -> dict:
    """One MatchIt method on the synthetic scores with one tool, timed around the matching call only."""
    import numpy as np

    frame = synthetic_scores(n)
    g_method, g_opts, pm_opts, r_opts = MATCHIT_METHODS[method]
    row = {"case": f"matchit_{method}", "tool": tool, "n": n, "dim": "score",
           "n_treated": int(frame.treat.sum())}
    if tool == "ganmatch":
        import warnings

        from ganmatch.matching import MatchData, match

        def run(fr):
            data = MatchData(ids=fr["id"].to_numpy(), treated=fr["treat"].to_numpy(),
                             covariates=fr[["ps", "x1", "x2"]])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                out = match(g_method, data, **g_opts)
                return time.perf_counter() - t, out

        sec, res, runs = _best_of(run, frame)
        # sets numbered (no replacement) or subclasses
        sub = res.units["subclass"].astype("float64").to_numpy()
        weights = res.units["weight"].to_numpy()
        solver = res.info.get("solver", "") if method != "cardinality" else res.info.get("how", "")
        row.update(seconds=sec, solver=solver, backend="ganmatch")
    elif tool == "pymatchit":
        import warnings

        import pymatchit

        def run(fr):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                out = pymatchit.MatchIt(fr[["treat", "x1", "x2"]].copy(), distance=fr["ps"].to_numpy(),
                                        **dict(pm_opts))
                out.fit("treat ~ x1 + x2")
                return time.perf_counter() - t, out

        sec, m, runs = _best_of(run, frame)
        sub = m.data["subclass"].to_numpy()
        weights = m.data["weights"].to_numpy()
        row.update(seconds=sec, backend=f"pymatchit-causal {pymatchit.__version__}")
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            frame.to_csv(f"{tmp}/d.csv", index=False)
            args = ", ".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k,
                             v in r_opts.items())
            dist = "" if method in ("cem", "cardinality") else "distance = d$ps, "
            code = (f'suppressPackageStartupMessages({{library(MatchIt); library(optmatch)}}); '
                    f'd <- read.csv("{tmp}/d.csv"); options(optmatch_max_problem_size = Inf); '
                    f'w <- matchit(treat ~ x1 + x2, data = d[seq_len({WARMUP_UNITS}), ], '
                    f'{dist.replace("d$ps", "d$ps[seq_len(" + str(WARMUP_UNITS) + ")]")}{args}); '
                    f't <- Inf; runs <- 0; repeat {{ runs <- runs + 1; '
                    f'e <- system.time(m <- matchit(treat ~ x1 + x2, data = d, {dist}{args}))[["elapsed"]]; '
                    f't <- min(t, e); if (runs >= {BEST_OF} || e > {REPEAT_BELOW}) break }}; '
                    f's <- if (is.null(m$subclass)) rep(NA_integer_, nrow(d)) else as.integer(m$subclass); '
                    f'write.csv(data.frame(s = s, w = m$weights), "{tmp}/s.csv", row.names = FALSE); '
                    f'cat(t, format(packageVersion("MatchIt")), runs, file = "{tmp}/t.txt")')
            out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, env=_r_env())
            if out.returncode != 0:
                lines = out.stderr.strip().splitlines()
                why = " ".join(x.strip() for x in lines if "Error" in x or "required" in x) or \
                    (lines or ["R failed"])[-1]
                raise RuntimeError(f"R MatchIt: {why}")
            sec, version, runs = open(f"{tmp}/t.txt").read().split()
            runs = int(runs)
            table = np.genfromtxt(f"{tmp}/s.csv", delimiter=",", skip_header=1)
            sub, weights = table[:, 0], table[:, 1]
        row.update(seconds=float(sec), backend=f"R MatchIt {version}")
    import pandas as pd

    sub = pd.to_numeric(pd.Series(np.asarray(sub, dtype=object)), errors="coerce").to_numpy(np.float64)
    if method in OBJECTIVE_METHODS:
        row["objective"] = subclass_objective(frame, sub)
    row["calls"] = runs
    row["n_matched"] = int((np.asarray(weights, np.float64) > 0).sum())
    row["max_abs_smd"] = max_abs_smd(frame, weights)
    row["peak_gb"] = _peak_gb()
    return row


def _r_env() -> dict:
    env = dict(os.environ)
    if not env.get("R_LIBS") and Path("/opt/r-peers").is_dir():
        env["R_LIBS"] = "/opt/r-peers"
    return env


def _has_r_matchit() -> bool:
    import shutil

    if shutil.which("Rscript") is None:
        return False
    out = subprocess.run(["Rscript", "-e", 'cat(requireNamespace("MatchIt", quietly = TRUE) && '
                          'requireNamespace("optmatch", quietly = TRUE) && packageVersion("MatchIt") >= '
                          '"4.5.4")'],
                         capture_output=True, text=True, env=_r_env(), check=False)
    return out.stdout.strip() == "TRUE"


def matchit_plan(sizes=(5_000, 30_000), r_full_max: int | None = None, only_tools: set | None = None) -> list:
    """The MatchIt comparison's runs: each method at each size with ganmatch, pymatchit-causal (when
    installed) and R's MatchIt (when present; with `r_full_max`, R's full matching above that size is recorded
    as a timeout without running it)."""
    import importlib.util

    tools = ["ganmatch"]
    if importlib.util.find_spec("pymatchit") is not None:
        tools.append("pymatchit")
    if _has_r_matchit():
        tools.append("R")
    tools = [t for t in tools if only_tools is None or t in only_tools]
    plan = []
    for n in sizes:
        for method in MATCHIT_METHODS:
            for tool in tools:
                if tool == "R" and method == "full" and r_full_max is not None and n > r_full_max:
                    plan.append(("matchit", "timeout", {"tool": tool, "method": method, "n": n}))
                    continue
                plan.append(("matchit", "matchit", {"tool": tool, "method": method, "n": n}))
    return plan


def case_timeout(tool: str, method: str, n: int) -> dict:
    """A peer row not run because it is known to exceed PEER_TIMEOUT (R's full matching past 5,000 units)."""
    return {"case": f"matchit_{method}", "tool": tool, "n": n, "dim": "score",
            "error": f"timeout (> {PEER_TIMEOUT} s; not run: 32-74 s already at 5,000 units)"}


CASES = {"knn": case_knn, "knn_faiss": case_knn_faiss, "knn_sklearn": case_knn_sklearn, "matmul": case_matmul,
         "matmul_blocked": case_matmul_blocked, "constrained": case_constrained, "dense": case_dense,
         "matchit": case_matchit, "timeout": case_timeout}
KNN_CASES = ("knn", "knn_faiss", "knn_sklearn")


# ---------------------------------------------------------------- driver


def run_child(threads: int, name: str, **kw) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                    os.environ.get("PYTHONPATH")])))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, __file__, "--child", json.dumps({"name": name, "threads": threads, **kw})]
    print("running", name, kw, flush=True)
    # a MatchIt row past PEER_TIMEOUT is recorded as a timeout rather than waited for
    if name == "matchit":
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)     # its own process group: Rscript goes with it
        try:
            stdout, stderr = proc.communicate(timeout=PEER_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            row = {"case": f"matchit_{kw['method']}", **kw, "dim": "score",
                   "error": f"timeout (> {PEER_TIMEOUT} s)"}
            print("  ->", row, flush=True)
            return row
        out = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    else:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        case = f"matchit_{kw['method']}" if name == "matchit" else name
        extra = {"dim": "score"} if name == "matchit" else {}
        return {"case": case, **kw, **extra,
                "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print("  ->", row, flush=True)
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="N=30,000, W+ 30,000 x 18 x 512, 1,200 pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated cases to run "
                                   "(matmul,matmul_blocked,knn,wplus,constrained,dense,matchit)")
    ap.add_argument("--tools", help="MatchIt rows: comma-separated tools to run (ganmatch,pymatchit,R); "
                                    "default all")
    ap.add_argument("--append", action="store_true", help="keep the rows of earlier runs "
                                                          "(results/matching.jsonl)")
    ap.add_argument("--note", help="a line for the table's notes (e.g. how loaded the machine was)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the kNN and matmul cases this many times, interleaved; the table keeps the "
                         "fastest")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        _limit_threads(spec.pop("threads"))
        try:
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        except ImportError:
            pass
        print(json.dumps(CASES[spec.pop("name")](**spec)))
        return

    import pandas as pd

    from ganmatch.data.io import write_table_pair

    n = 30_000 if args.full else 10_000
    pairs = 1_200 if args.full else 400
    plan = [("matmul", "matmul", {"n": n, "d": 512})]
    for _ in range(args.repeat):  # interleaved, so that a change in the machine's load hits every case
        plan += [("matmul_blocked", "matmul_blocked", {"n": n, "d": 512}),
                 *[("knn", case, {"n": n, "d": 512, "k": 100}) for case in KNN_CASES]]
    if args.full:  # one raw 30k x 9216 product segfaulted inside OpenBLAS here: the blocked one stands in
        for _ in range(args.repeat):
            plan += [("wplus", "matmul_blocked", {"n": n, "d": 512, "nlat": 18}),
                     *[("wplus", case, {"n": n, "d": 512, "k": 100, "nlat": 18}) for case in KNN_CASES]]
    plan.append(("constrained", "constrained", {"n": n, "n_pairs": pairs}))
    plan.append(("constrained", "constrained", {"n": n, "n_pairs": pairs, "semantics": "corrected"}))
    for nd in ([2_000, 4_000] if args.full else [2_000]):
        plan.append(("dense", "dense", {"n": nd, "n_pairs": round(pairs * nd / n)}))
    plan += matchit_plan(only_tools=set(args.tools.split(",")) if args.tools else None)
    only = set(args.only.split(",")) if args.only else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / "matching.jsonl"
    stamp = time.time()
    old = log.read_text().splitlines() if args.append and log.exists() else []
    rows = [json.loads(x) for x in old if x.strip()]
    with open(log, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
        for group, name, kw in plan:
            if only is None or group in only:
                row = run_child(args.threads, name, **kw) | {
                    "load_avg": round(os.getloadavg()[0], 1),
                    "run": stamp,
                }
                rows.append(row)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
    # repeats of one run: the fastest row, with the slowest time beside it; a case measured again in a later
    # run (e.g. --append --only wplus) replaces its earlier rows
    df = pd.DataFrame(rows)
    if "run" not in df:
        df["run"] = 0
    df["run"] = df["run"].fillna(0)
    df["tool"] = df["tool"].fillna("") if "tool" in df else ""
    key = ["case", "n", "dim", "tool"]
    last = df.groupby(key)["run"].transform("max")
    df = df[df["run"] == last]
    slowest = df.groupby(key)["seconds"].transform("max")
    runs = df.groupby(key)["seconds"].transform("size")
    df = df.assign(seconds_slowest=slowest, runs=runs).sort_values("seconds")
    df = df.drop_duplicates(subset=key, keep="first").sort_index().reset_index(drop=True)
    if "objective" in df:  # MatchIt rows: each tool against ganmatch on the same case and size
        ref = df[df["tool"] == "ganmatch"].set_index(["case", "n"])
        df["seconds_over_ganmatch"] = [
            r.seconds / ref.loc[(r.case, r.n), "seconds"] if r.tool and (r.case, r.n) in ref.index else None
            for r in df.itertuples()
        ]
        df["objective_minus_ganmatch"] = [
            r.objective - ref.loc[(r.case, r.n), "objective"]
            if r.tool and (r.case, r.n) in ref.index
            else None
            for r in df.itertuples()
        ]
    mm = df[df["case"] == "matmul"].set_index("dim")["seconds"]
    mb = df[df["case"] == "matmul_blocked"].set_index("dim")["seconds"]
    fa = df[df["case"] == "knn_faiss"].set_index("dim")["seconds"]
    df["ratio_to_matmul"] = [
        r.seconds / mm[r.dim] if r.case in KNN_CASES and r.dim in mm else None for r in df.itertuples()
    ]
    df["ratio_to_blocked_matmul"] = [
        r.seconds / mb[r.dim] if r.case in KNN_CASES and r.dim in mb else None for r in df.itertuples()
    ]
    df["ratio_to_faiss"] = [
        r.seconds / fa[r.dim] if r.case in KNN_CASES and r.dim in fa else None for r in df.itertuples()
    ]
    if "heap_seconds" in df:
        df["dense_over_heap"] = df["seconds"] / df["heap_seconds"]
    df["threads"] = args.threads
    df["cpu"] = os.cpu_count()
    head = (
        "# Distances and matching benchmark\n\n"
        f"`python benchmarks/matching.py{' --full' if args.full else ''}` ({args.threads} threads, "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared with other jobs: load_avg is the "
        "1-minute "
        "load when the case ended, and times grow with it). peak_gb = peak RSS of the case's process "
        "(includes "
        "~0.6 GB of Python + torch); extra_gb = above the process after loading its inputs. knn = ganmatch's "
        "exact `distances.knn` (backend: the one `auto` chose), knn_faiss = faiss-cpu `IndexFlatL2` "
        "(float32, "
        "ties in any order), knn_sklearn = scikit-learn brute-force `NearestNeighbors`, all three in the "
        "same run; "
        "ratio_to_faiss and ratio_to_blocked_matmul compare a kNN row with those rows of its size. With "
        "--repeat the "
        "cases ran interleaved `runs` times: seconds is the fastest, seconds_slowest the slowest. "
        "warmup_seconds: "
        "ganmatch's first small search in the process, which loads its compiled kernels from numba's cache "
        "(the "
        "first run after an install compiles them, ~11 s).\n\n" + (f"{args.note}\n\n" if args.note else "")
    )
    write_table_pair(df, RESULTS / "matching", head)
    print(df.to_string())


if __name__ == "__main__":
    main()
