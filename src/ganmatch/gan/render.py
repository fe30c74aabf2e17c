"""The one renderer: W or W+ latents -> uint8 images, for the pipeline, the demo simulator and the
explorer."""

from __future__ import annotations

import numpy as np
import torch

from ganmatch.gan.project import resolve_device, tensor_to_uint8


def render(generator, latents: np.ndarray, batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """Render W or W+ latents to uint8 (N, size, size, 3) with the generator's constant noise, in batches.

    The latents keep their dtype and the generator its precision (the demo's float64 twin renders in float64);
    `device` ("auto", "cpu", "cuda", ...) moves the generator there first, None leaves it where it is. The
    batch size is part of the result's bytes on some kernels, so each caller keeps its own.
    """
    if device is not None:
        generator = generator.to(resolve_device(device))
    generator = generator.eval()
    dev = generator.const.device
    out = [np.zeros((0, generator.size, generator.size, 3), np.uint8)]
    with torch.no_grad():
        for start in range(0, len(latents), batch_size):
            w = torch.from_numpy(np.ascontiguousarray(latents[start : start + batch_size])).to(dev)
            out.append(tensor_to_uint8(generator.synthesis(w, noise_mode="const")))
    return np.concatenate(out)
