"""SLURM preflight (ganmatch.slurm): decisions from the text of sinfo and sacct, no cluster needed."""

import pytest

from ganmatch.errors import ConfigError
from ganmatch.slurm import (
    Node,
    accounting_works,
    gpus_asked,
    gres_gpus,
    largest_node,
    mem_at,
    parse_sinfo,
    preflight,
)

SINFO = """debug* 2 7900 (null)
debug* 2 7900 (null)
gpu 16 64000 gpu:a100:4(S:0-1)
gpu 32+ 128000 gpu:2
"""
NO_ACCOUNTING = "sacct: error: Slurm accounting storage is disabled\n"
PROFILE_THREADS = {"align_shard": 2, "project_shard": 4, "compute_neighbours": 4, "predict_attributes": 2}
PROFILE_MEM = {"align_shard": "min(4000 * attempt, 16000)", "project_shard": "min(16000 * attempt, 64000)",
               "compute_embedding": "min(8000 * attempt, 32000)", "match_groups": 3000}


def test_parse_sinfo_and_the_largest_node_of_a_partition():
    nodes = parse_sinfo(SINFO + "\n  \n")
    assert nodes[0] == Node("debug*", 2, 7900, 0) and len(nodes) == 4
    assert largest_node(nodes) == Node("debug", 2, 7900, 0)  # the default partition
    # the most cores; the most GPUs of any node
    assert largest_node(nodes, "gpu") == Node("gpu", 32, 128000, 4)
    assert parse_sinfo("debug* 2 7900") == [Node("debug*", 2, 7900, 0)]  # without the GRES column
    with pytest.raises(ConfigError, match="no node in partition 'cpu'.*slurm_partition"):
        largest_node(nodes, "cpu")


def test_gpus_in_gres_strings_and_in_a_rules_resources():
    assert [gres_gpus(g) for g in ("(null)", "gpu:1", "gpu:a100:4(S:0-1)", "gpu:2,gpu:v100:1", "gpu",
                                   "")] == [
        0, 1, 4, 3, 1, 0]
    assert gpus_asked({"gpu": 1, "mem_mb": 8}) == 1 and gpus_asked({"gpu": 0}) == 0
    assert gpus_asked({"gres": "gpu:a100:2"}) == 2 and gpus_asked({"gpu_model": "a100"}) == 1
    assert gpus_asked({"mem_mb": 8}) == 0


def test_a_gpu_request_where_no_node_has_one_is_dropped_with_one_message():
    """sbatch refuses --gpus=1 in a partition without GPUs ("Invalid generic resource"): the job runs on
    CPU."""
    result = preflight(SINFO, 0, "", None, {}, {}, gpus={"project_shard": 1})
    assert result.gpu_caps == {"project_shard": 0} and len(result.messages) == 1
    assert "no node of debug has a GPU" in result.messages[0] and "project_shard" in result.messages[0]
    in_gpu_partition = preflight(SINFO, 0, "", None, {}, {}, gpus={"project_shard": 1},
                                 rule_partitions={"project_shard": "gpu"})
    assert in_gpu_partition.gpu_caps == {} and in_gpu_partition.messages == []
    too_many = preflight(SINFO, 0, "", None, {}, {}, partition="gpu", gpus={"project_shard": 8})
    assert (
        too_many.gpu_caps == {"project_shard": 4}
        and "gpu capped to 4 for project_shard" in too_many.messages[0]
    )


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
    assert result.status_command == "squeue" and result.max_threads == 2 and result.gpu_caps == {}
    assert result.mem_caps == {"align_shard": 7900, "project_shard": 7900, "compute_embedding": 7900}
    assert len(result.messages) == 3
    assert "squeue" in result.messages[0] and "slurm-status-command: squeue" in result.messages[0]
    assert (
        "2 cores" in result.messages[1] and "compute_neighbours (4), project_shard (4)" in result.messages[1]
    )
    assert "align_shard" not in result.messages[1]  # 2 threads fit
    assert "7900 MB" in result.messages[2] and "match_groups" not in result.messages[2]


def test_a_cluster_that_fits_changes_nothing():
    result = preflight(
        SINFO,
        0,
        "",
        None,
        PROFILE_THREADS,
        PROFILE_MEM,
        partition="gpu",
        retries=2,
        gpus={"project_shard": 1},
    )
    assert result.status_command == "sacct" and result.mem_caps == {} and result.gpu_caps == {}
    assert result.messages == []
    assert result.max_threads == 32


FAKE_TOOLS = {  # a one-node cluster without accounting, as in issue 20; sbatch records its arguments
    "sinfo": 'echo "debug* 2 7900 (null)"',
    "sacct": 'echo "sacct: error: Slurm accounting storage is disabled" >&2; exit 1',
    "sbatch": 'echo "$@" >> "$FAKE_SLURM_LOG/sbatch.log"; echo 12345',
    "scancel": 'echo "$@" >> "$FAKE_SLURM_LOG/scancel.log"',
    "squeue": "exit 0",
    "scontrol": "exit 0",
    "sacctmgr": "exit 0",
}


@pytest.mark.slow
def test_the_shipped_profile_on_a_small_cluster_says_what_it_adapted_and_sigterm_cancels_jobs(tmp_path):
    """The workflow's start-up (onstart) with profiles/slurm unchanged, against fake SLURM commands: squeue
    instead of a broken sacct, threads, memory and GPUs capped to the node with one message each, and a
    SIGTERM cancels (scancel) the submitted job and ends the run instead of waiting for it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import copy_workflow

    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_TOOLS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        PYTHONPATH=str(work / "src"),
        FAKE_SLURM_LOG=str(tmp_path),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
    assert "no node of debug has a GPU (sinfo %G): the GPU request of project_shard is dropped" in out
    assert (tmp_path / "scancel.log").read_text().split() == ["12345"]  # the submitted job was cancelled
    assert proc.returncode != 0
