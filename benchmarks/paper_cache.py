"""Benchmark of the paper_cache route's 30k path (issue 28): a synthetic 30,000 x 30,000 float32 distance
matrix (3.6 GB, the released files' layout) written under /tmp, then read by memory map in row blocks by
- knn: the kNN stage's neighbour table (`matrices.matrix_neighbour_table`, k=10, scopes all and cross);
- constrained: the paper's greedy constrained matching on matrices (`matrix_rules.matrix_reference_pairs`,
  1,200 pairs, the facial threshold rule and the VGG references; the one file serves as gan, facial and vgg
  matrix, the threshold set at its 1% quantile, sampled).
Each case runs in its own process: seconds and peak RSS (VmHWM) are its own; the matrix file is deleted
at the end. The released matrices are float64 (7.2 GB each) and three: reading them takes 2 x 3 times the
bytes.

    python benchmarks/paper_cache.py [--n 30000] [--dir /tmp]

Writes benchmarks/results/paper_cache.csv and paper_cache.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def write_matrix(
    path: Path, n: int, seed: int = 0, block: int = 1000
) -> tuple[np.ndarray, np.ndarray, float]:
    """An n x n float32 matrix of L2 distances between clustered 16-d points (identities of 1-5 photos),
    written in row blocks through np.lib.format.open_memmap; returns (treated, identity codes, seconds)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n)
    codes = np.repeat(np.arange(n), sizes)[:n]
    centre = rng.normal(size=(codes.max() + 1, 16))
    X = (centre[codes] + 0.5 * rng.normal(size=(n, 16))).astype(np.float32)
    treated = (rng.random(codes.max() + 1) < 0.37)[codes].astype(np.int64)
    sq = np.einsum("ij,ij->i", X, X)
    t0 = time.perf_counter()
    M = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, n))
    for s in range(0, n, block):
        d = sq[s : s + block, None] + sq[None, :] - 2 * (X[s : s + block] @ X.T)
        M[s : s + block] = np.sqrt(np.maximum(d, 0))
    M.flush()
    del M
    return treated, codes, time.perf_counter() - t0


def peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM, reset at exec; ru_maxrss keeps the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_case(case: str, path: str, meta: str) -> dict:
    """One case in this process (called with --case): its seconds and peak RSS."""
    from ganmatch.analysis.matrices import DistanceMatrix, matrix_neighbour_table, open_matrix

    m = np.load(meta)
    treated, codes = m["treated"], m["codes"]
    M = open_matrix(path)
    n = M.shape[0]
    D = DistanceMatrix(M, np.arange(n), path=path)
    rss0 = peak_rss_gb()
    t0 = time.perf_counter()
    out: dict = {}
    if case == "knn":
        table = matrix_neighbour_table(np.array([f"{i:05d}" for i in range(n)]), D, 10, treated)
        out["rows"] = len(table)
    else:
        from ganmatch.matching.matrix_rules import matrix_reference_pairs

        thr = float(np.quantile(D.rows(np.arange(0, n, 97))[:, ::7], 0.01))
        glasses = np.random.default_rng(1).random(n) < 0.07
        run = matrix_reference_pairs(D, D, D, treated, codes, ~glasses, threshold=thr, n_pairs=1200, k=100)
        out.update(
            pairs=len(run.pairs),
            penalised=int(sum(p.penalised for p in run.pairs)),
            skipped=len(run.skipped),
            refills=run.n_refills,
            threshold=round(thr, 4),
        )
    out.update(
        case=case,
        n=n,
        seconds=round(time.perf_counter() - t0, 2),
        peak_rss_gb=round(peak_rss_gb(), 3),
        rss_before_gb=round(rss0, 3),
    )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--reuse", help="an existing matrix .npy (with its .meta.npz) instead of writing one")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--meta", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "paper_cache"))
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.path, args.meta)))
        return
    import pandas as pd

    path = Path(args.reuse or Path(args.dir) / f"ganmatch_bench_dists_{os.getpid()}.npy")
    meta = path.with_suffix(".meta.npz")
    rows = []
    try:
        if not args.reuse:
            treated, codes, secs = write_matrix(path, args.n)
            np.savez(meta, treated=treated, codes=codes)
            rows.append({"case": "write_matrix", "n": args.n, "seconds": round(secs, 2),
                         "file_gb": round(path.stat().st_size / 1e9, 3)})
        env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
        for case in ("knn", "constrained"):
            proc = subprocess.run(
                [sys.executable, __file__, "--case", case, "--path", str(path), "--meta", str(meta)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    finally:
        path.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
    table = pd.DataFrame(rows)
    table["load_avg"] = round(os.getloadavg()[0], 1)
    table["cpu"] = platform.processor() or platform.machine()
    table["date"] = time.strftime("%Y-%m-%d")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(f"{args.out}.csv", index=False)
    Path(f"{args.out}.md").write_text(
        "# paper_cache: the 30k path on a memory-mapped matrix\n\n"
        f"`python benchmarks/paper_cache.py --n {args.n}`: a synthetic {args.n:,} x {args.n:,} float32 "
        "distance matrix written under /tmp (deleted afterwards), each case in its own process (seconds and "
        "peak RSS (VmHWM) its own, the Python + numpy + pandas start included in peak_rss_gb; "
        "rss_before_gb = after the imports). The file is read by np.load(mmap_mode='r') in row blocks of "
        "64 MB; the pages read are dropped from the process after each block (they stay in the OS page "
        "cache), so RSS stays far below the file size. constrained: one file serves as gan, facial and vgg "
        "matrix (3 reads of every row).\n\n"
        + table.to_markdown(index=False)
        + "\n"
    )


if __name__ == "__main__":
    main()
