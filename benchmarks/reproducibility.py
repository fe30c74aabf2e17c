"""Reproducibility benchmark: the default demo under several CPU kernel settings and seeds, every headline
number.

Each run is a fresh copy of the workflow in benchmarks/out/reproducibility/<setting>_seed<k>, run with
`snakemake` under one kernel setting (environment variables that make numpy's OpenBLAS, torch's oneDNN, MKL
and ATen pick other CPU kernels, or one thread) and `--config seed=<k>`. The numbers the README quotes come
from `ganmatch.analysis.headline.headline_numbers`; the demo's world (resources/demo) is hashed per run, so
the table also shows that it is the same bytes under every setting.

    python benchmarks/reproducibility.py                 # 3 settings on seed 0, 3 seeds on the default (5
    runs)
    python benchmarks/reproducibility.py --design grid   # all 9 pairs
    python benchmarks/reproducibility.py --seeds 0 --settings default avx2

Writes benchmarks/results/reproducibility.csv (one row per run and quantity) and reproducibility.md (min,
median, max per quantity, and the spread across kernel settings within a seed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import helpers  # noqa: E402  (the workflow copy the tests make)

from ganmatch.analysis.headline import headline_numbers, summarise_runs  # noqa: E402
from ganmatch.data.manifest import folder_manifest, format_manifest  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "benchmarks" / "out" / "reproducibility"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SETTINGS = {  # name -> (environment, snakemake --cores)
    "default": ({}, 2),
    # the AVX2 kernels on an AVX-512 machine: oneDNN, OpenBLAS, MKL and torch's own ATen kernels
    "avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
              "ATEN_CPU_CAPABILITY": "avx2"}, 2),
    "one_thread": (ONE_THREAD, 1),
}
TREATMENT, COVARIATES = "male", ["young", "smiling", "eyeglasses", "makeup", "dark_skin"]


def copy_workflow(dest: Path) -> None:
    """A fresh copy of the workflow in `dest`, as the tests make one (tests/helpers.py)."""
    if dest.exists():
        shutil.rmtree(dest)
    helpers.copy_workflow(dest)


def run_demo(setting: str, seed: int, reuse: bool = False) -> tuple[pd.DataFrame, str, float]:
    """One fresh demo run: (headline numbers, sha256 of the world's manifest, wall seconds); with `reuse`, a
    run that an earlier invocation finished in the same folder is read instead of repeated."""
    env_extra, cores = SETTINGS[setting]
    work = OUT / f"{setting}_seed{seed}"
    env = dict(os.environ, PYTHONPATH=str(work / "src"), **env_extra)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--config", f"seed={seed}"]
    marker = work / ".finished_wall_s"
    if reuse and marker.exists():  # a finished run of an earlier invocation
        wall = float(marker.read_text())
    else:
        copy_workflow(work)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise RuntimeError(f"{setting} seed {seed} failed:\n{proc.stderr[-4000:]}")
        marker.write_text(f"{wall:.1f}\n")
    import hashlib

    world = hashlib.sha256(format_manifest(folder_manifest(work / "resources/demo")).encode()).hexdigest()
    return headline_numbers(work / "results/demo", TREATMENT, COVARIATES), world, wall


def default_demo_config() -> dict:
    """config/config.yaml validated (defaults filled), as the workflow sees it."""
    import yaml

    from ganmatch.settings.config import validate_config

    return validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()),
                           ROOT / "config/schema.yaml")


def write_world_manifest(path: Path) -> str:
    """Generate the default demo's world in a temporary folder and write its sha256 manifest, keyed by the
    demo block and seed (`provenance.demo_world_key`), to `path`."""
    import tempfile
    from types import SimpleNamespace

    from ganmatch.report.provenance import demo_world_key
    from ganmatch.stages.download import demo_outputs, download_demo_job

    config = default_demo_config()
    with tempfile.TemporaryDirectory() as tmp:
        download_demo_job(demo_outputs(tmp), SimpleNamespace(demo=config["demo"], seed=config["seed"]))
        body = format_manifest(folder_manifest(tmp))
    text = ("# sha256 of every file the default demo's download writes (resources/demo/), the same on any "
            "CPU;\n"
            "# checked by tests/test_reproducibility.py and by each run's provenance.json. Regenerate with\n"
            "# python benchmarks/reproducibility.py --write-manifest\n"
            f"# key: {demo_world_key(config['demo'], config['seed'])}\n") + body
    path.write_text(text)
    return text


def markdown(long: pd.DataFrame, runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    lines = ["# Reproducibility: the default demo under CPU kernel settings and seeds", "",
             "`python benchmarks/reproducibility.py` (wall times were measured beside other work on the "
             "machine). Settings: " + "; ".join(
                 f"`{k}` ({' '.join(f'{a}={b}' for a, b in v[0].items()) or 'no variables'}, --cores {v[1]})"
                 for k, v in SETTINGS.items() if k in set(runs.setting)) + ".", "",
             "## Runs", "", "| setting | seed | wall s | world (sha256 of resources/demo's manifest) |",
             "|---|---|---|---|"]
    lines += [f"| {r.setting} | {r.seed} | {r.wall_s:.0f} | `{r.world[:16]}` |" for r in runs.itertuples()]
    same = runs.groupby("seed")["world"].nunique().eq(1).all()
    lines += [
        "",
        "The world is "
        f"{'the same bytes under every setting of a seed' if same else 'NOT the same across settings'}.",
        "",
        "## Every quantity",
        "",
        "`kernel spread`: the largest difference between settings for one seed (0: the CPU does not "
        "matter); "
        "min / median / max: over all runs (seeds differ in their data).",
        "",
        "| quantity | reference (default, seed 0) | kernel spread | min | median | max |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.quantity} | {r.reference:.4g} | {r.kernel_spread:.3g} | {r.min:.4g} | {r.median:.4g} | "
        f"{r.max:.4g} |"
        for r in summary.itertuples()
    ]
    return "\n".join(lines) + "\n"


def write_tables(frames, runs, args, divergence: bool = False) -> None:
    """The long table, the per-quantity summary and the markdown page (with the stage divergence between the
    first two settings of the first seed when `divergence`)."""
    from ganmatch.analysis.headline import stage_divergence

    long = pd.concat(frames)[["setting", "seed", "quantity", "value"]]
    runs = pd.DataFrame(runs)
    summary = summarise_runs(long, {"setting": args.settings[0], "seed": args.seeds[0]})
    RESULTS.mkdir(parents=True, exist_ok=True)
    long.to_csv(RESULTS / "reproducibility.csv", index=False)
    summary.to_csv(RESULTS / "reproducibility_summary.csv", index=False)
    page = markdown(long, runs, summary)
    if divergence and len(args.settings) > 1:
        a, b = (OUT / f"{s}_seed{args.seeds[0]}/results/demo" for s in args.settings[:2])
        table = stage_divergence(a, b)
        table.to_csv(RESULTS / "reproducibility_stages.csv", index=False)
        page += (
            f"\n## How far the CPU reaches, stage by stage (`{args.settings[0]}` against "
            f"`{args.settings[1]}`, "
            f"seed {args.seeds[0]})\n\n| stage | files | max abs difference | share of entries "
            "differing |\n"
            "|---|---|---|---|\n"
        )
        page += "".join(
            f"| {r.stage} | {r.files} | {r.max_abs_diff:.3g} | {r.share_differing:.3g} |\n"
            for r in table.itertuples()
        )
    (RESULTS / "reproducibility.md").write_text(page)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument(
        "--design",
        choices=["star", "grid"],
        default="star",
        help="star: every setting on the first seed and every seed on the first setting; grid: all pairs",
    )
    ap.add_argument("--reuse", action="store_true", help="read runs finished by an earlier invocation")
    ap.add_argument(
        "--write-manifest",
        action="store_true",
        help="only write resources/demo_world.sha256: the default demo's world, generated afresh",
    )
    args = ap.parse_args(argv)
    if args.write_manifest:
        print(write_world_manifest(ROOT / "resources/demo_world.sha256"))
        return 0
    frames, runs = [], []
    cases = [
        (seed, setting)
        for seed in args.seeds
        for setting in args.settings
        if args.design == "grid" or seed == args.seeds[0] or setting == args.settings[0]
    ]
    for seed, setting in cases:
        numbers, world, wall = run_demo(setting, seed, args.reuse)
        print(f"{setting} seed {seed}: {wall:.0f} s, world {world[:12]}", flush=True)
        frames.append(numbers.assign(setting=setting, seed=seed))
        runs.append({"setting": setting, "seed": seed, "wall_s": wall, "world": world})
        write_tables(frames, runs, args)  # after every run: a long benchmark keeps what it measured
    write_tables(frames, runs, args, divergence=True)
    print((RESULTS / "reproducibility.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
