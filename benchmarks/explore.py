"""Benchmark of `ganmatch explore` (issue 21): start-up and every page's answer time at 30,000 images and
1,200 pairs per method, and the editor's render time on the demo generator.

Writes a synthetic results folder (tests/explore_synthetic.py: 30,000 images in shards of 100, three methods
of 1,200 pairs and a full matching (40 treated, 80 controls), a 512-d face embedding, edit directions) under
benchmarks/out/explore/, starts the real server (`python -m ganmatch.cli explore ... --port 0`, loopback, its
own process) and times each URL over HTTP from this process: the median and the worst of `--repeats` requests
after one warm-up request. The editor uses resources/demo/generator.pt when a demo run made it (else the
synthetic folder's generator, the same architecture). Writes benchmarks/results/explore.csv and explore.md.

    python benchmarks/explore.py              # 30,000 images, 1,200 pairs (about 3 minutes on 2 cores)
    python benchmarks/explore.py --n 3000 --pairs 200 --no-write   # a quick check
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "benchmarks" / "out" / "explore"

# (what, url): every page and endpoint, with the heaviest parameters a person would use.
URLS = [
    ("overview", "/"),
    ("overview: rejected page 10", "/?rpage=10"),
    ("balance", "/balance?method=constrained"),
    ("balance: sorted by abs SMD after", "/balance?method=constrained&sort=abs_smd_after&order=desc"),
    ("pairs: first 50", "/pairs?method=constrained"),
    ("pairs: 200 per page", "/pairs?method=constrained&per_page=200"),
    ("pairs: last page, sorted by distance desc",
     "/pairs?method=gan_greedy&sort=distance&order=desc&page={last}"),
    ("pairs: 3 covariate filters + flags, sorted",
     "/pairs?method=constrained&f_young=same&f_smiling=same&f_eyeglasses=differ"
     "&penalised=no&gap_max=0.1&sort=dist_facial&order=desc&per_page=100"),
    ("editor", "/editor?method=constrained&pair={mid}"),
    ("aligned image", "/image/{img}"),
    ("api: scores", "/api/scores?image={img}&edit=male:1.5&edit=young:-1"),
]
RENDERS = [  # distinct query values so the render cache never answers
    ("api: render, 2 edits", "/api/render?image={img}&edit=male:{v}&edit=young:-1"),
    ("api: interpolate", "/api/interpolate?method=constrained&pair={mid}&t={t}"),
    ("api: strip of 9", "/api/strip?method=constrained&pair={p}&n=9"),
]


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores"


def build_folder(n: int, pairs: int) -> Path:
    """The synthetic results folder (rebuilt only when its size changed)."""
    sys.path.insert(0, str(ROOT / "tests"))  # the synthetic run is a test fixture: tests/explore_synthetic.py
    from explore_synthetic import write_synthetic_run

    root = OUT / f"n{n}_p{pairs}"
    res = root / "results" / "synthetic"
    if not (res / "edits" / "directions.npy").is_file():
        t = time.perf_counter()
        write_synthetic_run(root, n_images=n, n_pairs=pairs, shard_size=100, render=False, face_dim=512)
        print(f"wrote {res} in {time.perf_counter() - t:.0f} s", flush=True)
    return res


def start_server(res: Path, weights: Path | None) -> tuple[subprocess.Popen, str, float]:
    """The real CLI server on a free loopback port; (process, base url, seconds until it answered)."""
    cmd = [sys.executable, "-m", "ganmatch.cli", "explore", str(res), "--port", "0"]
    if weights is not None:
        cmd += ["--weights", str(weights)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        if found:
            return proc, found.group(1), time.perf_counter() - t
        print("server:", line.rstrip(), flush=True)
    raise RuntimeError(f"the server exited ({proc.wait()}) before serving")


def _for_method(url: str, method: str, columns: set | None) -> str:
    """A synthetic-folder URL for a real run's `method`: its name, and its sort and filter columns where the
    synthetic ones (dist_facial, penalised) are not in its table."""
    url = url.replace("method=constrained", f"method={method}")
    if columns is not None:
        if "dist_facial" not in columns:
            url = url.replace("sort=dist_facial", "sort=" + ("reference_gap" if "reference_gap" in columns
                                                             else "distance"))
        if "penalised" not in columns:
            url = url.replace("&penalised=no", "")
    return url


def fetch(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            size = len(resp.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
    return time.perf_counter() - t, size


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


def run(n: int = 30000, pairs: int = 1200, repeats: int = 10, folder: Path | None = None,
        weights: Path | None = None, method: str = "constrained") -> tuple[list[dict], dict]:
    """Time every URL on the synthetic folder, or on a real run's results `folder` (its `method` standing in
    for the synthetic "constrained"); returns (rows, facts about the run)."""
    import pandas as pd

    res = folder or build_folder(n, pairs)
    if weights is None:
        demo = ROOT / "resources" / "demo" / "generator.pt"
        weights = demo if demo.is_file() else None
    columns = None
    if folder is not None:
        table = pd.read_parquet(res / "matches" / f"{method}.parquet")
        pairs, columns = len(table), set(table.columns)
        n = len(pd.read_parquet(res / "images.parquet"))
    proc, base, startup = start_server(res, weights)
    rows = []
    shards = sorted((res / "latents").glob("shard_*.parquet"))
    shard = pd.read_parquet(shards[len(shards) // 2])                     # an image in the middle shard
    sizes = {"last": -(-pairs // 50), "mid": pairs // 2, "img": shard.loc[shard["status"] == "ok",
                                                                          "image_id"].iloc[0]}
    try:
        for what, url in URLS:
            url = _for_method(url, method, columns).format(**sizes)
            fetch(base + url)  # warm-up
            times, size = zip(*(fetch(base + url) for _ in range(repeats)), strict=True)
            rows.append({"request": what, "url": url, "median_ms": 1000 * statistics.median(times),
                         "max_ms": 1000 * max(times), "bytes": size[0]})
        for what, template in RENDERS:
            template = template.replace("method=constrained", f"method={method}")
            fetch(base + template.format(v=0.01, t=0.001, p=1, **sizes))  # warm-up
            times, size = zip(*(fetch(base + template.format(v=round(0.1 * (i + 1), 2),
                                                             t=round(0.05 * (i + 1), 3), p=i + 2, **sizes))
                                for i in range(repeats)), strict=True)
            rows.append({"request": what, "url": template, "median_ms": 1000 * statistics.median(times),
                         "max_ms": 1000 * max(times), "bytes": size[0]})
        facts = {"startup_s": startup, "server_peak_mb": rss_mb(proc.pid), "load_avg": os.getloadavg()[0],
                 "generator": str(weights) if weights else "synthetic folder's (demo architecture)",
                 "n_images": n, "pairs_per_method": pairs,
                 "n_methods": len(pd.read_parquet(res / "balance" / "summary.parquet")["method"].unique())}
    finally:
        proc.terminate()
        proc.wait(30)
    return rows, facts


def write(rows: list[dict], facts: dict) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    df.insert(0, "machine", machine())
    df["n_images"], df["pairs_per_method"] = facts["n_images"], facts["pairs_per_method"]
    df["date"] = datetime.date.today().isoformat()
    df.round(1).to_csv(RESULTS / "explore.csv", index=False)
    table = df[["request", "median_ms", "max_ms", "bytes"]].round(1).to_markdown(index=False)
    pages = df[~df["request"].str.startswith(("api:", "aligned"))]
    renders = df[df["request"].isin(["api: render, 2 edits", "api: interpolate"])]
    text = f"""# Explorer benchmark

