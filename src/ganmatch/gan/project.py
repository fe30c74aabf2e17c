"""Batched GAN inversion: optimise one latent per image, many images at once, in W or W+.

Each image has its own latent rows and the loss is a sum over images, so every image's gradient, and
(Adam being per-parameter) every update, is the same as if it were projected alone. The latent is
parameterised as w = w_avg + w_scale * u with w_scale the per-coordinate spread of w, so `lr` is in
units of that spread whatever the generator. Loss per image:
- pixel: mean squared error plus the same error on 2x, 4x and 8x average-pooled images (the offline
  fallback for a perceptual loss: coarse scales weigh shape over texture, needs no downloaded weights);
- `perceptual="vgg"`: adds an LPIPS-style distance on unit-normalised VGG16 features (torchvision's
  ImageNet weights, which must be present in the torch hub cache or downloadable);
- `noise_weight` * the official projector's noise autocorrelation penalty when noise maps are optimised.

`objective="paper"` is the StyleGAN2 projector the paper ran (csinva/matching-with-gans
lib/stylegan2/projector.py), term by term (`paper_loss`): W+ optimised directly in w units from the mean w;
latent noise of `initial_noise_factor` x the spread of the broadcast w samples (`dlatent_std`), ramped down to
zero at `noise_ramp_length`; learned LPIPS-VGG (`ganmatch.gan.lpips`) on images averaged down to `lpips_size`;
`mean_deviation_weight` x the mean squared deviation of the W+ rows from their mean (the paper's 0.1);
optimised noise maps with the autocorrelation penalty, normalised after every step; TensorFlow's Adam
(`TFAdam`); the final latents, not the best seen. Each image has its own random streams, so a batch gives
each image what minibatch 1 gives it.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ganmatch.errors import InputDataError, WeightsError
from ganmatch.gan.lpips import average_down

SPACES = ("w", "w+")
OBJECTIVES = ("fast", "paper")
PERCEPTUAL = (None, "pixel", "vgg")
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass
class ProjectionResult:
    """Per-image outcome of `LatentProjector.project`, rows in input order."""

    latents: np.ndarray  # float32, (N, w_dim) for "w", (N, n_latent, w_dim) for "w+"
    loss: np.ndarray  # float32 (N,)
    psnr: np.ndarray  # float32 (N,) dB, reconstruction vs target
    steps: np.ndarray  # int (N,)
    status: list[str]  # "ok" or "failed"
    reason: list[str]
    reconstructions: np.ndarray | None  # uint8 (N, size, size, 3)

    @classmethod
    def empty(cls, generator, space: str = "w") -> ProjectionResult:
        """The result of projecting no image (a shard whose images were all rejected)."""
        shape = (0, generator.w_dim) if space == "w" else (0, generator.n_latent, generator.w_dim)
        return cls(np.zeros(shape, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64), [], [], np.zeros((0, generator.size, generator.size, 3), np.uint8))


def result_table(image_ids, result: ProjectionResult):
    """The latent shard table (image_id, status, reason, loss, psnr, steps), rows in the result's order."""
    import pandas as pd

    if len(image_ids) != len(result.loss):
        raise InputDataError(f"{len(image_ids)} image ids for {len(result.loss)} projected images")
    text = {c: pd.Series(v, dtype="str") for c, v in  # str even when empty (pandas would make it float)
            (("image_id", [str(i) for i in image_ids]), ("status", result.status), ("reason", result.reason))}
    return pd.DataFrame({**text, "loss": result.loss, "psnr": result.psnr,
                         "steps": result.steps.astype(np.int64)})


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA if present, then Apple MPS, then CPU; otherwise the named device."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@torch.no_grad()
def w_statistics(generator, seed: int = 0, n: int = 10000) -> tuple[Tensor, float]:
    """Mean w and the spread of w (RMS over coordinates) of the mapping from n seeded z, on the generator's
    device; the projector optimises in these units and the encoder predicts in them."""
    from ganmatch.gan.stylegan2 import float64_twin, seeded_normal, stable_scalar

    z = torch.from_numpy(seeded_normal(int(seed), (n, generator.z_dim))).to(generator.w_avg.device,
                                                                            torch.float64)
    twin = float64_twin(generator)  # float64 and rounded: the same start on every CPU
    with torch.no_grad():
        w = twin.mapping(z)
        mean = w.mean(0)
        spread = stable_scalar(float((w - mean).square().mean().sqrt()))
    mean = torch.tensor([stable_scalar(v) for v in mean.tolist()], dtype=generator.const.dtype,
                        device=mean.device)
    return mean, spread


