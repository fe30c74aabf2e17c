"""Encoder initialisation vs mean-w start on the demo: PSNR and latent error against projection steps
(writes benchmarks/results/encoder.{csv,md}).

The generator and the images are the demo's (config/config.yaml `demo` block and seed): 100 of the demo's
true latents (one shard), rendered. Latent error is the RMS distance to the true latent in units of w's
spread (mean w scores about 1). Each encoder setting is trained once and timed; each projection is a
fresh run with that many steps (the learning-rate schedule depends on the step count, as in the pipeline).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/encoder.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from ganmatch.data.io import atomic_path
from ganmatch.gan.encoder import LatentEncoder
from ganmatch.gan.project import LatentProjector
from ganmatch.gan.render import render
from ganmatch.gan.stylegan2 import make_generator
from ganmatch.simulate import demo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
LR = yaml.safe_load((ROOT / "config/config.yaml").read_text())["project"]["lr"]
ENCODERS = {  # name -> LatentEncoder settings
    "encoder (defaults)": dict(n_train=4000, epochs=8, channels=16, latent_jitter=0.5),
    "encoder (cheap, jitter 1)": dict(n_train=2000, epochs=8, channels=8, latent_jitter=1.0),
}


def demo_setup(n_images: int):
    """The demo generator and `n_images` of its true latents with their rendered images."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    d, seed = cfg["demo"], cfg["seed"]
    gen = make_generator(size=d["resolution"], z_dim=d["z_dim"], w_dim=d["w_dim"], n_mlp=d["n_mlp"],
                         channels={r: d["channels"] for r in (4, 8, 16, 32, 64, 128, 256)}, seed=seed)
    latents = demo.simulate(gen, d, seed=seed).latents[:n_images]
    return gen, latents, render(gen, latents)


def run(n_images: int, steps_list: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    gen, truth, images = demo_setup(n_images)
    inits = {"mean w": None}
    fits = []
    for name, kw in ENCODERS.items():
        enc = LatentEncoder(gen, random_state=0, **kw).fit()
        inits[name] = enc.predict(images)
        fits.append({"encoder": name, **kw, "fit_seconds": enc.fit_seconds_, "final_loss": enc.history_[-1]})
        print(fits[-1], flush=True)
    w_scale = enc.w_scale_
    rows = []
    for steps in steps_list:
        for name, init in inits.items():
            proj = LatentProjector(gen, steps=max(steps, 1), lr=LR if steps else 0.0,
                                   batch_size=n_images, device="cpu")
            t0 = time.perf_counter()
            res = proj.project(images, init=init)
            seconds = time.perf_counter() - t0
            err = float(np.sqrt(np.mean((res.latents - truth) ** 2)) / w_scale)
            rows.append({"steps": steps, "init": name, "psnr_median": float(np.median(res.psnr)),
                         "psnr_p10": float(np.percentile(res.psnr, 10)), "latent_error": err,
                         "seconds": seconds if steps else 0.0})
            print(rows[-1], flush=True)
    return pd.DataFrame(fits), pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--steps", default="0,10,20,40,60,100")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "encoder"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fits, df = run(args.images, [int(s) for s in args.steps.split(",")])
    out = Path(args.out)
    with atomic_path(out.with_suffix(".csv"), ".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.5g")
    psnr = df.pivot(index="steps", columns="init", values="psnr_median")
    err = df.pivot(index="steps", columns="init", values="latent_error")
    cols = ["mean w", *ENCODERS]
    text = ("# Encoder initialisation on the demo generator\n\nMachine: "
            f"{platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}, {args.threads} thread(s), shared with other jobs (times are "
            "indicative). "
            f"{args.images} demo images (true latents rendered), projection steps/lr as the demo config's "
            f"project block (lr {LR}), "
            "batch = all images. Step 0 is the starting latent itself.\n\n## Encoder training\n\n"
            + fits.to_markdown(index=False, floatfmt=".3g")
            + "\n\n## Median PSNR (dB) after n projection steps\n\n" + psnr[cols].to_markdown(floatfmt=".2f")
            + "\n\n## Latent error (RMS distance to the true w, in units of w's spread) after n steps\n\n"
            + err[cols].to_markdown(floatfmt=".3f")
            + "\n\n## All rows (psnr_p10 = 10th percentile; seconds = projection wall time)\n\n"
            + df.to_markdown(index=False, floatfmt=".3g") + "\n")
    with atomic_path(out.with_suffix(".md"), ".md") as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
