"""FLOPs of one projection step per image (writes benchmarks/results/projection_flops.{csv,md}).

One step = synthesis of the latent, the loss against the targets (VGG features of the targets are computed
once per batch, not per step) and the backward pass. Counted with torch's `FlopCounterMode` as the difference
of a 2-step and a 1-step projection of one image, so the one-off work (w statistics, target features, the
final render) cancels. Random weights cost the same as the official ones (presets as in `projection.py`).

    PYTHONPATH=src python benchmarks/projection_flops.py --presets ffhq256,ffhq1024
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from ganmatch.data.io import write_table_pair
from ganmatch.gan.project import LatentProjector, tensor_to_uint8
from ganmatch.gan.stylegan2 import make_generator

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("bench_projection", HERE / "projection.py")
_projection = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_projection)
PRESETS = _projection.PRESETS


def count_flops(gen, image: np.ndarray, steps: int, **kw) -> int:
    """FLOPs of a whole `steps`-step projection of one image."""
    proj = LatentProjector(gen, steps=steps, batch_size=1, return_reconstructions=False,
                           perceptual_pretrained=False,
                           device="cpu", **kw)
    with FlopCounterMode(display=False) as counter:
        proj.project(image)
    return counter.get_total_flops()


def run(presets: list[str], spaces=("w+",), losses=("pixel", "vgg")) -> pd.DataFrame:
    rows = []
    for preset in presets:
        gen = make_generator(**PRESETS[preset], seed=0)
        with torch.no_grad():
            image = tensor_to_uint8(gen.synthesis(gen.mapping(torch.randn(1, gen.z_dim))))
        for space in spaces:
            for loss in losses:
                kw = dict(space=space, perceptual=None if loss == "pixel" else loss)
                step = count_flops(gen, image, 2, **kw) - count_flops(gen, image, 1, **kw)
                rows.append(dict(preset=preset, size=gen.size, space=space, perceptual=loss,
                                 gflop_per_image_step=step / 1e9))
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def write_tables(df: pd.DataFrame, out: Path) -> None:
    head = ("# Projection FLOPs per image-step\n\n`gflop_per_image_step`: forward + loss + backward of one "
            "optimisation step for one image (torch FlopCounterMode; the difference of a 2-step and a 1-step "
            "projection). Regenerate with `PYTHONPATH=src python benchmarks/projection_flops.py`.\n\n")
    write_table_pair(df, out, head)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="ffhq256,ffhq1024")
    ap.add_argument("--out", default=str(HERE / "results" / "projection_flops"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    write_tables(run(args.presets.split(",")), Path(args.out))


if __name__ == "__main__":
    main()
