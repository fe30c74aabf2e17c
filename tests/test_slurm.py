"""The SLURM profile, end to end, on a real SLURM (the one-node cluster of tests/slurm/start_slurm.sh).

The demo DAG runs in temporary copies of the repository through `--profile profiles/slurm`, the shipped
profile with only its partition and account lines set (`site_profile`, as docs/cluster.md tells a user; the
start-up preflight adapts the rest to the node), and its tables must equal those of a local run. Fault tests,
on the projection jobs only: a running job is cancelled with scancel and the retries redo it; a SIGTERM
cancels the queued jobs and the restart finishes; a job that fails once is retried.
Without a SLURM that answers `sinfo`, the SLURM tests are skipped; the profile checks still run.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATASET = "demo"

# A small demo (~50 images in 2 shards, short projection): the DAG is the default one, only smaller.
SMALL_CONFIG = {
    "shard_size": 30,
    "demo": {"n_identities": 20},
    "project": {"steps": 10, "batch_size": 30},
    "distances": {"k": 10},
}

# Test-only sbatch wrapper: while the marker file exists, the first submission of a job of rule
# $GANMATCH_FAULT_RULE gets its command replaced by a failing one. SLURM runs that job and it fails.
FAULT_SBATCH = """#!/usr/bin/env bash
marker="$GANMATCH_FAULT_MARKER"
# Jobs may be submitted concurrently: the rename claims the marker for exactly one submission.
if [[ " $* " == *" rule_${GANMATCH_FAULT_RULE}"* ]] && mv "$marker" "$marker.claimed" 2>/dev/null; then
    args=()
    for a in "$@"; do
        case "$a" in
            --wrap=*) args+=("--wrap=echo 'ganmatch test: injected fault' >&2; exit 3") ;;
            *) args+=("$a") ;;
        esac
    done
    out="$("$GANMATCH_REAL_SBATCH" "${args[@]}")"; rc=$?
    echo "$out"; echo "$out" > "$marker.jobid"
    exit $rc
fi
exec "$GANMATCH_REAL_SBATCH" "$@"
"""


# --- the cluster, and the shipped profile as a user sets it up ----------------------------------------

SITE_KEYS = ("slurm_partition", "slurm_account", "slurm-no-account")
"""The only keys a user must set in profiles/slurm/config.yaml (docs/cluster.md); the tests set nothing
else."""


def slurm_skip_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None when `sinfo` answers."""
    if shutil.which("sinfo") is None:
        return "no SLURM here: `sinfo` not found (start one: sudo bash tests/slurm/start_slurm.sh)"
    try:
        proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "SLURM does not answer: `sinfo` timed out (start it: sudo bash tests/slurm/start_slurm.sh)"
    if proc.returncode != 0 or not proc.stdout.strip():
        return (f"SLURM does not answer `sinfo` ({proc.stderr.strip()[:200]}); "
                "start it: sudo bash tests/slurm/start_slurm.sh")
    return None


@dataclass(frozen=True)
class Cluster:
    """What the test cluster is: its default partition, the largest node there, and whether sacct works."""

    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    sacct: bool


def query_cluster() -> Cluster:
    """The default partition and its largest node, as sinfo reports them (the preflight reads the same)."""
    from ganmatch.slurm import SINFO_FORMAT, largest_node, parse_sinfo

    out = subprocess.run(
        ["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True, check=True
    )
    node = largest_node(parse_sinfo(out.stdout))
    sacct = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True).returncode == 0
    return Cluster(node.partition, node.cpus, node.mem_mb, node.gpus, sacct)


def site_profile(shipped: str, partition: str | None, account: str | None) -> str:
    """profiles/slurm/config.yaml as a user sets it up: the commented `slurm_partition` of default-resources
    and `slurm_account` (or, without one, `slurm-no-account: true`) uncommented with their values; nothing
    else."""
    out = []
    in_defaults = False
    for line in shipped.splitlines(keepends=True):
        if not line.startswith((" ", "#")):
            in_defaults = line.startswith("default-resources:")
        if in_defaults and partition and re.match(r"\s+# slurm_partition:", line):
            line = re.sub(r"# slurm_partition: \S+", f'slurm_partition: "{partition}"', line)
        elif in_defaults and account and re.match(r"\s+# slurm_account:", line):
            line = re.sub(r"# slurm_account: \S+", f'slurm_account: "{account}"', line)
        elif not account and line.startswith("# slurm-no-account: true"):
            line = line[2:]
        out.append(line)
    return "".join(out)


