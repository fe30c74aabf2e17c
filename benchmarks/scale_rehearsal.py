"""The whole default DAG at about 30,000 images on this machine: per-rule jobs, wall time and peak memory.

A benchmark, not a test (issue 31). It writes the default demo's config with ``demo.n_identities`` raised
(12,000 identities ~ 30,000 photos) and ``dataset: demo_scale`` (its own resources/ and results/ folders),
runs ``snakemake --cores N`` on it while a poller samples every job's process tree, and then measures
Snakemake's own overheads: DAG building (dry run), a no-op rerun and rebuilding one figure.

The run is resumable: the poller appends one JSON line per finished job to ``jobs.jsonl`` under
``--state``; rerunning the script resumes the DAG (Snakemake keeps what is done) and keeps the earlier
jobs' records, so a run cut off by a session's end goes on in the next. ``--summarise`` writes the table
from what is recorded without running anything.

    python benchmarks/scale_rehearsal.py --identities 12000 --cores 2 --set project.precision=float32
    python benchmarks/scale_rehearsal.py --summarise
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_RE = re.compile(r"\.snakemake/scripts/tmp[^./]*\.([A-Za-z0-9_]+)\.py")


def script_rules(root: Path) -> dict[str, str]:
    """Script file stem -> rule name, read from workflow/rules/*.smk (a script may serve several rules)."""
    out: dict[str, str] = {}
    for smk in sorted((root / "workflow" / "rules").glob("*.smk")):
        rule = None
        for line in smk.read_text().splitlines():
            m = re.match(r"\s*(?:rule|checkpoint)\s+(\w+)\s*:", line)
            if m:
                rule = m.group(1)
            m = re.search(r"scripts/(\w+)\.py", line)
            if m and rule:
                out.setdefault(m.group(1), rule)
    return out


def write_config(root: Path, dest: Path, identities: int, dataset: str, overrides: list[str] = ()) -> Path:
    """The default config with more identities, its own dataset folder and `overrides` ("project.precision=
    float32": a dotted key, a YAML value)."""
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    cfg["dataset"] = dataset
    cfg["demo"]["n_identities"] = identities
    for item in overrides:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = cfg
        for part in path:
            node = node[part]
        if last not in node:
            raise SystemExit(f"--set {key}: the default config has no such key")
        node[last] = yaml.safe_load(value)
    for emb in cfg["embeddings"].values():
        if "path" in emb:
            emb["path"] = emb["path"].replace("resources/demo/", f"resources/{dataset}/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


class JobPoller:
    """Samples the process trees of Snakemake's script jobs: first/last seen time and peak RSS per job."""

    def __init__(self, root_pid: int, log: Path, rules: dict[str, str]):
        self.root = psutil.Process(root_pid)
        self.log = log
        self.rules = rules
        self.live: dict[int, dict] = {}

    def sample(self) -> None:
        now = time.time()
        seen = set()
        try:
            procs = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            try:
                cmd = " ".join(proc.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            m = SCRIPT_RE.search(cmd)
            if not m:
                continue
            try:
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            seen.add(proc.pid)
            job = self.live.setdefault(proc.pid, {
                "script": m.group(1), "rule": self.rules.get(m.group(1), m.group(1)),
                "start": now, "end": now, "max_rss": 0})
            job["end"] = now
            job["max_rss"] = max(job["max_rss"], rss)
        for pid in [p for p in self.live if p not in seen]:
            self.flush(pid)

    def flush(self, pid: int) -> None:
        job = self.live.pop(pid)
        with self.log.open("a") as fh:
            fh.write(json.dumps(job) + "\n")

    def close(self) -> None:
        for pid in list(self.live):
            self.flush(pid)


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, int, str]:
    t0 = time.time()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return time.time() - t0, res.returncode, res.stdout + res.stderr


def run(args) -> int:
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    cfg = write_config(ROOT, state / "config.yaml", args.identities, args.dataset, args.set)
    env = dict(os.environ)
    snake = [sys.executable, "-m", "snakemake", "--configfile", str(cfg)]
    events = state / "events.jsonl"

    def event(**kw):
        with events.open("a") as fh:
            fh.write(json.dumps({"time": time.time(), **kw}) + "\n")

    others = [p for p in psutil.process_iter(["cmdline"])
              if str(cfg) in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()]
    if others:
        print(f"another run of this rehearsal is going on (pid {others[0].pid})", file=sys.stderr)
        return 1
    subprocess.run(snake + ["--unlock"], cwd=ROOT, env=env, capture_output=True)  # a cut-off run's lock
    secs, rc, _ = timed(snake + ["-n", "--quiet", "rules"], ROOT, env)
    event(kind="dry_run_before", seconds=secs, rc=rc)
    t0 = time.time()
    proc = subprocess.Popen(snake + ["--cores", str(args.cores), "--rerun-incomplete"], cwd=ROOT, env=env,
                            stdout=(state / "snakemake.out").open("a"), stderr=subprocess.STDOUT)
    event(kind="run_start", pid=proc.pid)
    poller = JobPoller(proc.pid, state / "jobs.jsonl", script_rules(ROOT))
    peak_main = 0
    while proc.poll() is None:
        poller.sample()
        try:
            peak_main = max(peak_main, psutil.Process(proc.pid).memory_info().rss)
        except psutil.NoSuchProcess:
            pass
        time.sleep(args.interval)
    poller.close()
    event(kind="run_end", seconds=time.time() - t0, rc=proc.returncode, snakemake_max_rss=peak_main)
    if proc.returncode != 0:
        print(f"snakemake failed (rc {proc.returncode}); see {state / 'snakemake.out'}", file=sys.stderr)
        return proc.returncode
    secs, rc, _ = timed(snake + ["-n", "--quiet", "rules"], ROOT, env)
    event(kind="dry_run_after", seconds=secs, rc=rc)
    secs, rc, _ = timed(snake + ["--cores", str(args.cores)], ROOT, env)
    event(kind="noop_rerun", seconds=secs, rc=rc)
    target = f"results/{args.dataset}/figures/love_plot.pdf"
    secs, rc, _ = timed(snake + ["--cores", str(args.cores), "--forcerun", "figure_love_plot", target], ROOT,
                        env)
    event(kind="one_figure", seconds=secs, rc=rc, target=target)
    report = f"results/{args.dataset}/report.html"
    secs, rc, _ = timed(snake + ["--report", report], ROOT, env)
    size = (ROOT / report).stat().st_size / 1e6 if (ROOT / report).exists() else float("nan")
    event(kind="report", seconds=secs, rc=rc, target=report, mb=size)
    return 0


def output_sizes(dataset: str, root: Path = ROOT) -> dict[str, int]:
    """Bytes under results/<dataset>/ and resources/<dataset>/ per top-level subfolder."""
    out = {}
    for top in ("resources", "results"):
        base = root / top / dataset
        if not base.exists():
            continue
        for sub in sorted(base.iterdir()):
            files = [sub] if sub.is_file() else [p for p in sub.rglob("*") if p.is_file()]
            out[f"{top}/{dataset}/{sub.name}"] = sum(p.stat().st_size for p in files)
    return out


def summarise(args) -> str:
    state = Path(args.state)
    jobs = [json.loads(x) for x in (state / "jobs.jsonl").read_text().splitlines()] \
        if (state / "jobs.jsonl").exists() else []
    events = [json.loads(x) for x in (state / "events.jsonl").read_text().splitlines()] \
        if (state / "events.jsonl").exists() else []
    # the run stopped (SIGSTOP) while something else was measured: those seconds are not the jobs'
    pauses = [(e["start"], e["end"]) for e in events if e["kind"] == "paused"]
    by_rule: dict[str, list] = {}
    for job in jobs:
        paused = sum(max(0.0, min(job["end"], b) - max(job["start"], a)) for a, b in pauses)
        by_rule.setdefault(job["rule"], []).append({**job, "wall": job["end"] - job["start"] - paused})
    lines = [f"# Scale rehearsal: the default demo at {args.identities:,} identities, `--cores {args.cores}`",
             "",
             "Measured by `benchmarks/scale_rehearsal.py` (a poller samples each job's process tree every "
             f"{args.interval} s; jobs shorter than that may be missed). Wall time: sum over jobs and span "
             "(first start to last end); peak RSS of the largest job of the rule. Where the run was paused "
             "(SIGSTOP, events `paused`) to measure something else on a quiet machine, the pause is taken "
             "out of every job's wall time (not out of the spans).", "",
             "Settings other than the default config's: " + (", ".join(f"`{x}`" for x in args.set) or "none")
             + ".", "",
             "| rule | jobs | wall sum (s) | span (s) | peak RSS (MB) |", "|---|---:|---:|---:|---:|"]
    for rule, js in sorted(by_rule.items(), key=lambda kv: min(j["start"] for j in kv[1])):
        wall = sum(j["wall"] for j in js)
        span = max(j["end"] for j in js) - min(j["start"] for j in js)
        lines.append(f"| {rule} | {len(js)} | {wall:.0f} | {span:.0f} | "
                     f"{max(j['max_rss'] for j in js) / 1e6:.0f} |")
    lines += ["", "## Runs and Snakemake's own overheads", ""]
    for ev in events:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(ev["time"]))
        extra = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in ev.items() if k not in ("time", "kind"))
        lines.append(f"- {stamp} UTC {ev['kind']}: {extra}")
    log = state / "snakemake.out"
    steps = re.findall(r"(\d+) of (\d+) steps", log.read_text(errors="replace")) if log.exists() else []
    if steps:
        done, total = steps[-1]
        lines.append(f"- Snakemake's progress at the last record: {done} of {total} steps")
    commit = subprocess.run(["git", "-C", str(args.workdir), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines.append(f"- code measured: commit {commit or 'unknown'} (the run's own checkout, {args.workdir})")
    lines += ["", "## Output sizes", "", "| folder | MB |", "|---|---:|"]
    for name, size in output_sizes(args.dataset, Path(args.workdir)).items():
        lines.append(f"| {name} | {size / 1e6:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=12000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--dataset", default="demo_scale")
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--state", default=str(ROOT / "benchmarks" / "out" / "scale_rehearsal"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_rehearsal.md"))
    ap.add_argument("--workdir", default=str(ROOT), help="the checkout the run used (output sizes, commit)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one setting of the default config (dotted key, YAML value); repeatable")
    ap.add_argument("--summarise", action="store_true", help="write the table from the records; run nothing")
    args = ap.parse_args(argv)
    rc = 0 if args.summarise else run(args)
    Path(args.out).write_text(summarise(args))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
