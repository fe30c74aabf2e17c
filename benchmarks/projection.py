"""Projection throughput: image-steps per second for batch sizes 1..64 (writes
benchmarks/results/projection.{csv,md}).

Per-step time is (T(2k steps) - T(k steps)) / k, each T the fastest of 3 runs, so the one-off setup (w
statistics, model transfer) cancels. Presets: "demo" is the demo's random generator (32 px, 32 channels, 32-d
latents); "ffhq256" is the official 256 px architecture (paper256: channel_base 16384, 512-d, 8-layer mapping)
with random weights, which costs the same per step as the real one; "ffhq1024" likewise the official 1024 px
one (channel_base 32768). `--perceptual vgg` times the VGG loss with random VGG weights (same compute as the
pretrained one). The official projector optimises one image at a time, so batch size 1 is its throughput and
the speed-up column is relative to it.

    PYTHONPATH=src python benchmarks/projection.py --preset demo --device cpu --threads 1
    PYTHONPATH=src python benchmarks/projection.py --preset ffhq256 --device cuda --perceptual vgg
    --batch-sizes 1,64

Each run replaces its own rows (same preset, device, threads, space, loss and batch size) in the table and
keeps the others, so CPU and GPU runs accumulate into one table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ganmatch.data.io import write_table_pair
from ganmatch.gan.project import LatentProjector, tensor_to_uint8
from ganmatch.gan.stylegan2 import make_generator

PRESETS = {
    "demo": dict(size=32, z_dim=32, w_dim=32, n_mlp=8, channels={4: 32, 8: 32, 16: 32, 32: 32}),
    "ffhq256": dict(size=256, z_dim=512, w_dim=512, n_mlp=8, channel_base=16384, channel_max=512),
    "ffhq1024": dict(size=1024, z_dim=512, w_dim=512, n_mlp=8, channel_base=32768, channel_max=512),
}
KEY = ["machine", "preset", "size", "device", "threads", "space", "perceptual", "batch_size"]
CONFIG = [k for k in KEY if k != "batch_size"]
RESULTS = Path(__file__).parent / "results"


def time_steps(gen, images, steps, **kw) -> float:
    """Wall-clock seconds of a projection with this many steps (synchronised on CUDA)."""
    proj = LatentProjector(gen, steps=steps, batch_size=len(images), return_reconstructions=False, **kw)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    proj.project(images)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def machine_name(device: str) -> str:
    """What ran the timing: the GPU's name for CUDA, else the CPU architecture and core count."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} {os.cpu_count()} cores"


def with_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """`speedup_vs_batch1`: throughput over the batch-1 row of the same configuration (NaN without one)."""
    base = df[df["batch_size"] == 1].set_index(CONFIG)["images_per_sec"]
    ref = df[CONFIG].apply(tuple, axis=1).map(base.to_dict())
    return df.assign(speedup_vs_batch1=df["images_per_sec"] / ref.astype(float))


def run(preset: str, device: str, batch_sizes: list[int], steps: int, space: str, perceptual: str | None,
        seed: int = 0, repeats: int = 3) -> pd.DataFrame:
    gen = make_generator(**PRESETS[preset], seed=seed)
    with torch.no_grad():
        w = gen.mapping(torch.randn(max(batch_sizes), gen.z_dim, generator=torch.Generator().manual_seed(1)))
        images = np.concatenate([tensor_to_uint8(gen.synthesis(c)) for c in w.split(8)])
    kw = dict(space=space, perceptual=perceptual, device=device, perceptual_pretrained=False)
    rows = []
    for b in batch_sizes:
        time_steps(gen, images[:b], 1, **kw)  # warm-up (allocations, cuDNN autotune)
        # fastest of `repeats` runs: the least disturbed by other load on a shared machine
        t1 = min(time_steps(gen, images[:b], steps, **kw) for _ in range(repeats))
        t2 = min(time_steps(gen, images[:b], 2 * steps, **kw) for _ in range(repeats))
        per_step = max(t2 - t1, 1e-9) / steps
        rows.append(dict(machine=machine_name(device), preset=preset, size=gen.size, device=device,
                         threads=torch.get_num_threads(), space=space,
                         perceptual=perceptual or "pixel", batch_size=b, steps_timed=steps,
                         sec_per_step=per_step,
                         images_per_sec=b / per_step))
        print(rows[-1], flush=True)
    return with_speedup(pd.DataFrame(rows))


def merge(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`old` rows not re-measured in `new`, then `new`; sorted so each configuration's batch sizes sit
    together."""
    if old.empty:
        return with_speedup(new)
    old = old.astype({k: new[k].dtype for k in KEY if k in old})
    kept = old.merge(new[KEY], on=KEY, how="left", indicator=True)
    kept = kept[kept["_merge"] == "left_only"].drop(columns="_merge")
    merged = pd.concat([kept, new], ignore_index=True).sort_values(KEY, kind="stable", ignore_index=True)
    return with_speedup(merged)


def write_tables(df: pd.DataFrame, out: Path) -> None:
    """The CSV (the numbers) and the Markdown table (for reading) beside it, each written atomically."""
    head = ("# Projection throughput\n\n`machine` is what ran each row. `sec_per_step` is the difference of "
            "runs "
            "of 2 x `steps_timed` and `steps_timed` steps, divided by `steps_timed` (the fastest of several "
            "runs).\n"
            "`images_per_sec` = images x optimisation steps per second; batch size 1 is the official "
            "projector's "
            "one-image-at-a-time throughput, and `speedup_vs_batch1` is relative to it within a "
            "configuration.\n\n")
    write_table_pair(df, out, head)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--space", choices=["w", "w+"], default="w")
    ap.add_argument("--perceptual", choices=["pixel", "vgg"], default="pixel")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="runs per timing; the fastest counts")
    ap.add_argument("--out", default=str(RESULTS / "projection"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = run(args.preset, args.device, [int(b) for b in args.batch_sizes.split(",")], args.steps, args.space,
             None if args.perceptual == "pixel" else args.perceptual, repeats=args.repeats)
    out = Path(args.out)
    csv = out.with_suffix(".csv")
    write_tables(merge(pd.read_csv(csv) if csv.exists() else pd.DataFrame(), df), out)


if __name__ == "__main__":
    main()