def changed_keys(shipped: str, edited: str) -> set[str]:
    """The keys on the lines that differ between two profile texts (comments ignored)."""
    keys = set()
    for line in difflib.unified_diff(shipped.splitlines(), edited.splitlines(), lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        text = line[1:].split("#", 1)[0].strip()
        if text:
            keys.add(text.split(":", 1)[0].strip())
    return keys


def without_site_keys(profile: dict) -> dict:
    """A parsed profile with the site keys taken out, at the top level and in every resource mapping."""
    out = {k: v for k, v in profile.items() if k not in SITE_KEYS}
    if "default-resources" in out:
        out["default-resources"] = {k: v for k, v in out["default-resources"].items() if k not in SITE_KEYS}
    if "set-resources" in out:
        out["set-resources"] = {
            rule: {k: v for k, v in res.items() if k not in SITE_KEYS}
            for rule, res in out["set-resources"].items()
        }
    return out


def test_the_tests_change_only_account_and_partition_of_the_shipped_profile():
    shipped = (ROOT / "profiles/slurm/config.yaml").read_text()
    for partition, account in (("debug", None), ("cpu", "my_project")):
        edited = site_profile(shipped, partition, account)
        assert changed_keys(shipped, edited) <= set(SITE_KEYS)
        parsed = yaml.safe_load(edited)
        assert parsed["default-resources"]["slurm_partition"] == partition
        assert without_site_keys(parsed) == without_site_keys(yaml.safe_load(shipped))
        if account:
            assert (
                parsed["default-resources"]["slurm_account"] == account and "slurm-no-account" not in parsed
            )
        else:
            assert parsed["slurm-no-account"] is True


# --- running Snakemake in copies of the repository -------------------------------------------------


def copy_repository(dest: Path) -> Path:
    """Copy the repository's files (tracked, and untracked but not ignored) into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file() and not rel.startswith("tests/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # A --configfile replaces config/config.yaml, so small.yaml is the whole demo config, shrunk.
    config = yaml.safe_load((dest / "config/config.yaml").read_text())
    (dest / "small.yaml").write_text(yaml.safe_dump(merge(config, SMALL_CONFIG), sort_keys=False))
    return dest


def merge(base: dict, override: dict) -> dict:
    """`base` with `override` merged in, nested mappings key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def snakemake_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--configfile", "small.yaml", *args]


def run_env(work: Path, **extra: str) -> dict:
    return dict(os.environ, PYTHONPATH=str(work / "src"), OMP_NUM_THREADS="1", **extra)


def run(work: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        snakemake_cmd(*args), cwd=work, env=env or run_env(work), capture_output=True, text=True, timeout=1200
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed "
            f"({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def final_tables(work: Path) -> dict[str, object]:
    """Every table and array the workflow produced, by path under results/<dataset>/."""
    res = work / "results" / DATASET
    tables: dict[str, object] = {}
    for path in sorted(res.rglob("*.parquet")):
        tables[str(path.relative_to(res))] = pd.read_parquet(path)
    for path in sorted(res.rglob("*.npy")):
        tables[str(path.relative_to(res))] = np.load(path)
    return tables


def assert_same_tables(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(got[name], value, check_exact=True, obj=name)
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)


def reset_projection(src: Path, dest: Path) -> tuple[Path, list[str]]:
    """A copy of a finished run without its projections, and the projection outputs to ask for again (the
    fault tests run only the project_shard jobs: few SLURM jobs, so they stay short on a one-node cluster)."""

    def slurm_logs(folder, names):  # logs/slurm: the SLURM logs of the first run
        return ["slurm"] if Path(folder).name == "logs" and "slurm" in names else []

    shutil.copytree(src, dest, symlinks=True, ignore=slurm_logs)
    latents = dest / "results" / DATASET / "latents"
    targets = sorted(str(p.relative_to(dest)) for p in latents.glob("shard_*.npy"))
    shutil.rmtree(latents)
    return dest, targets


def projections(tables: dict) -> dict:
    return {name: value for name, value in tables.items() if name.startswith("latents/")}


ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")


def squeue_jobs(work: Path) -> list[dict]:
    """The jobs of the run in `work` (their working directory) in the queue, recently finished ones
    included."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%T|%k|%Z"], capture_output=True, text=True, timeout=30
    ).stdout
    jobs = []
    for line in out.splitlines():
        jobid, state, comment, workdir = line.split("|", 3)
        if Path(workdir).resolve() == work.resolve():
            jobs.append({"id": jobid, "state": state, "comment": comment})
    return jobs


def job_state(jobid: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", jobid, "-o", "%T"], capture_output=True, text=True
    )
    return out.stdout.strip()


def start_run(work: Path, log: Path, *targets: str) -> subprocess.Popen:
    """The SLURM run in `work` in the background, its output going to `log`."""
    with log.open("w") as sink:
        return subprocess.Popen(
            snakemake_cmd("--profile", "profiles/slurm", *targets),
            cwd=work,
            env=run_env(work),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_for_job(
    work: Path, proc: subprocess.Popen, rule: str, states: tuple[str, ...], timeout: float = 300
) -> dict | None:
    """The first job of `rule` seen in one of `states` (None if the run ends or time runs out first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for job in squeue_jobs(work):
            if job["comment"].startswith(f"rule_{rule}") and job["state"] in states:
                return job
        time.sleep(0.5)
    return None


# --- tests on the running cluster ------------------------------------------------------------------

slurm = pytest.mark.skipif(slurm_skip_reason() is not None, reason=str(slurm_skip_reason()))


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return query_cluster()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The small demo through profiles/local: the reference tables."""
    work = copy_repository(tmp_path_factory.mktemp("local"))
    run(work, "--profile", "profiles/local", "--cores", "2")
    return final_tables(work)


def set_up_profile(work: Path, cluster: Cluster) -> Path:
    """profiles/slurm of the copy set up as docs/cluster.md tells a user: the partition, and no account (the
    test cluster has none). The diff against the shipped profile touches only those keys."""
    path = work / "profiles/slurm/config.yaml"
    shipped = path.read_text()
    edited = site_profile(shipped, cluster.partition, None)
    assert changed_keys(shipped, edited) == {"slurm_partition", "slurm-no-account"}
    path.write_text(edited)
    return work


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, cluster):
    """The small demo through the shipped SLURM profile: its working copy and the run's output."""
    work = set_up_profile(copy_repository(tmp_path_factory.mktemp("slurm")), cluster)
    proc = run(work, "--profile", "profiles/slurm")
    return work, proc


@slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_run_equals_local_run(slurm_run, local_run, cluster):
    work, proc = slurm_run
    out = proc.stdout + proc.stderr
    assert "submitted with SLURM jobid" in out  # the jobs really went through SLURM
    for rule in ("align_shard", "project_shard", "match_groups", "balance_method"):
        assert f"rule {rule}:" in out
    # The start-up check adapted the shipped profile to this cluster, and said so once per kind.
    if not cluster.sacct:
        assert out.count("SLURM preflight: sacct does not work") == 1
    if cluster.cpus < 4:
        assert out.count(f"has {cluster.cpus} cores: threads capped to {cluster.cpus} for") == 1
    if not cluster.gpus:
        assert out.count("has a GPU (sinfo %G): the GPU request of project_shard is dropped") == 1
    tables = final_tables(work)
    assert any(name.startswith("balance/") for name in tables) and any(
        n.startswith("matches/") for n in tables
    )
    assert_same_tables(tables, local_run)
    # The restart is a no-op: nothing is left incomplete.
    again = run(work, "--profile", "profiles/slurm")
    assert "Nothing to be done" in again.stdout + again.stderr


@slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_job_is_redone_by_the_retries(slurm_run, local_run, tmp_path):
    """scancel of a running projection job: the profile's retries submit it again and the tables are the
    same."""
    work, targets = reset_projection(slurm_run[0], tmp_path / "work")
    log = tmp_path / "run.log"
    proc = start_run(work, log, *targets)
    try:
        job = wait_for_job(work, proc, "project_shard", ("RUNNING",))
        assert job is not None, "no running project_shard job was seen to cancel"
        subprocess.run(["scancel", job["id"]], check=True)
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode == 0, out[-5000:]
    assert job_state(job["id"]) in ("CANCELLED", "")  # "" once SLURM has forgotten the job
    assert f"SLURM-job '{job['id']}' failed" in out and "CANCELLED" in out
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_project_shard/", out)
    assert len(submitted) == len(targets) + 1  # every shard + the cancelled one again
    assert_same_tables(projections(final_tables(work)), projections(local_run))


@slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_sigterm_cancels_the_submitted_jobs_and_the_restart_finishes(slurm_run, local_run, tmp_path):
    """SIGTERM to `snakemake --profile profiles/slurm` while jobs are queued: every submitted job is
    cancelled, the process exits, and the same command again completes with the same tables."""
    work, targets = reset_projection(slurm_run[0], tmp_path / "work")
    log = tmp_path / "first.log"
    proc = start_run(work, log, *targets)
    try:
        job = wait_for_job(work, proc, "project_shard", ("PENDING", "RUNNING"))
        assert job is not None, "no project_shard job was seen in the queue"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)  # exits, instead of waiting for the running jobs
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    deadline = time.monotonic() + 30
    while any(j["state"] in ACTIVE for j in squeue_jobs(work)) and time.monotonic() < deadline:
        time.sleep(1)
    jobs = squeue_jobs(work)
    assert jobs and not [j for j in jobs if j["state"] in ACTIVE], jobs
    assert any(j["state"] == "CANCELLED" for j in jobs)
    assert not all((work / t).exists() for t in targets)

    restart = run(work, "--profile", "profiles/slurm", *targets)  # the same command again
    assert "rule project_shard:" in restart.stdout + restart.stderr
    assert_same_tables(projections(final_tables(work)), projections(local_run))


@slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_job_failing_once_is_retried(slurm_run, local_run, tmp_path):
    work, targets = reset_projection(slurm_run[0], tmp_path / "work")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "sbatch").write_text(FAULT_SBATCH)
    (wrappers / "sbatch").chmod(0o755)
    marker = tmp_path / "fail-once"
    marker.touch()
    env = run_env(
        work,
        PATH=f"{wrappers}{os.pathsep}{os.environ['PATH']}",
        GANMATCH_REAL_SBATCH=shutil.which("sbatch"),
        GANMATCH_FAULT_MARKER=str(marker),
        GANMATCH_FAULT_RULE="project_shard",
    )
    proc = run(work, "--profile", "profiles/slurm", *targets, env=env)  # the profile's retries: 2
    out = proc.stdout + proc.stderr

    assert not marker.exists(), "no project_shard job was submitted through the fault wrapper"
    failed = (tmp_path / "fail-once.jobid").read_text().strip()
    assert f"SLURM-job '{failed}' failed" in out  # SLURM ran the job and it failed...
    assert job_state(failed) in ("FAILED", "")
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_project_shard/", out)
    # ...and was resubmitted: every shard + 1 retry
    assert len(submitted) == len(targets) + 1 and submitted.index(failed) < len(targets)
    assert_same_tables(projections(final_tables(work)), projections(local_run))


# --- the profiles themselves (no SLURM needed) -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["profiles/slurm", "profiles/local"])
def test_profile_is_accepted_by_snakemake(profile, tmp_path):
    """Snakemake parses the profile (every key an option, every resource expression valid)."""
    work = copy_repository(tmp_path)
    proc = run(work, "--profile", profile, "-n")
    out = proc.stdout + proc.stderr
    assert "rule download_demo:" in out and "This was a dry-run" in out