def lr_schedule(t: float, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning rate at progress t in [0, 1]: linear warm-up over `rampup`, cosine decay over the last
    `rampdown`."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return lr * ramp


def noise_regularize(noises: list[Tensor]) -> Tensor:
    """Per-image squared autocorrelation of noise maps (B, 1, r, r) at shifts of one pixel, over a pyramid
    down to 8x8."""
    reg = noises[0].new_zeros(noises[0].shape[0])
    for noise in noises:
        while True:
            reg = reg + (noise * noise.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            reg = reg + (noise * noise.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, 2)
    return reg


def multiscale_mse(x: Tensor, y: Tensor, levels: int = 3) -> Tensor:
    """Per-image MSE at full resolution plus at `levels` 2x average-pooled scales (offline perceptual
    fallback)."""
    loss = (x - y).square().mean(dim=(1, 2, 3))
    for _ in range(levels):
        if x.shape[-1] < 8:
            break
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        loss = loss + (x - y).square().mean(dim=(1, 2, 3))
    return loss


class VGGDistance(torch.nn.Module):
    """LPIPS-style distance: unit-normalised VGG16 features (relu1_2 .. relu4_3), squared difference,
    averaged."""

    CUTS = (4, 9, 16, 23)

    def __init__(self, pretrained: bool = True):
        super().__init__()
        import torchvision

        weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1 if pretrained else None  # None: timing only
        try:
            vgg = torchvision.models.vgg16(weights=weights)
        except Exception as exc:  # noqa: BLE001 - offline without cached weights
            raise WeightsError(f"VGG16 ImageNet weights unavailable ({exc}); put vgg16-397923af.pth in "
                               f"{torch.hub.get_dir()}/checkpoints or use perceptual: null") from exc
        self.features_net = vgg.features[: self.CUTS[-1]].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[None, :, None, None])
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[None, :, None, None])

    def features(self, x: Tensor) -> list[Tensor]:
        """Channel-unit-normalised feature maps at each cut; computed once for the targets, every step for
        x."""
        if x.shape[-1] > 256:
            x = F.interpolate(x, size=256, mode="area")
        h = ((x + 1) / 2 - self.mean) / self.std
        feats, start = [], 0
        for cut in self.CUTS:
            h = self.features_net[start:cut](h)
            start = cut
            feats.append(h / (h.square().sum(dim=1, keepdim=True) + 1e-10).sqrt())
        return feats

    def forward(self, x: Tensor, target_features: list[Tensor]) -> Tensor:
        """Per-image distance (B,) between images x and targets given by their `features`."""
        out = x.new_zeros(x.shape[0])
        for fx, fy in zip(self.features(x), target_features, strict=True):
            out = out + (fx - fy).square().sum(dim=1).mean(dim=(1, 2))
        return out


def paper_loss(gen, lpips, w: Tensor, noises: list[Tensor] | None, target_features: list[Tensor], step_noise,
               mean_deviation_weight: float = 0.1, noise_weight: float = 1e5,
               lpips_size: int = 256) -> Tensor:
    """Per-image loss (B,) of the paper's projector: LPIPS between G(w + step_noise) and the targets (both
    averaged down to `lpips_size`), + mean_deviation_weight x `mean_deviation(w)` (w without the step noise),
    + noise_weight x `noise_regularize(noises)`. Each image's term is the reference's minibatch-1 loss."""
    img = gen.synthesis(w + step_noise, noise_mode="const", noises=noises)
    loss = lpips(average_down(img, lpips_size), target_features)
    if mean_deviation_weight:
        loss = loss + mean_deviation_weight * mean_deviation(w)
    if noises is not None and noise_weight:
        loss = loss + noise_weight * noise_regularize(noises)
    return loss


