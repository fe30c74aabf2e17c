"""Encoder initialisation for the projector: a small ResNet that maps an image straight to its latent.

Trained on pairs (w, G(w)) drawn from the generator itself (w = mapping(z), optionally truncated,
images rendered with the constant noise and quantised to uint8 as real inputs are), so it needs no
data set. Loss: mean squared error of the latent in units of w's spread (the projector's units),
plus optionally `pixel_weight` * the projector's multi-scale pixel error of G(encoder(G(w))).
Its prediction is a starting point for `LatentProjector.project(images, init=...)`, not a result:
a few optimisation steps from there reach what many steps from the mean latent reach.
"""

from __future__ import annotations

import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganmatch.data.io import atomic_path
from ganmatch.data.tensors import read_checkpoint
from ganmatch.errors import InputDataError, WeightsError
from ganmatch.gan.project import SPACES, images_to_tensor, multiscale_mse, tensor_to_uint8, w_statistics

FORMAT = "ganmatch-encoder/1"
TRAINING_PARAMS = ("n_train", "epochs", "batch_size", "lr", "pixel_weight", "truncation_psi", "latent_jitter",
                   "random_state")  # saved with the weights, for the record


# ------------------------------------------------------------------------------------------ network

class ResBlock(nn.Module):
    """Two 3x3 convs with leaky ReLU, the first with stride 2; a strided 1x1 conv on the skip path."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        # residual branch down-weighted: stable without norm layers
        return F.leaky_relu(self.skip(x) + h * 0.5, 0.2)


class EncoderNet(nn.Module):
    """Image (N, 3, size, size) in [-1, 1] -> (N, n_out) standardised latents: a stem conv, residual blocks
    halving the resolution down to 4x4 (channels doubling up to `channel_max`), then a two-layer head."""

    def __init__(self, size: int, n_out: int, channels: int = 16, channel_max: int = 128, hidden: int = 256):
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"encoder input size must be a power of two >= 4, got {size}")
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        blocks, c, res = [], channels, size
        while res > 4:
            c_out = min(2 * c, channel_max)
            blocks.append(ResBlock(c, c_out))
            c, res = c_out, res // 2
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(hidden, n_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(F.leaky_relu(self.stem(x), 0.2)))


# ------------------------------------------------------------------------------------------ estimator

def onednn_avx2_only() -> bool:
    """True when oneDNN is limited to AVX2 kernels: an ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA cap at or below
    AVX2, or a CPU without AVX-512."""
    import os

    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap and not cap.startswith(("AVX512", "AVX10", "AMX", "ALL", "DEFAULT")):
        return True
    try:
        with open("/proc/cpuinfo") as fh:
            return not any(line.startswith("flags") and " avx512f" in line for line in fh)
    except OSError:
        return False


class LatentEncoder:
    """Learn image -> latent for one generator (sklearn-style: parameters in `__init__`, `fit()`,
    `predict()`).

    `space`: "w" predicts (N, w_dim), "w+" (N, n_latent, w_dim). `input_size`: images are resized to
    min(input_size, generator size) before encoding, which bounds the cost for large generators.
    `truncation_psi` < 1 draws training latents nearer the mean; `latent_jitter` adds isotropic noise (in
    units of w's spread) so latents off the mapping's distribution, as projections of real photos are, are
    covered. Fitted attributes: `net_`, `w_mean_` and `w_scale_` (mean and spread of the mapping's w: the
    units of the targets and of `latent_error`), `history_` (mean training loss per epoch), `fit_seconds_`.
    """

    def __init__(self, generator=None, space: str = "w", n_train: int = 4000, epochs: int = 8,
                 batch_size: int = 64, lr: float = 2e-3, pixel_weight: float = 0.0,
                 truncation_psi: float = 1.0,
                 latent_jitter: float = 0.5, channels: int = 16, input_size: int = 64, random_state: int = 0):
        self.generator = generator
        self.space = space
        self.n_train = n_train
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.pixel_weight = pixel_weight
        self.truncation_psi = truncation_psi
        self.latent_jitter = latent_jitter
        self.channels = channels
        self.input_size = input_size
        self.random_state = random_state

    # -- configuration

    def _check(self):
        if self.generator is None:
            raise InputDataError("LatentEncoder needs a generator to fit")
        if self.space not in SPACES:
            raise InputDataError(f"encoder space must be one of {SPACES}, got {self.space!r}")
        if min(int(self.n_train), int(self.epochs), int(self.batch_size), int(self.channels)) < 1:
            raise InputDataError("n_train, epochs, batch_size and channels must be >= 1, got "
                                 f"{self.n_train}, {self.epochs}, {self.batch_size}, {self.channels}")

    def _arch(self) -> dict:
        """Everything needed to rebuild the network (saved with the weights)."""
        g = self.generator
        n_rows = 1 if self.space == "w" else g.n_latent
        return {"size": min(int(self.input_size), g.size), "generator_size": g.size, "w_dim": g.w_dim,
                "n_latent": g.n_latent, "space": self.space, "n_rows": n_rows, "channels": int(self.channels)}

    @staticmethod
    def _build(arch: dict) -> EncoderNet:
        return EncoderNet(arch["size"], arch["n_rows"] * arch["w_dim"], channels=arch["channels"])

    # -- training data

    @torch.no_grad()
    def sample_pairs(self, n: int, seed: int, w_scale: float | None = None) -> tuple[Tensor, Tensor]:
        """n training pairs: latents w (n, w_dim) and encoder inputs (n, 3, s, s), rendered as uint8 first.
        `w_scale` is w's spread from `w_statistics(generator, seed)`, computed here when not given."""
        g = self.generator
        if w_scale is None:
            _, w_scale = w_statistics(g, seed)
        rng = torch.Generator().manual_seed(int(seed) + 2)
        z = torch.randn(n, g.z_dim, generator=rng)
        ws, xs = [], []
        for chunk in z.split(256):
            w = g.mapping(chunk)
            if self.truncation_psi != 1:
                w = g.w_avg.lerp(w, float(self.truncation_psi))
            if self.latent_jitter:
                w = w + float(self.latent_jitter) * w_scale * torch.randn(w.shape, generator=rng)
            img = tensor_to_uint8(g.synthesis(w, noise_mode="const"))
            ws.append(w.float())
            xs.append(images_to_tensor(img, min(int(self.input_size), g.size)))
        return torch.cat(ws), torch.cat(xs)

    # -- fit / predict

    def fit(self, X=None, y=None) -> LatentEncoder:
        """Train on `n_train` fresh (w, G(w)) pairs for `epochs` epochs of Adam with cosine decay (X, y
        unused).

        Where oneDNN runs its AVX2 kernels, training uses torch's own convolutions: oneDNN's AVX2 backward
        pass crashed (segmentation fault) on this network, reproduced with ONEDNN_MAX_CPU_ISA=AVX2."""
        with torch.backends.mkldnn.flags(enabled=not onednn_avx2_only()):
            return self._fit()

    def _fit(self) -> LatentEncoder:
        self._check()
        t0 = time.perf_counter()
        gen = self.generator.cpu().eval().requires_grad_(False)
        self.arch_ = self._arch()
        self.w_mean_, self.w_scale_ = w_statistics(gen, self.random_state)
        w, x = self.sample_pairs(int(self.n_train), seed=self.random_state, w_scale=self.w_scale_)
        u = (w - self.w_mean_) / self.w_scale_
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            net = self._build(self.arch_)
        rng = torch.Generator().manual_seed(int(self.random_state) + 1)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        n, bs = len(u), int(self.batch_size)
        total = int(self.epochs) * math.ceil(n / bs)
        step, self.history_ = 0, []
        net.train()
        for _ in range(int(self.epochs)):
            order = torch.randperm(n, generator=rng)
            running = 0.0
            for idx in order.split(bs):
                for group in opt.param_groups:
                    group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / total))
                pred = net(x[idx]).view(len(idx), self.arch_["n_rows"], -1)
                loss = (pred - u[idx, None]).square().mean()
                if self.pixel_weight:
                    loss = loss + self.pixel_weight * multiscale_mse(self._render(gen, pred), x[idx]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += float(loss.detach()) * len(idx)
                step += 1
            self.history_.append(running / n)
        self.net_ = net.eval().requires_grad_(False)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _render(self, gen, pred: Tensor) -> Tensor:
        """G(latents) for standardised predictions (B, rows, w_dim), resized to the encoder's input size."""
        ws = self.w_mean_ + self.w_scale_ * pred
        img = gen.synthesis(ws[:, 0] if self.arch_["n_rows"] == 1 else ws, noise_mode="const")
        if img.shape[-1] != self.arch_["size"]:
            img = F.interpolate(img, size=self.arch_["size"], mode="area")
        return img

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, 3) images -> float32 latents, (N, w_dim) for "w" or (N, n_latent, w_dim) for
        "w+"."""
        if not hasattr(self, "net_"):
            raise InputDataError("LatentEncoder is not fitted: call fit() or load_encoder() first")
        arch = self.arch_
        x = images_to_tensor(images, arch["size"])
        out = [self.net_(c).view(len(c), arch["n_rows"], arch["w_dim"]) for c in x.split(batch_size)]
        u = torch.cat(out) if out else torch.zeros(0, arch["n_rows"], arch["w_dim"])
        w = (self.w_mean_ + self.w_scale_ * u).numpy().astype(np.float32)
        if arch["space"] == "w":
            return w[:, 0]
        return w

    def latent_error(self, latents: np.ndarray, truth: np.ndarray) -> float:
        """Root-mean-square error of latents against the truth, in units of w's spread (mean w scores about
        1)."""
        latents, truth = np.asarray(latents, np.float64), np.asarray(truth, np.float64)
        if truth.ndim == 2 and latents.ndim == 3:
            truth = truth[:, None]
        return float(np.sqrt(np.mean((latents - truth) ** 2)) / self.w_scale_)


# ------------------------------------------------------------------------------------------ files

def save_encoder(encoder: LatentEncoder, path: str | os.PathLike) -> None:
    """Write a fitted encoder (architecture, standardisation, CPU weights) atomically."""
    if not hasattr(encoder, "net_"):
        raise InputDataError("cannot save an unfitted LatentEncoder")
    state = {k: v.detach().cpu().clone() for k, v in encoder.net_.state_dict().items()}
    ckpt = {"format": FORMAT, "arch": dict(encoder.arch_), "w_mean": encoder.w_mean_.detach().cpu().clone(),
            "w_scale": float(encoder.w_scale_), "state_dict": state,
            "history": [float(h) for h in encoder.history_], "fit_seconds": float(encoder.fit_seconds_),
            "params": {k: getattr(encoder, k) for k in TRAINING_PARAMS}}
    with atomic_path(path, ".pt") as tmp:
        torch.save(ckpt, tmp)


def load_encoder(path: str | os.PathLike, generator=None) -> LatentEncoder:
    """Read an encoder saved by `save_encoder`; with `generator`, check it was trained for that generator's
    shape."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: encoder file not found; train it with the train_encoder rule")
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: not a '{FORMAT}' checkpoint (not a torch.save archive)")
    ckpt = read_checkpoint(path, FORMAT, "ganmatch.gan.encoder.save_encoder")
    arch = ckpt.get("arch")
    keys = ("size", "generator_size", "w_dim", "n_latent", "space", "n_rows", "channels")
    if not isinstance(arch, dict) or any(k not in arch for k in keys):
        raise WeightsError(f"{path}: encoder checkpoint lacks its architecture (keys {keys})")
    if generator is not None:
        found = (arch["generator_size"], arch["w_dim"], arch["n_latent"])
        want = (generator.size, generator.w_dim, generator.n_latent)
        if found != want:
            raise WeightsError(f"{path}: encoder was trained for a generator of (size, w_dim, n_latent) "
                               f"{found}, "
                               f"this generator has {want}; retrain it (delete the file and rerun)")
    net = LatentEncoder._build(arch)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise WeightsError(f"{path}: weights do not fit the encoder {arch} ({exc})") from exc
    params = {k: v for k, v in (ckpt.get("params") or {}).items() if k in TRAINING_PARAMS}
    enc = LatentEncoder(generator, space=arch["space"], channels=arch["channels"], input_size=arch["size"],
                        **params)
    enc.arch_, enc.net_ = dict(arch), net.eval().requires_grad_(False)
    enc.w_mean_, enc.w_scale_ = ckpt["w_mean"].float(), float(ckpt["w_scale"])
    enc.history_, enc.fit_seconds_ = list(ckpt.get("history", [])), float(ckpt.get("fit_seconds", 0.0))
    return enc
