"""Provenance of a run: code, packages, numerical libraries, CPU and GPU, threads, config and seed.

A user whose numbers differ from the README's sees at a glance what differs
(results/<dataset>/provenance.json, summarised in provenance.txt and the report). The demo's world is also
checked against the committed manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("ganmatch", "numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "torch", "torchvision",
            "numba",
            "faiss-cpu", "opencv-python-headless", "pillow", "snakemake", "threadpoolctl")
KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR",
                    "ATEN_CPU_CAPABILITY",
                    "NPY_DISABLE_CPU_FEATURES", "OPENCV_CPU_DISABLE", "CUBLAS_WORKSPACE_CONFIG",
                    "CUDA_VISIBLE_DEVICES")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "amx_tile", "amx_bf16")


def config_hash(config: dict) -> str:
    """sha256 of the validated config as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def demo_world_key(demo: dict, seed: int) -> str:
    """What the demo's world depends on (its block and the seed), hashed: the committed manifest's key."""
    return config_hash({"demo": demo, "seed": seed})


def git_commit(root: str | os.PathLike) -> dict:
    """The commit of the workflow's checkout and whether it has uncommitted changes (None outside git)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def code_version(root: str | os.PathLike) -> str:
    """`<version>+<commit>` (`+dirty` with uncommitted changes): when it changes, the provenance job
    reruns."""
    git = git_commit(root)
    version = package_versions(("ganmatch",))["ganmatch"]
    return f"{version}+{git['commit'] or 'nogit'}{'+dirty' if git['dirty'] else ''}"


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_info() -> dict:
    """CPU model, the ISA flags that decide which kernels numerical libraries pick, and the cores
    available."""
    model, flags = platform.processor() or None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in (None, "", platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "machine": platform.machine(), "isa": [f for f in ISA_FLAGS if f in flags],
            "cpu_count": os.cpu_count(), "usable_cpus": usable}


def numerics() -> dict:
    """numpy's BLAS (threadpoolctl: implementation, kernel architecture, threads) and torch's CPU/GPU
    set-up."""
    import numpy as np
    from threadpoolctl import threadpool_info

    out = {"blas": [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                             "threading_layer")}
                    for lib in threadpool_info()]}
    try:
        deps = np.show_config(mode="dicts").get("Build Dependencies", {})
        out["numpy_blas"] = {k: deps.get(k, {}).get("name") for k in ("blas", "lapack")}
    except Exception:  # noqa: BLE001 - older numpy: the threadpool entry says enough
        out["numpy_blas"] = None
    try:
        import torch

        cuda = torch.cuda.is_available()
        out["torch"] = {
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "mkl": torch.backends.mkl.is_available(),
            "threads": torch.get_num_threads(),
            "cuda_build": torch.version.cuda,
            "cuda_available": cuda,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "cudnn": torch.backends.cudnn.version() if cuda else None,
        }
    except ImportError:
        out["torch"] = None
    return out


def world_check(folder: str | os.PathLike, committed: str | os.PathLike, key: str) -> dict:
    """The demo's world against the committed manifest (`resources/demo_world.sha256`) when this config's demo
    block and seed are the ones it was written for; otherwise `checked: false`."""
    from ganmatch.data.manifest import folder_manifest, manifest_differences, parse_manifest

    committed = Path(committed)
    if not committed.exists():
        return {"checked": False, "reason": f"no committed manifest {committed}"}
    if not Path(folder).is_dir():
        return {"checked": False, "reason": f"no world folder {folder}"}
    text = committed.read_text()
    if f"# key: {key}" not in text:
        return {"checked": False, "reason": "the demo block or seed differs from the committed manifest's"}
    diffs = manifest_differences(parse_manifest(text), folder_manifest(folder))
    return {"checked": True, "identical": not diffs, "differences": diffs[:20], "n_differences": len(diffs)}


def provenance(config: dict, root: str | os.PathLike, world: dict | None = None) -> dict:
    """Everything above for this process, plus the config's hash, dataset and seed."""
    return {
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code": {"version": package_versions(("ganmatch",))["ganmatch"], **git_commit(root)},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "cpu": cpu_info(),
        "numerics": numerics(),
        "environment": {k: os.environ[k] for k in KERNEL_VARIABLES if k in os.environ},
        "config": {
            "sha256": config_hash(config),
            "dataset": config.get("dataset"),
            "seed": config.get("seed"),
        },
        "demo_world": world or {"checked": False, "reason": "not the demo"},
    }


def summary_text(prov: dict) -> str:
    """A few lines for people: what to compare when numbers differ from the README's."""
    cpu, num = prov["cpu"], prov["numerics"]
    blas = (
        ", ".join(
            f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
            for b in num["blas"]
        )
        or "none found"
    )
    torch_ = num.get("torch") or {}
    world = prov["demo_world"]
    if world.get("checked"):
        world_line = (
            "identical to the committed manifest"
            if world["identical"]
            else f"DIFFERS from the committed manifest in {world['n_differences']} files"
        )
    else:
        world_line = f"not checked ({world.get('reason')})"
    lines = [
        f"Code: ganmatch {prov['code']['version']}, commit {prov['code']['commit'] or 'unknown'}"
        + (" (uncommitted changes)" if prov["code"].get("dirty") else ""),
        f"Python: {prov['python']} on {prov['platform']}",
        f"CPU: {cpu['model']} ({cpu['usable_cpus']} of {cpu['cpu_count']} cores usable); ISA: "
        f"{' '.join(cpu['isa'])}",
        f"BLAS: {blas}",
        f"torch: {prov['packages'].get('torch')}, CPU kernels {torch_.get('cpu_capability')}, "
        f"{torch_.get('threads')} threads, CUDA "
        f"{'available: ' + ', '.join(torch_['gpus']) if torch_.get('cuda_available') else 'not available'}",
        "Kernel variables: " + (", ".join(f"{k}={v}" for k, v in prov["environment"].items()) or "none set"),
        f"Config: sha256 {prov['config']['sha256'][:16]}, dataset {prov['config']['dataset']}, "
        f"seed {prov['config']['seed']}",
        f"Demo world: {world_line}",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in prov["packages"].items() if v),
    ]
    return "\n".join(lines) + "\n"


def summary_html(prov: dict) -> str:
    """`summary_text` as a small self-contained HTML page (the report shows HTML inline, not text files)."""
    import html

    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v.strip())}</td></tr>"
        for k, _, v in (
            line.partition(": ") if ": " in line else ("", "", line)
            for line in summary_text(prov).splitlines()
        )
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Provenance</title><style>"
        "body{font-family:sans-serif;margin:1em}th{text-align:left;padding-right:1em;vertical-align:top}"
        "td{font-family:monospace}</style></head><body><h2>What produced these numbers</h2>"
        f"<table>{rows}</table><p>Full record: provenance.json beside this file.</p></body></html>\n"
    )
