"""Greedy matching's list refills at 30,000 photos: the refill that searched copies of the live controls
(before) against the one that reads them in place (`distances.RowSearch`, after), in the same run.

The scale rehearsal's `pixel_greedy` (768-d pixel embedding, caliper at the 0.6 quantile of the treated
units' nearest distances) spent most of its 299 s in 1,746 refills of 128 ms. Its embedding is not kept
after a rehearsal, so this benchmark draws one of the same shape: n photos, a treated share, d features, the
low-contrast controls nearest to many treated rows, so that their lists run out. Both refills run the same
greedy matching from the same initial lists; the table gives seconds, refills, milliseconds per refill and
whether the pairs agree, at half and at the full size (the growth from 1x to 2x).

    python benchmarks/greedy_refills.py            # writes benchmarks/results/greedy_refills.{csv,md}
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.analysis import distances
from ganmatch.matching.greedy import CrossLists, greedy_pairs

OUT = Path(__file__).resolve().parent / "results"


class CopyingLists(CrossLists):
    """The refill before the fix: `knn` on a copy of the live controls, validated and centred each time."""

    def search_live(self, t: int, live: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            i, d = distances.knn(self.Xt[t:t + 1], kk, self.metric, Y=self.Xc[live], exclude_self=False)
        return live[i[0]], d[0]


def draw(n: int, share: float, d: int, seed: int, spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian rows with a per-photo scale (as photos vary in contrast): the low-scale controls are the
    nearest of many treated rows (hubs), so their lists run out and are refilled, as pixel_greedy's were."""
    rng = np.random.default_rng(seed)
    n_t = int(round(n * share))
    X = (rng.normal(size=(n, d)) * np.exp(spread * rng.normal(size=(n, 1)))).astype(np.float32)
    return X[:n_t], X[n_t:]


def run(n: int, share: float, d: int, k: int, seed: int, peers: list[str]) -> list[dict]:
    Xt, Xc = draw(n, share, d, seed)
    start = time.perf_counter()
    base = CrossLists(Xt, Xc, "euclidean", k)
    lists_s = time.perf_counter() - start
    caliper = float(np.quantile(base.nearest(), 0.6))
    rows, pairs = [], {}
    for name in peers:
        lists = copy.copy(base)
        lists.__class__ = CopyingLists if name == "before" else CrossLists
        lists.pos, lists.complete, lists.extra = base.pos.copy(), base.complete.copy(), {}
        start = time.perf_counter()
        t, c, _ = greedy_pairs(Xt, Xc, caliper=caliper, lists=lists)
        seconds = time.perf_counter() - start
        pairs[name] = (t, c)
        rows.append({"refill": name, "photos": n, "treated": len(Xt), "controls": len(Xc), "features": d,
                     "k": k, "lists_s": round(lists_s, 2), "greedy_s": round(seconds, 2),
                     "refills": lists.n_refills,
                     "ms_per_refill": round(1000 * seconds / max(lists.n_refills, 1), 1),
                     "pairs": len(t)})
    first = pairs[peers[0]]
    same = all(np.array_equal(t, first[0]) and np.array_equal(c, first[1]) for t, c in pairs.values())
    for r in rows:
        r["pairs_equal"] = same
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=29_970)
    ap.add_argument("--treated-share", type=float, default=0.277)   # 8,297 of 29,970 in the rehearsal
    ap.add_argument("--features", type=int, default=768)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    rows = []
    for n in (a.photos // 2, a.photos):
        rows += run(n, a.treated_share, a.features, a.k, a.seed, ["before", "after"])
        print(pd.DataFrame(rows).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out / "greedy_refills.csv", index=False)
    head = (f"# Greedy matching's refills: copying the live controls (before) or reading them in place "
            f"(after)\n\n`python benchmarks/greedy_refills.py`, {platform.machine()}, 2 cores, one run each, "
            f"the same initial lists and caliper (0.6 quantile of the treated units' nearest distances). "
            f"`lists_s` is the initial neighbour search both share; `greedy_s` the matching with its "
            f"refills.\n\n")
    (a.out / "greedy_refills.md").write_text(head + table.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
