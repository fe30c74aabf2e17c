"""SLURM preflight at start-up: a cluster run that cannot hang on job states or sit PENDING for ever.

Three ways a SLURM run never finishes: (1) the cluster has no accounting database, `sacct` fails, and
Snakemake never learns that jobs finished; (2) a rule asks for more cores or memory than any node of the
partition has, and its jobs stay `PENDING (PartitionConfig)` without a message; (3) a rule asks for a GPU in a
partition without GPUs, and sbatch refuses every one of its jobs ("Invalid generic resource (gres)
specification"). `preflight` decides from the text of `sinfo` and `sacct` (pure, unit-tested);
`apply_preflight` is the thin start-up call that acts on it when the slurm executor is in use
(`workflow/rules/common.smk`).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from ganmatch.errors import ConfigError

SINFO_FORMAT = "%P %c %m %G"
"""`sinfo -h -N -o` format: partition (default marked *), cores per node, memory per node in MB, GRES."""


@dataclass(frozen=True)
class Node:
    """The largest node a partition offers one job (`gpus`: the most GPUs any node of the partition has)."""

    partition: str
    cpus: int
    mem_mb: int
    gpus: int = 0


@dataclass
class Preflight:
    """What the start-up check decided: the status command, capped threads / memory, and what to tell the
    user."""

    status_command: str
    node: Node
    max_threads: int
    mem_caps: dict[str, int] = field(default_factory=dict)
    gpu_caps: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def gres_gpus(gres: str) -> int:
    """GPUs in a GRES string: sinfo's %G ('gpu:1', 'gpu:a100:4(S:0-1)', '(null)') or a job's gres
    ('gpu:a100:1')."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres or ""):
        parts = item.split("(")[0].strip().split(":")
        if parts[0] == "gpu":
            total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from `sinfo -h -N -o "%P %c %m %G"` output (one line per node and partition; '*' marks the
    default)."""
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        partition, cpus, mem = parts[:3]
        cpus, mem = re.sub(r"\D.*", "", cpus), re.sub(r"\D.*", "", mem)
        if cpus and mem:
            nodes.append(Node(partition, int(cpus), int(mem), gres_gpus(parts[3]) if len(parts) > 3 else 0))
    return nodes


def gpus_asked(resources: dict) -> int:
    """GPUs a rule's resources ask for, as the slurm plugin reads them: `gpu`, else `gres`, else 1 with
    `gpu_model`."""
    gpu = resources.get("gpu")
    if gpu not in (None, ""):
        return int(gpu) if str(gpu).isdigit() else 1
    if resources.get("gres"):
        return gres_gpus(str(resources["gres"]))
    return 1 if resources.get("gpu_model") else 0


def largest_node(nodes: list[Node], partition: str | None = None) -> Node:
    """The node with the most cores (then memory) in `partition`, or in the default partition ('*') without
    one."""
    if partition:
        pool = [n for n in nodes if n.partition.rstrip("*") == partition]
        where = f"partition '{partition}' (slurm_partition)"
    else:
        pool = [n for n in nodes if n.partition.endswith("*")] or nodes
        where = "the default partition"
    if not pool:
        known = sorted({n.partition.rstrip("*") for n in nodes})
        raise ConfigError(f"SLURM preflight: sinfo lists no node in {where}; partitions: {known}. Set "
                          "default-resources: slurm_partition in profiles/slurm/config.yaml "
                          "(docs/cluster.md).")
    best = max(pool, key=lambda n: (n.cpus, n.mem_mb))
    return Node(best.partition.rstrip("*"), best.cpus, best.mem_mb, max(n.gpus for n in pool))


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
              retries: int = 0, gpus: dict[str, int] | None = None,
              rule_partitions: dict[str, str] | None = None) -> Preflight:
    """Decide the status command and the caps for this cluster (see the module docstring).

    `threads`: rule -> threads asked (set-threads and the rules' own); `mem_mb`: rule (or "default") -> the
    mem_mb resource. A rule whose memory at some attempt exceeds the node is capped to the node's memory.
    `gpus`: rule -> GPUs asked; a rule asking for more than any node of its partition (`rule_partitions`, else
    `partition`) has gets the node's number: 0 in a partition without GPUs, and the job runs on CPU.
    """
    nodes = parse_sinfo(sinfo_text)
    node = largest_node(nodes, partition)
    messages = []
    command = status_command or "sacct"
    if command == "sacct" and not accounting_works(sacct_returncode, sacct_output):
        command = "squeue"
        messages.append("sacct does not work on this cluster (no accounting database): job states are read "
                        "with "
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
    gpu_caps = {}
    for rule, asked in (gpus or {}).items():
        where = (rule_partitions or {}).get(rule) or partition
        has = largest_node(nodes, where).gpus if where != partition else node.gpus
        if asked > has:
            gpu_caps[rule] = has
    for has in sorted(set(gpu_caps.values())):
        rules = sorted(r for r, n in gpu_caps.items() if n == has)
        where = sorted({(rule_partitions or {}).get(r) or node.partition for r in rules})
        if has:
            messages.append(f"no node of {', '.join(where)} has more than {has} GPUs: gpu capped to {has} "
                            "for "
                            + ", ".join(rules))
        else:
            messages.append(f"no node of {', '.join(where)} has a GPU (sinfo %G): the GPU request of "
                            f"{', '.join(rules)} is dropped and it runs on CPU, much more slowly (to use "
                            "GPUs set "
                            "slurm_partition of that rule to your GPU partition; docs/cluster.md)")
    return Preflight(status_command=command, node=node, max_threads=node.cpus, mem_caps=caps,
                     gpu_caps=gpu_caps,
                     messages=messages)


def _run(cmd: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return 1, str(err)
    return proc.returncode, proc.stdout + proc.stderr


def _raw(value):
    """A profile value as written (Snakemake wraps parsed resources in `Resource` objects with a `raw`)."""
    return getattr(value, "raw", value)


REPLACES = {"mem_mb": ("mem", "mem_mb", "mem_mib"), "gpu": ("gpu", "gres", "gpu_model")}
"""The resource keys a capped value replaces: every spelling of memory; every way of asking for GPUs."""


def _replaced(resources, changed: dict, resources_type):
    """A copy of Snakemake `Resources` with the `changed` entries in place of the keys they replace."""
    drop = {key for name in changed for key in REPLACES.get(name, (name,))}
    return resources_type({**{k: v for k, v in resources.items() if k not in drop}, **changed})


def cancel_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C: Snakemake's scheduler then cancels every submitted job (scancel) and
    exits, instead of waiting for the running jobs ("Will exit after finishing currently running jobs")."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def patch_executor(executor_cls, no_account: bool, report=None) -> None:
    """Two fixes to snakemake-executor-plugin-slurm's Executor class (2.8.0), applied once at start-up.

    `slurm-no-account: true`: the plugin declares the option but never reads it, so every run still guessed an
    account with sacct and printed "No account was given, not able to get a SLURM account via sacct...". With
    the option set, a job without a `slurm_account` resource is submitted with no account and nothing is
    guessed (a `slurm_account` resource is still used, and checked, as before).

    A stop (Ctrl-C, SIGTERM) cancels the queued and running jobs with scancel; it now says how many:
    "ganmatch: SLURM: cancelled N job(s)" (`report`, default stderr)."""
    import sys

    if getattr(executor_cls, "_ganmatch_patched", False):
        return
    guess = executor_cls.get_account_arg
    cancel = executor_cls.cancel_jobs

    def get_account_arg(self, job):
        if no_account and not job.resources.get("slurm_account"):
            yield ""  # no -A: the cluster has no accounts (slurm-no-account: true)
            return
        yield from guess(self, job)

    def cancel_jobs(self, active_jobs):
        jobs = list(active_jobs)
        cancel(self, jobs)
        ids = ", ".join(str(getattr(j, "external_jobid",
                                    "?")) for j in jobs[:10]) + (", ..." if len(jobs) > 10 else "")
        line = (f"ganmatch: SLURM: cancelled {len(jobs)} queued or running job(s) with scancel"
                + (f" ({ids})" if jobs else "") + "; resume with the same command (--rerun-incomplete is in "
                                                  "the profile).")
        (report or (lambda text: print(text, file=sys.stderr)))(line)

    executor_cls.get_account_arg = get_account_arg
    executor_cls.cancel_jobs = cancel_jobs
    executor_cls._ganmatch_patched = True


def apply_preflight(workflow) -> Preflight:
    """The start-up call for the slurm executor (an `onstart` handler, so that the executor and the scheduler
    exist and no job is submitted yet): query sinfo/sacct, set the status command, cap threads (max_threads)
    and each rule's memory and GPUs, say so once, and let SIGTERM cancel the submitted jobs."""
    import sys

    from snakemake.resources import Resource, Resources

    settings = workflow.executor_settings
    resources = workflow.resource_settings
    defaults = dict(resources.default_resources.items()) if resources.default_resources else {}
    partition = _raw(defaults.get("slurm_partition"))
    partition = str(partition).strip("'\"") if partition else None
    code, sinfo = _run(["sinfo", "-h", "-N", "-o", SINFO_FORMAT])
    if code != 0:
        raise ConfigError(f"SLURM preflight: `sinfo` failed ({sinfo.strip()[:200]}); run snakemake on a "
                          "login "
                          "node of the cluster (docs/cluster.md).")
    sacct_code, sacct = _run(["sacct", "-n", "-X", "-j", "1"])
    threads = {r: int(_raw(n)) for r, n in resources.overwrite_threads.items() if str(_raw(n)).isdigit()}
    overwrite = {r: {k: _raw(v) for k, v in m.items()} for r, m in resources.overwrite_resources.items()}
    mem = {r: m["mem_mb"] for r, m in overwrite.items() if "mem_mb" in m}
    gpus = {r: gpus_asked(m) for r, m in overwrite.items() if gpus_asked(m)}
    rule_partitions = {r: str(m["slurm_partition"]).strip("'\"") for r, m in overwrite.items()
                       if m.get("slurm_partition")}
    result = preflight(sinfo, sacct_code, sacct, getattr(settings, "status_command", None), threads, mem,
                       partition, workflow.execution_settings.retries, gpus, rule_partitions)
    if hasattr(settings, "status_command"):
        settings.status_command = result.status_command
    resources.max_threads = min(resources.max_threads or result.max_threads, result.max_threads)
    updates: dict[str, dict] = {}
    for rule, limit in result.mem_caps.items():
        updates.setdefault(rule, {})["mem_mb"] = Resource.from_cli_expression("mem_mb", f"min({mem[rule]}, "
                                                                                        f"{limit})")
    for rule, count in result.gpu_caps.items():
        updates.setdefault(rule, {})["gpu"] = Resource.from_cli_expression("gpu", str(count))
    # The submitting process reads the rule's resources (sbatch); the job step inside the allocation reads the
    # --set-resources passed on to it (srun): both get the capped values.
    remote = resources._parsed_overwrite_resources
    for rule, changed in updates.items():
        target = workflow.get_rule(rule)
        target.resources = _replaced(target.resources, changed, Resources)
        if rule in remote:
            remote[rule] = _replaced(remote[rule], changed, Resources)
    for message in result.messages:
        print(f"ganmatch: SLURM preflight: {message}", file=sys.stderr)
    from snakemake_executor_plugin_slurm import Executor

    patch_executor(Executor, bool(getattr(settings, "no_account", False)))
    cancel_on_sigterm()
    return result