`python benchmarks/explore.py` ({facts['n_images']:,} images in shards of 100, {facts['n_methods']} methods of
{facts['pairs_per_method']:,} pairs, a 512-d face embedding; {machine()}, shared with other jobs: 1-minute
load average {facts['load_avg']:.1f} at the end; {df['date'][0]}). Each request goes over HTTP to the real server
(`ganmatch explore`, its own process, waitress, torch on 1 thread) on 127.0.0.1; median and worst of the timed
requests after one warm-up. Render requests use new strengths every time, so the render cache never answers.
Generator: {facts['generator']}.

- targets (issue 21): every page under 1,000 ms, an edit render under 100 ms. Worst page request:
  {pages['max_ms'].max():.0f} ms; worst single-frame render (edit or interpolation): {renders['max_ms'].max():.0f} ms
- start-up (read the folder, build the tables, load the generator, until the server answers): {facts['startup_s']:.1f} s
- server peak memory (VmHWM): {facts['server_peak_mb']:.0f} MB

{table}
"""  # noqa: E501 (embedded source text)
    (RESULTS / "explore.md").write_text(text)


def write_run(rows: list[dict], facts: dict, folder: Path, method: str, note: str = "") -> None:
    """The real run's section of explore.md (after the synthetic benchmark's), replaced on every run."""
    import pandas as pd

    df = pd.DataFrame(rows)
    pages = df[~df["request"].str.startswith(("api:", "aligned"))]
    renders = df[df["request"].isin(["api: render, 2 edits", "api: interpolate"])]
    table = df[["request", "median_ms", "max_ms", "bytes"]].round(1).to_markdown(index=False)
    marker = "\n## On a real run's results folder\n"
    text = (RESULTS / "explore.md").read_text().split(marker)[0]
    section = (f"{marker}\n`python benchmarks/explore.py --folder {folder} --method {method}` "
               f"({facts['n_images']:,} images, {facts['n_methods']} methods; `{method}` has "
               f"{facts['pairs_per_method']:,} pairs and stands in for the synthetic folder's `constrained`; "
               f"{machine()}, 1-minute load average {facts['load_avg']:.1f} at the end; "
               f"{datetime.date.today().isoformat()}). {note}\n\n"
               f"- worst page request: {pages['max_ms'].max():.0f} ms; worst single-frame render: "
               f"{renders['max_ms'].max():.0f} ms\n"
               f"- start-up (until the server answers): {facts['startup_s']:.1f} s\n"
               f"- server peak memory (VmHWM): {facts['server_peak_mb']:.0f} MB\n\n{table}\n")
    (RESULTS / "explore.md").write_text(text.rstrip("\n") + "\n" + section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30000, help="images (default 30,000)")
    parser.add_argument("--pairs", type=int, default=1200, help="pairs per method (default 1,200)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    parser.add_argument("--folder", type=Path, help="a real run's results folder (not the synthetic)")
    parser.add_argument("--weights", type=Path, help="its generator (default: the demo's)")
    parser.add_argument("--method", default="constrained",
                        help="the method with reference photos and facial distances (the demo's: "
                             "gan_constrained)")
    parser.add_argument("--note", default="", help="a sentence for the real run's section")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    rows, facts = run(args.n, args.pairs, args.repeats, args.folder, args.weights, args.method)
    import pandas as pd

    print(pd.DataFrame(rows)[["request", "median_ms", "max_ms", "bytes"]].round(1).to_string(index=False))
    print(facts)
    if args.no_write:
        return
    if args.folder is not None:
        write_run(rows, facts, args.folder, args.method, args.note)
    else:
        write(rows, facts)


if __name__ == "__main__":
    main()
