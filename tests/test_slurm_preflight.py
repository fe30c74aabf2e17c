"""SLURM preflight (ganmatch.slurm): decisions from the text of sinfo and sacct, no cluster needed."""

import pytest

from ganmatch.errors import ConfigError
from ganmatch.slurm import Node, accounting_works, largest_node, mem_at, parse_sinfo, preflight

SINFO = """debug* 2 7900
debug* 2 7900
gpu 16 64000
gpu 32+ 128000
"""
NO_ACCOUNTING = "sacct: error: Slurm accounting storage is disabled\n"
PROFILE_THREADS = {"align_shard": 2, "project_shard": 4, "compute_neighbours": 4, "predict_attributes": 2}
PROFILE_MEM = {"align_shard": "min(4000 * attempt, 16000)", "project_shard": "min(16000 * attempt, 64000)",
               "compute_embedding": "min(8000 * attempt, 32000)", "match_groups": 3000}


def test_parse_sinfo_and_the_largest_node_of_a_partition():
    nodes = parse_sinfo(SINFO + "\n  \n")
    assert nodes[0] == Node("debug*", 2, 7900) and len(nodes) == 4
    assert largest_node(nodes) == Node("debug", 2, 7900)  # the default partition
    assert largest_node(nodes, "gpu") == Node("gpu", 32, 128000)
    with pytest.raises(ConfigError, match="no node in partition 'cpu'.*slurm_partition"):
        largest_node(nodes, "cpu")


def test_accounting_is_detected_from_sacct():
    assert accounting_works(0, "")
    assert not accounting_works(1, NO_ACCOUNTING)
    assert not accounting_works(0, NO_ACCOUNTING)


def test_mem_expressions_per_attempt():
    assert [mem_at("min(4000 * attempt, 16000)", a) for a in (1, 2, 3, 5)] == [4000, 8000, 12000, 16000]
    assert mem_at(3000, 1) == 3000 and mem_at("not python(", 1) is None


def test_a_one_node_cluster_without_accounting_gets_squeue_and_caps_in_one_message_each():
    """The two silent hangs of issue 20: sacct failing (waits for ever) and 4-thread jobs on a 2-core node."""
    result = preflight(SINFO, 1, NO_ACCOUNTING, "sacct", PROFILE_THREADS, PROFILE_MEM, retries=2)
    assert result.status_command == "squeue" and result.max_threads == 2
    assert result.mem_caps == {"align_shard": 7900, "project_shard": 7900, "compute_embedding": 7900}
    assert len(result.messages) == 3
    assert "squeue" in result.messages[0] and "slurm-status-command: squeue" in result.messages[0]
    assert "2 cores" in result.messages[1] and "compute_neighbours (4), project_shard (4)" in result.messages[1]
    assert "align_shard" not in result.messages[1]  # 2 threads fit
    assert "7900 MB" in result.messages[2] and "match_groups" not in result.messages[2]


def test_a_cluster_that_fits_changes_nothing():
    result = preflight(SINFO, 0, "", None, PROFILE_THREADS, PROFILE_MEM, partition="gpu", retries=2)
    assert result.status_command == "sacct" and result.mem_caps == {} and result.messages == []
    assert result.max_threads == 32


FAKE_TOOLS = {  # a one-node cluster without accounting, as in issue 20; sbatch records its arguments
    "sinfo": 'echo "debug* 2 7900"',
    "sacct": 'echo "sacct: error: Slurm accounting storage is disabled" >&2; exit 1',
    "sbatch": 'echo "$@" >> "$FAKE_SLURM_LOG/sbatch.log"; echo 12345',
    "scancel": 'echo "$@" >> "$FAKE_SLURM_LOG/scancel.log"',
    "squeue": "exit 0", "scontrol": "exit 0", "sacctmgr": "exit 0",
}


@pytest.mark.slow
def test_the_shipped_profile_on_a_small_cluster_says_what_it_adapted_and_sigterm_cancels_jobs(tmp_path):
    """The workflow's start-up (onstart) with profiles/slurm unchanged, against fake SLURM commands: squeue
    instead of a broken sacct, threads capped to the node with one message, and a SIGTERM cancels (scancel)
    the submitted job and ends the run instead of waiting for it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import copy_workflow

    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_TOOLS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=str(work / "src"),
               FAKE_SLURM_LOG=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "sbatch.log").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert (tmp_path / "sbatch.log").exists(), "no job was submitted"
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "SLURM preflight: sacct does not work" in out and "squeue" in out
    assert "has 2 cores: threads capped to 2 for compute_neighbours (4), project_shard (4)" in out
    assert "has 7900 MB: mem_mb capped for" in out and "project_shard" in out.split("mem_mb capped for")[1]
    assert (tmp_path / "scancel.log").read_text().split() == ["12345"]  # the submitted job was cancelled
    assert proc.returncode != 0
