"""Edit throughput: edited images rendered per second at batch sizes 1..64 (writes
benchmarks/results/editing.{csv,md}).

One edited image = moving a latent along a direction (`ganmatch.gan.editing.apply_edits`) and rendering it
with the generator in batches (`ganmatch.gan.render.render`, what the edit_shard rule runs per shard); PNG
writing is left out. Each time is the fastest of `repeats` runs of `n_images` images after a warm-up. Presets
as in benchmarks/projection.py: "demo" (32 px) and "ffhq256" (the official 256 px architecture, random
weights: same compute as the real one).

    PYTHONPATH=src python benchmarks/editing.py --preset demo --device cpu
    PYTHONPATH=src python benchmarks/editing.py --preset ffhq256 --device cuda --batch-sizes 1,2,4,8,16,32,64

Each run replaces its own rows (machine, preset, device, threads, batch size) and keeps the others.
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

from ganmatch.data.io import atomic_path
from ganmatch.gan import editing
from ganmatch.gan.render import render
from ganmatch.gan.stylegan2 import make_generator

PRESETS = {
    "demo": dict(size=32, z_dim=16, w_dim=16, n_mlp=2, channels={4: 32, 8: 32, 16: 32, 32: 32}),
    "ffhq256": dict(size=256, z_dim=512, w_dim=512, n_mlp=8, channel_base=16384, channel_max=512),
}
KEY = ["machine", "preset", "size", "device", "threads", "batch_size"]
RESULTS = Path(__file__).parent / "results"


def machine_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} {os.cpu_count()} cores"


def time_edits(gen, W, direction, batch_size: int, device: str) -> float:
    """Seconds to edit and render every latent of W once along `direction` (synchronised on CUDA)."""
    table = pd.DataFrame({"score_sd": [1.0]})
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    edited = editing.apply_edits(W, direction[None], editing.edit_steps(table, [1.0]))[:, 0, 0]
    render(gen, edited, batch_size=batch_size, device=device)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run(preset: str, device: str, batch_sizes: list[int], n_images: int, repeats: int = 3,
        seed: int = 0) -> pd.DataFrame:
    gen = make_generator(**PRESETS[preset], seed=seed)
    with torch.no_grad():
        W = gen.mapping(torch.randn(n_images, gen.z_dim, generator=torch.Generator().manual_seed(1))).numpy()
    direction = np.random.default_rng(seed).standard_normal(gen.w_dim).astype(np.float32)
    direction /= np.linalg.norm(direction)
    rows = []
    for b in batch_sizes:
        n = max(b, n_images - n_images % b)
        Wb = np.resize(W, (n, gen.w_dim)).astype(np.float32)
        time_edits(gen, Wb[:b], direction, b, device)  # warm-up
        t = min(time_edits(gen, Wb, direction, b, device) for _ in range(repeats))
        rows.append({"machine": machine_name(device), "preset": preset, "size": gen.size, "device": device,
                     "threads": torch.get_num_threads(), "batch_size": b, "n_images": n, "seconds": t,
                     "images_per_sec": n / t, "load_avg": os.getloadavg()[0]})
    df = pd.DataFrame(rows)
    base = df.loc[df["batch_size"] == 1, "images_per_sec"]
    df["speedup_vs_batch1"] = df["images_per_sec"] / (float(base.iloc[0]) if len(base) else np.nan)
    return df


def merge(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Rows of `old` not re-measured in `new`, then `new`, sorted by the key."""
    if old is None or old.empty:
        return new.sort_values(KEY).reset_index(drop=True)
    keep = ~old[KEY].apply(tuple, axis=1).isin(set(new[KEY].apply(tuple, axis=1)))
    return pd.concat([old[keep], new], ignore_index=True).sort_values(KEY).reset_index(drop=True)


def write(df: pd.DataFrame, out: Path = RESULTS) -> None:
    with atomic_path(out / "editing.csv", ".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    text = ("# Edit throughput\n\n`images_per_sec`: latents moved along a direction and rendered by the "
            "generator per "
            "second (PNG writing excluded), the fastest of `--repeats` runs after a warm-up (3; the 256 px "
            "rows: 2); `speedup_vs_batch1` within one "
            "machine, preset and device; `load_avg`: the machine's 1-minute load average after the row "
            "(other jobs "
            "slow small batches most; the first rows were measured on a 2-core machine shared at load ~10, "
            "so they are "
            "pessimistic). GPU rows: none yet (no GPU was lent when this table was made); run "
            "`python benchmarks/editing.py --preset ffhq256 --device cuda` on one to add them.\n\n"
            + df.to_markdown(index=False, floatfmt=".4g") + "\n")
    with atomic_path(out / "editing.md", ".md") as tmp:
        tmp.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    ap.add_argument("--n-images", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = run(args.preset, args.device, [int(b) for b in args.batch_sizes.split(",")], args.n_images,
             args.repeats)
    print(df.to_string(index=False))
    path = RESULTS / "editing.csv"
    write(merge(pd.read_csv(path) if path.exists() else None, df))


if __name__ == "__main__":
    main()
