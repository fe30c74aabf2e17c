"""What each projection objective costs per image-step (benchmarks/results/projection_objectives.{csv,md}).

Objectives, W+, batch 1, CPU: `fast/pixel` (multi-scale MSE), `fast/vgg` (+ unlearned VGG16 to relu4_3 at
<= 256 px), `paper` (the reference projector: learned LPIPS-VGG to relu5_3 on images averaged down to 256 px,
noise maps optimised with their regulariser, the mean-deviation term, TF Adam). FLOPs are counted with torch's
FlopCounterMode as the difference of a 2-step and a 1-step projection (as `projection_flops.py`); seconds are
(T(2k steps) - T(k steps)) / k, the fastest of `--repeats` runs, so one-off work (w statistics, target
features, building the networks) cancels. Random weights (`lpips_allow_random`, `perceptual_pretrained=False`)
cost the same as the real ones. Presets as in `projection.py`; `--no-time` presets are counted only.

    PYTHONPATH=src python benchmarks/projection_objectives.py --presets demo,ffhq256 --flops-only ffhq1024
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ganmatch.data.io import write_table_pair
from ganmatch.gan.project import tensor_to_uint8
from ganmatch.gan.stylegan2 import make_generator

HERE = Path(__file__).parent


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_projection, _flops = _load("projection"), _load("projection_flops")
PRESETS = _projection.PRESETS
OBJECTIVES = {
    "fast/pixel": dict(perceptual=None),
    "fast/vgg": dict(perceptual="vgg", perceptual_pretrained=False),
    "paper": dict(objective="paper", lpips_allow_random=True),
}


def run(presets: list[str], flops_only: list[str], steps: int, repeats: int) -> pd.DataFrame:
    rows = []
    for preset in presets + flops_only:
        gen = make_generator(**PRESETS[preset], seed=0)
        with torch.no_grad():
            image = tensor_to_uint8(gen.synthesis(gen.mapping(torch.randn(1, gen.z_dim))))
        for name, kw in OBJECTIVES.items():
            kw = dict(kw, space="w+", device="cpu")
            flop_kw = {k: v for k, v in kw.items() if k not in ("perceptual_pretrained", "device")}
            gflop = (_flops.count_flops(gen, image, 2, **flop_kw)
                     - _flops.count_flops(gen, image, 1, **flop_kw)) / 1e9
            seconds = np.nan
            if preset not in flops_only:
                _projection.time_steps(gen, image, 1, **kw)  # warm-up
                t1 = min(_projection.time_steps(gen, image, steps, **kw) for _ in range(repeats))
                t2 = min(_projection.time_steps(gen, image, 2 * steps, **kw) for _ in range(repeats))
                seconds = max(t2 - t1, 1e-9) / steps
            rows.append(dict(machine=_projection.machine_name("cpu"), preset=preset, size=gen.size,
                             threads=torch.get_num_threads(), objective=name,
                             gflop_per_image_step=round(gflop, 2), seconds_per_image_step=seconds))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    base = df[df["objective"] == "fast/vgg"].set_index("preset")
    ratio = {c: df[c] / df["preset"].map(base[c]) for c in ("gflop_per_image_step", "seconds_per_image_step")}
    return df.assign(gflop_vs_fast_vgg=ratio["gflop_per_image_step"],
                     seconds_vs_fast_vgg=ratio["seconds_per_image_step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="demo,ffhq256", help="presets counted and timed")
    ap.add_argument("--flops-only", default="ffhq1024", help="presets counted only (too slow to time here)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "projection_objectives"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    presets, flops_only = ([p for p in text.split(",") if p] for text in (args.presets, args.flops_only))
    df = run(presets, flops_only, args.steps, args.repeats)
    head = ("# Projection cost per image-step, by objective\n\nW+, batch 1, CPU. `gflop_per_image_step`: "
            "torch FlopCounterMode, 2-step minus 1-step projection; `seconds_per_image_step`: "
            "(T(2k) - T(k)) / k, fastest of the repeats (empty: counted only); `*_vs_fast_vgg`: over "
            "objective fast with the VGG loss on the same preset. Regenerate with `PYTHONPATH=src python "
            "benchmarks/projection_objectives.py`.\n\n")
    write_table_pair(df, Path(args.out), head)


if __name__ == "__main__":
    main()
