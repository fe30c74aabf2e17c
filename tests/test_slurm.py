"""The SLURM profile, end to end, on a real SLURM (the one-node cluster of tests/slurm/start_slurm.sh).

The demo DAG runs in temporary copies of the repository through `--profile profiles/slurm` (adapted to
the node, see `node_profile`) and its tables must equal those of a local run. Fault tests: a running
job is cancelled with scancel and the workflow restarted; a job that fails once is retried.
Without a SLURM that answers `sinfo`, the SLURM tests are skipped; the profile checks still run.
"""

from __future__ import annotations

import os
import re
import shutil
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


# --- the node and the profile adapted to it ----------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """What the test cluster offers one job: cores, memory (MB), GPUs, and whether sacct works."""

    cpus: int
    mem_mb: int
    gpus: int
    sacct: bool


def slurm_skip_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None when `sinfo` answers."""
    if shutil.which("sinfo") is None:
        return "no SLURM here: `sinfo` not found (start one: sudo bash tests/slurm/start_slurm.sh)"
    try:
        proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "SLURM does not answer: `sinfo` timed out (start it: sudo bash tests/slurm/start_slurm.sh)"
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"SLURM does not answer `sinfo` ({proc.stderr.strip()[:200]}); start it: sudo bash tests/slurm/start_slurm.sh"
    return None


def query_node() -> Node:
    """The smallest node of the default partition, as sinfo reports it."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c|%m|%G|%P"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    default = [r for r in rows if r[3].endswith("*")] or rows
    cpus = min(int(r[0]) for r in default)
    mem = min(int(r[1].rstrip("+")) for r in default)
    gpus = min(_gpu_count(r[2]) for r in default)
    sacct = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True).returncode == 0
    return Node(cpus=cpus, mem_mb=mem, gpus=gpus, sacct=sacct)


def _gpu_count(gres: str) -> int:
    """Number of GPUs in an sinfo %G field such as 'gpu:1', 'gpu:a100:4(S:0)' or '(null)'."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) > 1 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def node_profile(profile: dict, node: Node, prefix: str = "ganmatchtest") -> dict:
    """profiles/slurm adapted to a test node: the same rules and retries, requests that fit the node.

    Threads are capped at the node's cores and memory at its share per core; GPU requests are dropped
    when the node has no GPU; partition and account are left to the cluster's defaults; status is
    polled with squeue when there is no accounting database.
    """
    out = yaml.safe_load(yaml.safe_dump(profile))
    cap = node.mem_mb // node.cpus
    for resources in [out.get("default-resources", {}), *out.get("set-resources", {}).values()]:
        for key in ("slurm_partition", "slurm_account"):
            resources.pop(key, None)
        if "mem_mb" in resources:
            resources["mem_mb"] = f"min({resources['mem_mb']}, {cap})"
        if not node.gpus:
            if "gpu" in resources:
                resources["gpu"] = 0
            resources.pop("gpu_model", None)
            resources.pop("gres", None)
    out["set-threads"] = {rule: min(int(n), node.cpus) for rule, n in out.get("set-threads", {}).items()}
    out["jobs"] = 2 * node.cpus
    out["latency-wait"] = 10
    out["slurm-no-account"] = True
    out["slurm-init-seconds-before-status-checks"] = 2
    out["slurm-jobname-prefix"] = prefix
    if not node.sacct:
        out["slurm-status-command"] = "squeue"
    return out


def test_node_profile_fits_a_small_gpu_less_node():
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    node = Node(cpus=2, mem_mb=8000, gpus=0, sacct=False)
    adapted = node_profile(profile, node)
    assert profile["set-resources"]["project_shard"]["gpu"] == 1  # the real profile asks for a GPU
    assert adapted["set-resources"]["project_shard"]["gpu"] == 0
    assert max(adapted["set-threads"].values()) == 2
    assert adapted["slurm-status-command"] == "squeue"
    assert adapted["retries"] == profile["retries"] >= 1
    for resources in [adapted["default-resources"], *adapted["set-resources"].values()]:
        if "mem_mb" in resources:
            for attempt in (1, 2, 3):
                assert eval(resources["mem_mb"], {"min": min, "attempt": attempt}) <= 4000
    with_gpu = node_profile(profile, Node(cpus=16, mem_mb=64000, gpus=1, sacct=True))
    assert with_gpu["set-resources"]["project_shard"]["gpu"] == 1
    assert "slurm-status-command" not in with_gpu


# --- running Snakemake in copies of the repository -------------------------------------------------


def copy_repository(dest: Path) -> Path:
    """Copy the repository's files (tracked, and untracked but not ignored) into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
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
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
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
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
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