def image_streams(seed: int, first: int, n: int) -> list[np.random.Generator]:
    """One random stream per image, keyed by (seed, the image's position in the input): an image's draws do
    not depend on the batch it is projected in."""
    return [np.random.default_rng([int(seed), int(first) + i]) for i in range(n)]


def stream_normal(streams: list[np.random.Generator], shape: tuple[int, ...]) -> Tensor:
    """float64 standard normals (len(streams), *shape), each row from its image's stream (numpy: the same
    numbers on any CPU)."""
    return torch.from_numpy(np.stack([s.standard_normal(shape) for s in streams]))


def images_to_tensor(images: np.ndarray, size: int) -> Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, size, size) in [-1, 1], resized (antialiased bilinear) if needed."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputDataError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def tensor_to_uint8(x: Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    x = x.detach()
    x = ((x.to(torch.float64 if x.dtype == torch.float64 else torch.float32) + 1) * 127.5).round().clamp(0,
                                                                                                         255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def psnr(recon: np.ndarray, target: Tensor) -> np.ndarray:
    """PSNR in dB of uint8 reconstructions against float targets in [-1, 1] (both on the 0..255 scale)."""
    t = ((target.detach().float().cpu() + 1) * 127.5).clamp(0, 255).permute(0, 2, 3, 1).numpy()
    mse = ((recon.astype(np.float64) - t) ** 2).reshape(len(t), -1).mean(axis=1)
    return (10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))).astype(np.float32)


def dlatent_std(w_scale: float, n_latent: int, w_dim: int) -> float:
    """The reference projector's `_dlatent_std`: sqrt(sum of (w - mean)^2 over the n_latent x w_dim broadcast
    rows / N), i.e. the RMS spread per coordinate (`w_scale`) times sqrt(n_latent * w_dim)."""
    return float(w_scale) * math.sqrt(n_latent * w_dim)


def mean_deviation(w: Tensor) -> Tensor:
    """Per-image mean over rows and coordinates of (w - mean of its W+ rows)^2 (the paper's added
    regulariser); zero for W latents (N, w_dim), whose rows are all equal."""
    if w.ndim == 2:
        return w.new_zeros(w.shape[0])
    return (w - w.mean(dim=1, keepdim=True)).square().mean(dim=(1, 2))


def latent_noise_strength(t: float, std: float, initial_noise_factor: float = 0.05,
                          noise_ramp_length: float = 0.75) -> float:
    """SD of the noise added to the latents at progress t: std x factor x max(0, 1 - t / ramp)^2."""
    return std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2


