"""SLURM preflight at start-up: a cluster run that cannot hang on job states or sit PENDING for ever.

Two ways a SLURM run silently never finishes: (1) the cluster has no accounting database, `sacct` fails, and
Snakemake never learns that jobs finished; (2) a rule asks for more cores or memory than any node of the
partition has, and its jobs stay `PENDING (PartitionConfig)` without a message. `preflight` decides from the
text of `sinfo` and `sacct` (pure, unit-tested); `apply_preflight` is the thin start-up call that acts on it
when the slurm executor is in use (`workflow/rules/common.smk`).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from ganmatch.errors import ConfigError

SINFO_FORMAT = "%P %c %m"
"""`sinfo -h -N -o` format: partition (default marked *), cores per node, memory per node in MB."""


@dataclass(frozen=True)
class Node:
    """The largest node a partition offers one job."""

    partition: str
    cpus: int
    mem_mb: int


@dataclass
class Preflight:
    """What the start-up check decided: the status command, capped threads / memory, and what to tell the user."""

    status_command: str
    node: Node
    max_threads: int
    mem_caps: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from `sinfo -h -N -o "%P %c %m"` output (one line per node and partition; '*' marks the default)."""
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        partition, cpus, mem = parts[:3]
        cpus, mem = re.sub(r"\D.*", "", cpus), re.sub(r"\D.*", "", mem)
        if cpus and mem:
            nodes.append(Node(partition, int(cpus), int(mem)))
    return nodes


def largest_node(nodes: list[Node], partition: str | None = None) -> Node:
    """The node with the most cores (then memory) in `partition`, or in the default partition ('*') without one."""
    if partition:
        pool = [n for n in nodes if n.partition.rstrip("*") == partition]
        where = f"partition '{partition}' (slurm_partition)"
    else:
        pool = [n for n in nodes if n.partition.endswith("*")] or nodes
        where = "the default partition"
    if not pool:
        known = sorted({n.partition.rstrip("*") for n in nodes})
        raise ConfigError(f"SLURM preflight: sinfo lists no node in {where}; partitions: {known}. Set "
                          "default-resources: slurm_partition in profiles/slurm/config.yaml (docs/cluster.md).")
    best = max(pool, key=lambda n: (n.cpus, n.mem_mb))
    return Node(best.partition.rstrip("*"), best.cpus, best.mem_mb)


def accounting_works(returncode: int, output: str) -> bool:
    """Whether `sacct` answered: exit status 0 and no 'accounting storage is disabled' (or similar) error."""
    text = output.lower()
    return returncode == 0 and not any(s in text for s in ("accounting storage is disabled", "not enabled",
                                                          "connection refused", "error"))


def mem_at(expression, attempt: int) -> int | None:
    """A mem_mb resource (a number or an expression in `attempt`, as in the profile) at one attempt."""
    if isinstance(expression, (int, float)):
        return int(expression)
    try:
        return int(eval(str(expression), {"__builtins__": {}}, {"min": min, "max": max, "attempt": attempt}))
    except Exception:  # noqa: BLE001 - an expression this check cannot read is left to Snakemake
        return None


def preflight(sinfo_text: str, sacct_returncode: int, sacct_output: str, status_command: str | None,
              threads: dict[str, int], mem_mb: dict[str, object], partition: str | None = None,
              retries: int = 0) -> Preflight:
    """Decide the status command and the caps for this cluster (see the module docstring).

    `threads`: rule -> threads asked (set-threads and the rules' own); `mem_mb`: rule (or "default") -> the
    mem_mb resource. A rule whose memory at some attempt exceeds the node is capped to the node's memory.
    """
    node = largest_node(parse_sinfo(sinfo_text), partition)
    messages = []
    command = status_command or "sacct"
    if command == "sacct" and not accounting_works(sacct_returncode, sacct_output):
        command = "squeue"
        messages.append("sacct does not work on this cluster (no accounting database): job states are read with "
                        "squeue instead (to make it permanent: slurm-status-command: squeue in the profile).")
    over = {rule: n for rule, n in threads.items() if n > node.cpus}
    if over:
        messages.append(f"the largest node of {node.partition} has {node.cpus} cores: threads capped to "
                        f"{node.cpus} for " + ", ".join(f"{r} ({n})" for r, n in sorted(over.items())))
    caps = {}
    for rule, expression in mem_mb.items():
        asked = [mem_at(expression, a) for a in range(1, retries + 2)]
        if any(m is not None and m > node.mem_mb for m in asked):
            caps[rule] = node.mem_mb
    if caps:
        messages.append(f"the largest node of {node.partition} has {node.mem_mb} MB: mem_mb capped for "
                        + ", ".join(sorted(caps)))
    return Preflight(status_command=command, node=node, max_threads=node.cpus, mem_caps=caps, messages=messages)


def _run(cmd: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return 1, str(err)
    return proc.returncode, proc.stdout + proc.stderr


def _raw(value):
    """A profile value as written (Snakemake wraps parsed resources in `Resource` objects with a `raw`)."""
    return getattr(value, "raw", value)


def cancel_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C: Snakemake's scheduler then cancels every submitted job (scancel) and
    exits, instead of waiting for the running jobs ("Will exit after finishing currently running jobs")."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def apply_preflight(workflow) -> Preflight:
    """The start-up call for the slurm executor (an `onstart` handler, so that the executor and the scheduler
    exist and no job is submitted yet): query sinfo/sacct, set the status command, cap threads (max_threads)
    and each rule's memory, say so once, and let SIGTERM cancel the submitted jobs."""
    import sys

    from snakemake.resources import Resource, Resources

    settings = workflow.executor_settings
    resources = workflow.resource_settings
    defaults = dict(resources.default_resources.items()) if resources.default_resources else {}
    partition = _raw(defaults.get("slurm_partition"))
    partition = str(partition).strip("'\"") if partition else None
    code, sinfo = _run(["sinfo", "-h", "-N", "-o", SINFO_FORMAT])
    if code != 0:
        raise ConfigError(f"SLURM preflight: `sinfo` failed ({sinfo.strip()[:200]}); run snakemake on a login "
                          "node of the cluster (docs/cluster.md).")
    sacct_code, sacct = _run(["sacct", "-n", "-X", "-j", "1"])
    threads = {r: int(_raw(n)) for r, n in resources.overwrite_threads.items() if str(_raw(n)).isdigit()}
    mem = {r: _raw(dict(m.items())["mem_mb"]) for r, m in resources.overwrite_resources.items()
           if "mem_mb" in dict(m.items())}
    result = preflight(sinfo, sacct_code, sacct, getattr(settings, "status_command", None), threads, mem,
                       partition, workflow.execution_settings.retries)
    if hasattr(settings, "status_command"):
        settings.status_command = result.status_command
    resources.max_threads = min(resources.max_threads or result.max_threads, result.max_threads)
    for rule, limit in result.mem_caps.items():
        capped = Resource.from_cli_expression("mem_mb", f"min({mem[rule]}, {limit})")
        workflow.get_rule(rule).resources.update(Resources({"mem_mb": capped}))
    for message in result.messages:
        print(f"ganmatch: SLURM preflight: {message}", file=sys.stderr)
    cancel_on_sigterm()
    return result