def reset_from_projection(src: Path, dest: Path) -> Path:
    """A copy of a finished run with everything from the projection stage on deleted."""
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns("slurm"))
    res = dest / "results" / DATASET
    for path in res.iterdir():
        if path.name not in ("images.parquet", "aligned"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return dest


def squeue_jobs(prefix: str) -> list[dict]:
    """This test's jobs in the queue (recently finished ones included): id, state, comment."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%T|%j|%k"], capture_output=True, text=True, timeout=30
    ).stdout
    jobs = []
    for line in out.splitlines():
        jobid, state, name, comment = line.split("|", 3)
        if name.startswith(prefix):
            jobs.append({"id": jobid, "state": state, "comment": comment})
    return jobs


def job_state(jobid: str) -> str:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", jobid, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


# --- tests on the running cluster ------------------------------------------------------------------

slurm = pytest.mark.skipif(slurm_skip_reason() is not None, reason=str(slurm_skip_reason()))


@pytest.fixture(scope="module")
def node() -> Node:
    return query_node()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The small demo through profiles/local: the reference tables."""
    work = copy_repository(tmp_path_factory.mktemp("local"))
    run(work, "--profile", "profiles/local", "--cores", "2")
    return final_tables(work)


def prepare_slurm(work: Path, node: Node, prefix: str) -> Path:
    profile = yaml.safe_load((work / "profiles/slurm/config.yaml").read_text())
    test_profile = work / "profiles/slurm-test"
    test_profile.mkdir()
    (test_profile / "config.yaml").write_text(yaml.safe_dump(node_profile(profile, node, prefix)))
    return work


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, node):
    """The small demo through the SLURM profile: its working copy and the SLURM job ids it used."""
    prefix = f"gmtest{os.getpid()}a"
    work = prepare_slurm(copy_repository(tmp_path_factory.mktemp("slurm")), node, prefix)
    proc = run(work, "--profile", "profiles/slurm-test")
    return work, proc


@slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_run_equals_local_run(slurm_run, local_run):
    work, proc = slurm_run
    out = proc.stdout + proc.stderr
    assert "submitted with SLURM jobid" in out  # the jobs really went through SLURM
    for rule in ("align_shard", "project_shard", "match_groups", "balance_method"):
        assert f"rule {rule}:" in out
    tables = final_tables(work)
    assert any(name.startswith("balance/") for name in tables) and any(n.startswith("matches/") for n in tables)
    assert_same_tables(tables, local_run)
    # The restart is a no-op: nothing is left incomplete.
    again = run(work, "--profile", "profiles/slurm-test")
    assert "Nothing to be done" in again.stdout + again.stderr


@slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_job_then_restart_gives_identical_tables(slurm_run, local_run, node, tmp_path):
    prefix = f"gmtest{os.getpid()}b"
    work = reset_from_projection(slurm_run[0], tmp_path / "work")
    (work / "profiles/slurm-test/config.yaml").write_text(
        yaml.safe_dump({**yaml.safe_load((work / "profiles/slurm-test/config.yaml").read_text()),
                        "slurm-jobname-prefix": prefix})
    )
    args = ("--profile", "profiles/slurm-test", "--retries", "0")
    log = tmp_path / "first.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(snakemake_cmd(*args), cwd=work, env=run_env(work), stdout=sink, stderr=sink)
        cancelled = None
        deadline = time.monotonic() + 300
        try:
            while cancelled is None and time.monotonic() < deadline and proc.poll() is None:
                for job in squeue_jobs(prefix):
                    if job["comment"].startswith("rule_project_shard") and job["state"] == "RUNNING":
                        subprocess.run(["scancel", job["id"]], check=True)
                        cancelled = job["id"]
                        break
                time.sleep(0.5)
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    first_out = log.read_text()
    assert cancelled is not None, "no running project_shard job was seen to cancel"
    assert job_state(cancelled) in ("CANCELLED", "")  # "" once SLURM has forgotten the job
    assert proc.returncode != 0, "the run with a cancelled job (and no retries) must fail"
    assert cancelled in first_out and "CANCELLED" in first_out
    assert not (work / "results" / DATASET / "balance/summary.parquet").exists()

    restart = run(work, *args)  # the same command again
    assert "rule project_shard:" in restart.stdout + restart.stderr
    assert_same_tables(final_tables(work), local_run)


@slurm
@pytest.mark.slurm
@pytest.mark.slow
def test_job_failing_once_is_retried(slurm_run, local_run, tmp_path):
    prefix = f"gmtest{os.getpid()}c"
    work = reset_from_projection(slurm_run[0], tmp_path / "work")
    (work / "profiles/slurm-test/config.yaml").write_text(
        yaml.safe_dump({**yaml.safe_load((work / "profiles/slurm-test/config.yaml").read_text()),
                        "slurm-jobname-prefix": prefix})
    )
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
    proc = run(work, "--profile", "profiles/slurm-test", env=env)  # the profile's retries: 2
    out = proc.stdout + proc.stderr

    assert not marker.exists(), "no project_shard job was submitted through the fault wrapper"
    failed = (tmp_path / "fail-once.jobid").read_text().strip()
    assert f"SLURM-job '{failed}' failed" in out  # SLURM ran the job and it failed...
    assert job_state(failed) in ("FAILED", "")
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_project_shard/", out)
    assert len(submitted) == 3 and submitted.index(failed) < 2  # ...and was resubmitted: 2 shards + 1 retry
    assert_same_tables(final_tables(work), local_run)


# --- the profiles themselves (no SLURM needed) -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["profiles/slurm", "profiles/local"])
def test_profile_is_accepted_by_snakemake(profile, tmp_path):
    """Snakemake parses the profile (every key an option, every resource expression valid)."""
    work = copy_repository(tmp_path)
    proc = run(work, "--profile", profile, "-n")
    out = proc.stdout + proc.stderr
    assert "rule download_demo:" in out and "This was a dry-run" in out