class TFAdam:
    """Adam as TensorFlow 1's `tf.train.AdamOptimizer` (the reference projector's): the step is
    lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), eps outside the bias correction (torch puts it
    inside)."""

    def __init__(self, params, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.params = list(params)
        self.param_groups = [{"lr": lr}]
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.param_groups[0]["lr"] * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(lr_t * m / (v.sqrt() + self.eps))


class LatentProjector:
    """Project images into a generator's W or W+ space by batched Adam (see module docstring).

    `early_stop_tol`: an image stops once its best loss improved by less than this fraction over the last
    `patience` steps. `optimize_noise`: also fit per-image noise maps (regularised by `noise_weight`);
    otherwise the generator's constant noise is used. `latent_noise`: scale (in w spreads) of the exploration
    noise added to w early on, decaying to zero at 75% of the steps, as in the official projector.
    `mixed_precision`: autocast the generator on CUDA. `precision`: float32, or float64 for latents that do
    not depend on the CPU's kernels (Adam turns last-bit differences of float32 gradients into steps).
    `objective="paper"`: the paper's projector (module docstring); `lr` is then in w units, noise maps are
    optimised with `noise_weight`, `latent_noise`, `perceptual` and mixed precision are not used, and the
    LPIPS weights come from `vgg_weights` and `lpips_weights` (or are random with `lpips_allow_random`).
    """

    def __init__(self, generator, space="w", steps=200, lr=0.1, lr_rampup=0.05, lr_rampdown=0.25,
                 noise_weight=1e5, perceptual=None, batch_size=32, early_stop_tol=None, device="auto",
                 random_state=0, optimize_noise=False, latent_noise=0.0, patience=20, mixed_precision=True,
                 return_reconstructions=True, perceptual_pretrained=True, precision="float32",
                 objective="fast", mean_deviation_weight=0.1, initial_noise_factor=0.05,
                 noise_ramp_length=0.75, lpips_size=256, vgg_weights=None, lpips_weights=None,
                 lpips_allow_random=False):
        self.generator = generator
        self.space = space
        self.steps = steps
        self.lr = lr
        self.lr_rampup = lr_rampup
        self.lr_rampdown = lr_rampdown
        self.noise_weight = noise_weight
        self.perceptual = perceptual
        self.batch_size = batch_size
        self.early_stop_tol = early_stop_tol
        self.device = device
        self.random_state = random_state
        self.optimize_noise = optimize_noise
        self.latent_noise = latent_noise
        self.patience = patience
        self.mixed_precision = mixed_precision
        self.return_reconstructions = return_reconstructions
        self.perceptual_pretrained = perceptual_pretrained
        self.precision = precision
        self.objective = objective
        self.mean_deviation_weight = mean_deviation_weight
        self.initial_noise_factor = initial_noise_factor
        self.noise_ramp_length = noise_ramp_length
        self.lpips_size = lpips_size
        self.vgg_weights = vgg_weights
        self.lpips_weights = lpips_weights
        self.lpips_allow_random = lpips_allow_random

    @property
    def paper(self) -> bool:
        return self.objective == "paper"

    def _check(self):
        if self.space not in SPACES:
            raise InputDataError(f"projection space must be one of {SPACES}, got {self.space!r}")
        if self.perceptual not in PERCEPTUAL:
            raise InputDataError(f"perceptual must be one of {PERCEPTUAL}, got {self.perceptual!r}")
        if self.precision not in PRECISIONS:
            raise InputDataError(f"precision must be one of {tuple(PRECISIONS)}, got {self.precision!r}")
        if self.objective not in OBJECTIVES:
            raise InputDataError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if int(self.steps) < 1 or int(self.batch_size) < 1:
            raise InputDataError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")

    def project(self, images: np.ndarray, init: np.ndarray | None = None, progress=None) -> ProjectionResult:
        """Project uint8 (N, H, W, 3) images; `init` (N, w_dim) or W+ latents replaces the mean-w start.

        `progress`, if given, is called with the number of images of each finished batch (`Progress.update`).
        """
        self._check()
        device = resolve_device(self.device)
        self.dtype_ = PRECISIONS[self.precision]
        gen = self.generator.to(device).eval().requires_grad_(False)
        if gen.const.dtype != self.dtype_:
            gen = copy.deepcopy(gen).to(self.dtype_)
        self.device_ = device
        target = images_to_tensor(images, gen.size).to(self.dtype_)
        n = len(target)
        if init is not None and len(init) != n:
            raise InputDataError(f"init has {len(init)} rows for {n} images")
        self.w_avg_, self.w_scale_ = w_statistics(gen, self.random_state)
        self.vgg_ = VGGDistance(self.perceptual_pretrained).to(device) if self.perceptual == "vgg" else None
        self.lpips_ = None
        if self.paper:
            from ganmatch.gan.lpips import load_lpips_vgg

            self.dlatent_std_ = dlatent_std(self.w_scale_, gen.n_latent, gen.w_dim)
            self.w_scale_ = 1.0  # the paper optimises w itself
            self.vgg_ = None
            self.lpips_ = load_lpips_vgg(self.vgg_weights, self.lpips_weights, self.lpips_allow_random,
                                         self.random_state).to(device, self.dtype_)
        parts = []
        for b, start in enumerate(range(0, n, self.batch_size)):
            sl = slice(start, start + self.batch_size)
            parts.append(self._project_batch(gen, target[sl].to(device), None if init is None else init[sl],
                                             seed=self.random_state * 100003 + b, first=start))
            if progress is not None:
                progress(len(parts[-1][0]))
        if not parts:
            return ProjectionResult.empty(gen, self.space)
        lat, loss, steps, failed, recon = (list(x) for x in zip(*parts, strict=True))
        latents = np.concatenate(lat)
        recon = np.concatenate(recon)
        failed = np.concatenate(failed)
        return ProjectionResult(
            latents=latents.astype(np.float32), loss=np.concatenate(loss).astype(np.float32),
            psnr=psnr(recon, target), steps=np.concatenate(steps).astype(np.int64),
            status=["failed" if f else "ok" for f in failed],
            reason=["non-finite loss" if f else "" for f in failed],
            reconstructions=recon if self.return_reconstructions else None)

    def _amp(self, device: torch.device) -> bool:
        """Mixed precision (bf16 autocast) is used only on CUDA."""
        return (self.mixed_precision and device.type == "cuda" and self.precision == "float32"
                and not self.paper)

    def _target_features(self, target: Tensor) -> list[Tensor] | None:
        """VGG features of the targets, computed once per batch (they do not change during the
        optimisation)."""
        if self.lpips_ is not None:
            with torch.no_grad():
                return self.lpips_.features(average_down(target, self.lpips_size))
        if self.vgg_ is None:
            return None
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._amp(target.device)):
            return self.vgg_.features(target.float())

    def _loss(self, gen, u, noises, target, target_features, step_noise):
        """Per-image loss (B,) of latents u (in w spreads around w_avg)."""
        if self.paper:
            return paper_loss(gen, self.lpips_, self.w_avg_ + u, noises, target_features, step_noise,
                              self.mean_deviation_weight, self.noise_weight, self.lpips_size)
        w = self.w_avg_ + self.w_scale_ * (u + step_noise)
        amp = self._amp(target.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            img = gen.synthesis(w, noise_mode="const", noises=noises)
        img = img.to(self.dtype_)
        loss = multiscale_mse(img, target)
        if self.vgg_ is not None:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = loss + self.vgg_(img.float(), target_features).to(self.dtype_)
        if noises is not None and self.noise_weight:
            loss = loss + self.noise_weight * noise_regularize(noises)
        return loss

    def _project_batch(self, gen, target, init, seed, first=0):
        device = target.device
        b = len(target)
        rng = torch.Generator(device="cpu").manual_seed(int(seed))
        streams = image_streams(self.random_state, first, b) if self.paper else None
        shape = (b, gen.w_dim) if self.space == "w" else (b, gen.n_latent, gen.w_dim)
        if init is None:
            u0 = torch.zeros(shape, dtype=self.dtype_)
        else:
            w0 = torch.as_tensor(np.asarray(init), dtype=self.dtype_).to(device)
            if self.space == "w+" and w0.ndim == 2:
                w0 = w0[:, None].expand(shape)
            if tuple(w0.shape) != shape:
                raise InputDataError(f"init latents must have shape {shape[1:]} per image, got "
                                     f"{tuple(w0.shape[1:])}")
            u0 = ((w0 - self.w_avg_) / self.w_scale_).cpu()
        u = u0.clone().to(device).requires_grad_(True)
        params = [u]
        noises = None
        if self.paper:  # the reference draws every noise map from N(0, 1) at the start
            noises = [stream_normal(streams, (1, c.resolution, c.resolution)).to(device, self.dtype_)
                      .requires_grad_(True) for c in gen.convs]
            params += noises
        elif self.optimize_noise:
            noises = [torch.randn(b, 1, c.resolution, c.resolution, generator=rng).to(device,
                                                                                      self.dtype_).requires_grad_(True)
                      for c in gen.convs]
            params += noises
        if self.paper:
            opt = TFAdam(params, lr=self.lr)
        else:
            opt = torch.optim.Adam(params, lr=self.lr, betas=(0.9, 0.999))
        target_features = self._target_features(target)
        best = torch.full((b,), float("inf"), device=device, dtype=self.dtype_)
        best_u = u.detach().clone()
        best_noises = None if noises is None else [x.detach().clone() for x in noises]
        history = []  # best loss per step, to detect plateaus
        active = torch.ones(b, dtype=torch.bool, device=device)
        failed = torch.zeros(b, dtype=torch.bool, device=device)
        steps = torch.zeros(b, dtype=torch.long, device=device)
        n_steps = int(self.steps)
        for step in range(n_steps):
            t = step / n_steps
            for group in opt.param_groups:
                group["lr"] = lr_schedule(t, self.lr, self.lr_rampup, self.lr_rampdown)
            if self.paper:
                scale = latent_noise_strength(t, self.dlatent_std_, self.initial_noise_factor,
                                              self.noise_ramp_length)
                step_noise = 0.0
                if scale > 0:
                    step_noise = (stream_normal(streams, shape[1:]) * scale).to(device, self.dtype_)
            else:
                scale = self.latent_noise * max(0.0, 1.0 - t / 0.75) ** 2
                step_noise = 0.0
                if scale > 0:
                    step_noise = (torch.randn(shape, generator=rng) * scale).to(device, self.dtype_)
            loss = self._loss(gen, u, noises, target, target_features, step_noise)
            finite = torch.isfinite(loss)
            failed |= active & ~finite
            active &= finite
            # keep each image's best latent (the loss is that of the latent before the step)
            with torch.no_grad():
                better = active & (loss < best)
                best = torch.where(better, loss.detach(), best)
                best_u[better] = u.detach()[better]
                if noises is not None:
                    for bn, x in zip(best_noises, noises, strict=True):
                        bn[better] = x.detach()[better]
            steps += active.long()
            if not bool(active.any()):
                break
            opt.zero_grad(set_to_none=True)
            torch.where(active, loss, torch.zeros_like(loss)).sum().backward()
            frozen_u = u.detach().clone()
            opt.step()
            with torch.no_grad():
                u[~active] = frozen_u[~active]  # Adam momentum must not move stopped or failed images
                if noises is not None:
                    for x in noises:
                        x -= x.mean(dim=(1, 2, 3), keepdim=True)
                        x *= x.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            if self.early_stop_tol is not None:
                history.append(best.clone())
                if len(history) > self.patience:
                    old = history[-1 - self.patience]
                    plateau = (old - best) <= self.early_stop_tol * old.abs()
                    active &= ~plateau
                    if not bool(active.any()):
                        break
        if self.paper:  # the reference keeps the final latents and noise maps (a failed image: its best)
            keep = ~failed
            best_u[keep] = u.detach()[keep]
            if noises is not None:
                for bn, x in zip(best_noises, noises, strict=True):
                    bn[keep] = x.detach()[keep]
        with torch.no_grad():  # final evaluation of the best latents (also catches a NaN at the last step)
            loss = self._loss(gen, best_u, best_noises, target, target_features, 0.0)
            failed |= ~torch.isfinite(loss) & ~failed
            w = self.w_avg_ + self.w_scale_ * best_u
            amp = self._amp(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                img = gen.synthesis(w, noise_mode="const", noises=best_noises)
        return (w.float().cpu().numpy(), loss.float().cpu().numpy(), steps.cpu().numpy(),
                failed.cpu().numpy(), tensor_to_uint8(img.float()))
