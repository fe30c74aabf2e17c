"""What SLURM adds to the demo: jobs and wall time with profiles/slurm against profiles/local, on one machine.

Run (needs a SLURM that answers `sinfo`, e.g. `sudo bash tests/slurm/start_slurm.sh`, the one-node cluster):
`PYTHONPATH=src python benchmarks/slurm_overhead.py [--cases local slurm slurm_grouped]`. Each case runs the
whole default demo DAG from scratch in a temporary copy of the repository: `local` with `--profile
profiles/local --cores 2`, `slurm` with the shipped `--profile profiles/slurm` unchanged (the cluster's
default partition, no account), `slurm_grouped` the same plus the grouping of docs/cluster.md (`GROUPS`: the
short rules after matching in one SLURM job each, `group_args`). Writes benchmarks/results/slurm_overhead.csv
and .md.

`--from-logs local=LOG slurm=LOG` builds the table from finished runs' Snakemake logs (`.snakemake/log/*.log`:
its "Elapsed time", steps and sbatch submissions) instead, e.g. those of tests/test_slurm.py, which runs its
small demo both ways on the same cluster; `--dag` says which demo (and which part of its DAG) the logs ran,
`--append` adds the rows to the table already written.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# The grouping docs/cluster.md suggests: every figure in one SLURM job, the balance / outcome tables in
# another.
GROUPS = {
    "figures": ["figure_covariate_means", "figure_love_plot", "figure_propensity_overlap",
                "figure_matched_pairs",
                "figure_distance_distributions", "figure_neighbour_quality", "figure_projection_quality",
                "figure_outcomes", "figure_paper_comparison", "figure_edits", "figure_interpolations",
                "figure_edit_leakage", "figure_transects"],
    "tables": ["balance_method", "balance_summary", "estimate_outcomes", "verification_bias"],
}


def group_args(cores: int, groups: dict[str, list[str]] = GROUPS) -> list[str]:
    """Arguments that put each group's jobs into one SLURM job (`--groups`, `--group-components`). A group job
    asks for the summed cores and memory of its members that could run side by side; `--cores` of one node
    makes Snakemake stack them in series instead, so that the group job fits the node."""
    assignments = [f"{rule}={group}" for group, rules in groups.items() for rule in rules]
    return ["--groups", *assignments, "--group-components", *[f"{group}=1000" for group in groups],
            "--cores", str(cores)]


def cases(cores: int) -> dict[str, list[str]]:
    """The Snakemake arguments of each case, for a cluster whose largest node has `cores`."""
    return {
        "local": ["--profile", "profiles/local", "--cores", "2"],
        "slurm": ["--profile", "profiles/slurm"],
        "slurm_grouped": ["--profile", "profiles/slurm", *group_args(cores)],
    }


CASES = tuple(cases(1))


def copy_repository(dest: Path) -> Path:
    """The repository's files (tracked, and untracked but not ignored), without results, into `dest`."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file() and not rel.startswith("tests/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(src.read_bytes())
    return dest


def count_jobs(log: str) -> tuple[int, int]:
    """(Snakemake jobs done, SLURM jobs submitted) from a run's log."""
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", log)
    submitted = len(re.findall(r"submitted with SLURM jobid \d+", log))
    return (int(done[-1][0]) if done else 0), submitted


def elapsed_seconds(log: str) -> float:
    """The wall time Snakemake reports at the end of a run ("Elapsed time: 0:14:58.588490")."""
    found = re.findall(r"Elapsed time: (?:(\d+) days?, )?(\d+):(\d+):(\d+(?:\.\d*)?)", log)
    if not found:
        raise ValueError("no 'Elapsed time' in the log: the run did not end")
    days, h, m, sec = found[-1]
    return int(days or 0) * 86400 + int(h) * 3600 + int(m) * 60 + float(sec)


def from_log(name: str, path: Path) -> dict:
    """A table row from a finished run's Snakemake log."""
    log = path.read_text()
    jobs, slurm_jobs = count_jobs(log)
    ok = jobs > 0 and "Exiting because a job execution failed" not in log
    return {"case": name, "status": "ok" if ok else "failed", "jobs": jobs, "slurm_jobs": slurm_jobs,
            "wall_s": round(elapsed_seconds(log), 1), "load_1min_at_start": float("nan")}


def run_case(name: str, args: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"ganmatch_{name}_") as tmp:
        work = copy_repository(Path(tmp))
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=work, capture_output=True,
                              text=True,
                              env=dict(os.environ, PYTHONPATH=str(work / "src")))
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            print(f"{name} failed ({proc.returncode}):\n{log[-4000:]}", file=sys.stderr)
    jobs, slurm_jobs = count_jobs(log)
    row = {"case": name, "status": "ok" if proc.returncode == 0 else f"failed ({proc.returncode})",
           "jobs": jobs,
           "slurm_jobs": slurm_jobs, "wall_s": round(wall, 1), "load_1min_at_start": round(load, 2)}
    print(row, file=sys.stderr)
    return row


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--from-logs", nargs="+", metavar="CASE=LOG", help="rows from finished runs' logs")
    parser.add_argument("--dag", default="default demo, whole DAG", help="what the runs ran (a column)")
    parser.add_argument("--append", action="store_true", help="add the rows to the existing table")
    parser.add_argument("--note", default="", help="a sentence for the table's header (e.g. the machine's "
                                                   "load)")
    parser.add_argument("--out", default=str(HERE / "results" / "slurm_overhead"))
    args = parser.parse_args(argv)
    from ganmatch.data.io import write_table_pair
    from ganmatch.slurm import SINFO_FORMAT, largest_node, parse_sinfo

    sinfo = subprocess.run(["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True).stdout
    node = largest_node(parse_sinfo(sinfo))
    arguments = cases(node.cpus)
    if args.from_logs:
        rows = [from_log(name, Path(path)) for name, path in (item.split("=", 1) for item in args.from_logs)]
    else:
        rows = [run_case(name, arguments[name]) for name in args.cases]
    table = pd.DataFrame([{"dag": args.dag, **row} for row in rows])
    if args.append and Path(args.out).with_suffix(".csv").exists():
        table = pd.concat([pd.read_csv(Path(args.out).with_suffix(".csv")), table], ignore_index=True)
    head = (
        "# SLURM overhead on the demo: profiles/slurm against profiles/local\n\n"
        "Each row is one Snakemake run (dag: which demo config, and which part of its DAG it ran), on the "
        f"one-node cluster of tests/slurm/start_slurm.sh (sinfo: `{' '.join(sinfo.split())}`; no accounting "
        f"database, so job states come from squeue); {platform.machine()}, Python "
        f"{platform.python_version()}. "
        "jobs: Snakemake jobs; slurm_jobs: sbatch submissions (the rest ran on the submitting node); "
        "load_1min_at_start: the shared machine's load (nan: rows taken from logs). "
        f"{args.note + ' ' if args.note else ''}Regenerate with `PYTHONPATH=src python "
        "benchmarks/slurm_overhead.py`.\n\n"
    )
    write_table_pair(table, args.out, head)
    return table


if __name__ == "__main__":
    main()
