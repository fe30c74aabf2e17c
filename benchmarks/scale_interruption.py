"""Interruption at scale: the outputs of jobs a SIGKILL cut off, as the resumed run wrote them, against the
same jobs run again uninterrupted.

The scale rehearsal (`scale_rehearsal.py`) is killed (SIGKILL to its whole process group) once in projection
and once in matching and then resumed; Snakemake reruns the jobs its `.snakemake/incomplete` markers name.
This script takes those jobs' outputs, keeps a copy (with its times), runs the jobs again with `snakemake
--force` on the same config, and compares the bytes; the resumed run's files (and their times) are put back,
so the folder is as the run left it. It writes a table of file, size, the two sha256 sums and whether they
agree.

    python benchmarks/scale_interruption.py --workdir /work/scale \
        --configfile /work/scale/benchmarks/out/scale_rehearsal/config.yaml \
        --killed projection:results/demo_scale/latents/shard_27.npy ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rerun_and_compare(workdir: Path, configfile: Path, targets: list[str],
                      cores: int = 2) -> tuple[list, float]:
    """Run the jobs of `targets` again (snakemake --force) and compare each file's bytes with the one there
    before; the earlier files are restored afterwards. Returns rows and the rerun's seconds."""
    before = {t: sha256(workdir / t) for t in targets}
    with tempfile.TemporaryDirectory() as keep:
        for i, t in enumerate(targets):
            shutil.copy2(workdir / t, Path(keep) / str(i))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", str(configfile), "--cores",
                              str(cores), "--force", *targets], cwd=workdir, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if out.returncode != 0:
            raise SystemExit(f"the rerun failed:\n{out.stderr[-3000:]}")
        after = {t: sha256(workdir / t) for t in targets}
        for i, t in enumerate(targets):
            shutil.copy2(Path(keep) / str(i), workdir / t)          # the resumed run's file and its times
    rows = [{"file": t, "bytes": (workdir / t).stat().st_size, "resumed": before[t],
             "uninterrupted": after[t], "equal": before[t] == after[t]} for t in targets]
    return rows, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="the rehearsal's checkout")
    ap.add_argument("--configfile", required=True)
    ap.add_argument("--killed", nargs="+", required=True, metavar="STAGE:FILE",
                    help="the stage a kill hit and an output of a job that was running then")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_interruption.md"))
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    lines = ["# Interruption at scale: resumed outputs against an uninterrupted rerun", "",
             "`python benchmarks/scale_interruption.py` (see its docstring). "
             + (args.note + " " if args.note else "")
             + "Each row is an output of a job that was running when the run got SIGKILL; `resumed` is the "
             "file the resumed run wrote, `uninterrupted` the one `snakemake --force` writes running that "
             "job again from the same inputs.", "",
             "| stage killed | file | bytes | sha256 resumed | sha256 uninterrupted | equal |",
             "|---|---|---:|---|---|---|"]
    all_equal = True
    by_stage: dict[str, list[str]] = {}
    for item in args.killed:
        stage, _, path = item.partition(":")
        by_stage.setdefault(stage, []).append(path)
    records = []
    for stage, targets in by_stage.items():
        rows, seconds = rerun_and_compare(workdir, Path(args.configfile), targets, args.cores)
        for r in rows:
            all_equal &= r["equal"]
            records.append({"stage": stage, **r})
            lines.append(f"| {stage} | `{r['file']}` | {r['bytes']:,} | {r['resumed'][:16]} | "
                         f"{r['uninterrupted'][:16]} | {'yes' if r['equal'] else '**no**'} |")
        lines.append(f"| {stage} | (rerun of these jobs: {seconds:.0f} s) | | | | |")
    lines += ["", f"All equal: {'yes' if all_equal else 'no'}."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    print("\n".join(lines))
    return 0 if all_equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
