"""StyleGAN2 generator (Karras et al. 2020, config-f) in plain torch: no compiled ops, any size 4..1024.

Ordered bottom-up. Parameters are stored as in NVIDIA's stylegan2-ada-pytorch (equalised learning rate:
weights drawn from N(0, 1) and scaled at run time), so their pickles load by renaming only
(see `ganmatch.gan.weights`). Resampling follows their upfirdn2d semantics with the [1, 3, 3, 1] filter.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
RESAMPLE_TAPS = (1.0, 3.0, 3.0, 1.0)
NOISE_MODES = ("const", "random", "none")


def default_channels(size: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """Feature maps per resolution, `min(channel_base // res, channel_max)` as in the official configs."""
    return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, int(math.log2(size)) + 1)}


def n_latent_for(size: int) -> int:
    """Number of W+ rows of a generator of this size (18 at 1024 px, 14 at 256 px)."""
    return 2 * int(math.log2(size)) - 2


def pixel_norm(z: Tensor, eps: float = 1e-8) -> Tensor:
    """Normalise each row to unit second moment (the mapping network's first step)."""
    return z * (z.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def lrelu(x: Tensor, gain: float = LRELU_GAIN) -> Tensor:
    """Leaky ReLU (slope 0.2) scaled by sqrt(2) so activations keep unit second moment."""
    return F.leaky_relu(x, LRELU_SLOPE) * gain


def resample_kernel(taps=RESAMPLE_TAPS) -> Tensor:
    """Normalised 2-D low-pass kernel (outer product of the taps, sums to 1)."""
    t = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(t, t)
    return k / k.sum()


def blur(x: Tensor, kernel: Tensor, pad: tuple[int, int, int, int], gain: float = 1.0) -> Tensor:
    """Depthwise FIR filter after zero padding `pad` = (left, right, top, bottom); kernel is flipped as in
    upfirdn2d."""
    c = x.shape[1]
    k = (kernel * gain).flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(F.pad(x, pad), k, groups=c)


def upsample2d(x: Tensor, kernel: Tensor) -> Tensor:
    """Upsample x2: zero insertion then the low-pass filter (gain 4), i.e. upfirdn2d.upsample2d."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, h, 2, w, 2)
    up[:, :, :, 0, :, 0] = x
    up = up.reshape(n, c, 2 * h, 2 * w)
    fw = kernel.shape[-1]
    p0, p1 = (fw + 1) // 2, (fw - 2) // 2
    return blur(up, kernel, (p0, p1, p0, p1), gain=4.0)


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate (weight ~ N(0, 1/lr_mul^2), scaled at run time)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(x) if self.activation else x

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1]} -> {self.weight.shape[0]}, lr_mul={self.lr_mul}, lrelu={self.activation}"
        )


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled by a style from w (and, with demodulation,
    renormalised)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
    ):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        self.register_buffer("kernel", resample_kernel(), persistent=False)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)
        if not self.demodulate:
            styles = styles * self.weight_gain
        # Modulate activations instead of weights: same result, one ordinary batched conv.
        x = x * styles[:, :, None, None].to(x.dtype)
        weight = self.weight.to(x.dtype)
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            x = blur(x, self.kernel, (1, 1, 1, 1), gain=4.0)
        else:
            x = F.conv2d(x, weight, padding=self.weight.shape[-1] // 2)
        if self.demodulate:
            # sum_{i,k} (W_oik * s_i)^2 = (sum_k W_oik^2) @ s_i^2
            dcoefs = (styles.square() @ self.weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
            x = x * dcoefs[:, :, None, None].to(x.dtype)
        return x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i} -> {o}, kernel={k}, demodulate={self.demodulate}, upsample={self.upsample}"


class StyledConv(nn.Module):
    """Modulated 3x3 conv + per-pixel noise with learned strength + bias + leaky ReLU (+ optional clamp)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        upsample: bool = False,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=True, upsample=upsample)
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const", noise: Tensor | None = None) -> Tensor:
        x = self.conv(x, w)
        if noise is None:
            if noise_mode == "const":
                noise = self.noise_const
            elif noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength
        x = lrelu(x + self.bias[None, :, None, None].to(x.dtype))
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation (one per resolution, skip architecture)."""

    def __init__(self, in_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.conv(x, w) + self.bias[None, :, None, None].to(x.dtype)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class Generator(nn.Module):
    """StyleGAN2 generator: z -> mapping MLP -> w -> synthesis (W or W+) -> image in about [-1, 1].

    `n_latent` W+ rows: conv i reads row i, the toRGB at level j (resolution 4 * 2**j) reads row 2j + 1.
    `w_avg` (buffer) is the truncation centre; `make_generator` and the weight loaders fill it.
    """

    def __init__(
        self,
        size: int,
        z_dim: int = 512,
        w_dim: int = 512,
        n_mlp: int = 8,
        channels: dict[int, int] | None = None,
        channel_max: int = 512,
        channel_base: int = 32768,
        lr_mlp: float = 0.01,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"Generator size must be a power of two >= 4, got {size}")
        self.config = {
            "size": size,
            "z_dim": z_dim,
            "w_dim": w_dim,
            "n_mlp": n_mlp,
            "channels": None if channels is None else {int(k): int(v) for k, v in channels.items()},
            "channel_max": channel_max,
            "channel_base": channel_base,
            "lr_mlp": lr_mlp,
            "conv_clamp": conv_clamp,
        }
        self.size, self.z_dim, self.w_dim = size, z_dim, w_dim
        self.log_size = int(math.log2(size))
        self.n_latent = n_latent_for(size)
        self.channels = default_channels(size, channel_base, channel_max)
        if channels is not None:
            self.channels.update({int(k): int(v) for k, v in channels.items()})
        self.resolutions = [2**i for i in range(2, self.log_size + 1)]
        if min(self.channels[r] for r in self.resolutions) < 1:
            raise ValueError(f"every resolution needs >= 1 channel, got {self.channels}; raise channel_base")

        self.mlp = nn.ModuleList(
            EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mlp, activation=True)
            for i in range(n_mlp)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.const = nn.Parameter(torch.randn(self.channels[4], 4, 4))
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for res in self.resolutions:
            c_out = self.channels[res]
            if res > 4:
                self.convs.append(StyledConv(self.channels[res // 2], c_out, w_dim, res, True, conv_clamp))
            self.convs.append(StyledConv(c_out, c_out, w_dim, res, False, conv_clamp))
            self.to_rgbs.append(ToRGB(c_out, w_dim, conv_clamp))
        self.register_buffer("kernel", resample_kernel(), persistent=False)

    def mapping(self, z: Tensor) -> Tensor:
        """(N, z_dim) -> (N, w_dim): pixel norm, then the MLP."""
        x = pixel_norm(z.to(self.const.dtype))
        for layer in self.mlp:
            x = layer(x)
        return x

    def broadcast(self, ws: Tensor) -> Tensor:
        """W (N, w_dim) -> W+ (N, n_latent, w_dim); W+ passes through after a shape check."""
        if ws.ndim == 2:
            ws = ws[:, None, :].expand(-1, self.n_latent, -1)
        if ws.ndim != 3 or ws.shape[1:] != (self.n_latent, self.w_dim):
            raise ValueError(
                f"ws must be (N, {self.w_dim}) or (N, {self.n_latent}, {self.w_dim}), got {tuple(ws.shape)}"
            )
        return ws

    def synthesis(self, ws: Tensor, noise_mode: str = "const", noises: list[Tensor] | None = None) -> Tensor:
        """W or W+ latents -> images (N, 3, size, size); `noises` (one per conv) overrides noise_mode."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = self.broadcast(ws).to(self.const.dtype)
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        img = None
        i = 0
        for level, to_rgb in enumerate(self.to_rgbs):
            for _ in range(1 if level == 0 else 2):
                x = self.convs[i](x, ws[:, i], noise_mode, None if noises is None else noises[i])
                i += 1
            y = to_rgb(x, ws[:, 2 * level + 1])
            img = y if img is None else upsample2d(img, self.kernel) + y
        return img

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> Tensor:
        """z -> image, with truncation of w towards `w_avg` by `truncation_psi`."""
        w = self.mapping(z)
        if truncation_psi != 1:
            w = self.w_avg.lerp(w, truncation_psi)
        return self.synthesis(w, noise_mode=noise_mode)

    @torch.no_grad()
    def mean_w(self, n: int = 10000, seed: int = 0) -> Tensor:
        """Mean of the mapping over n seeded standard-normal z (`seeded_normal`: the same z on any CPU),
        (w_dim,)."""
        z = torch.from_numpy(seeded_normal(seed, (n, self.z_dim))).to(self.w_avg.device, self.const.dtype)
        return torch.cat([self.mapping(c) for c in z.split(4096)]).mean(0)

    def noise_buffers(self) -> list[Tensor]:
        """The constant noise maps, one (res, res) tensor per conv."""
        return [conv.noise_const for conv in self.convs]


@torch.no_grad()
def seeded_normal(seed: int | list[int], shape) -> np.ndarray:
    """Standard-normal float64 draws from numpy's PCG64 (scalar code): the same numbers on every CPU, unlike
    torch.randn, whose vectorised Box-Muller depends on the CPU's instruction set."""
    return np.random.default_rng(seed).standard_normal(shape)


@torch.no_grad()
def seed_weights_(gen: Generator, seed: int) -> Generator:
    """Redraw every random tensor of a fresh generator (mapping and conv weights, constant input, constant
    noise) from `seeded_normal`, in module order, with the same distributions as the constructors'."""
    stream = 0
    for module in gen.modules():
        targets = []
        if isinstance(module, EqualLinear):
            targets = [(module.weight, 1.0 / module.lr_mul)]
        elif isinstance(module, ModulatedConv2d):
            targets = [(module.weight, 1.0)]
        elif isinstance(module, StyledConv):
            targets = [(module.noise_const, 1.0)]
        elif isinstance(module, Generator):
            targets = [(module.const, 1.0)]
        for tensor, scale in targets:
            draws = seeded_normal([seed, stream], tuple(tensor.shape)) * scale
            tensor.copy_(torch.from_numpy(draws.astype(np.float32)))
            stream += 1
    return gen


def float64_twin(gen: Generator) -> Generator:
    """`gen` itself when it already computes in float64, else a float64 copy (the original is left as it
    is)."""
    return gen if gen.const.dtype == torch.float64 else copy.deepcopy(gen).double()


def stable_scalar(x: float, digits: int = 9) -> float:
    """`x` rounded to `digits` significant digits: a float64 result that may differ in its last bits between
    CPUs (BLAS, oneDNN kernels) becomes the same number everywhere, except within 1e-16 of a rounding
    boundary."""
    return float(f"{float(x):.{digits}g}")


@torch.no_grad()
def shape_random_prior_(
    gen: Generator, seed: int = 0, rgb_decay: float = 0.5, pixel_std: float = 0.5
) -> Generator:
    """Make an untrained generator's images smooth and in range: toRGB weight of level j scaled by
    rgb_decay**j (coarse levels dominate), then all rescaled so pixel std is `pixel_std`, mean 0.

    The pixel statistics are measured in float64 and rounded (`stable_scalar`), so the weights are the same
    bytes on every CPU."""
    for j, to_rgb in enumerate(gen.to_rgbs):
        to_rgb.conv.weight.mul_(rgb_decay**j)
    n = max(4, 256 * 32**2 // gen.size**2)  # about 1 MB of pixels whatever the size
    twin = float64_twin(gen)
    z = torch.from_numpy(seeded_normal(seed + 1, (n, gen.z_dim)))
    img = torch.cat([twin.synthesis(twin.mapping(c)) for c in z.split(64)])
    scale = stable_scalar(pixel_std / float(img.std()))
    for to_rgb in gen.to_rgbs:
        to_rgb.conv.weight.mul_(scale)
    mean = [stable_scalar(float(m) * scale) for m in img.mean(dim=(0, 2, 3))]
    gen.to_rgbs[-1].bias.sub_(torch.tensor(mean, dtype=gen.to_rgbs[-1].bias.dtype))
    return gen


def make_generator(
    size: int,
    z_dim: int = 512,
    w_dim: int = 512,
    n_mlp: int = 8,
    channels: dict[int, int] | None = None,
    channel_base: int = 32768,
    channel_max: int = 512,
    seed: int = 0,
    lr_mlp: float = 0.01,
    random_prior: bool = True,
) -> Generator:
    """Seeded generator, in eval mode with `w_avg` filled: identical weights, byte for byte, for identical
    args on any CPU (numpy's draws, statistics in float64 and rounded; see docs/guarantees.md).

    `random_prior` shapes the untrained toRGB layers (see `shape_random_prior_`) so a random generator
    gives smooth, well-scaled images, as the demo dataset needs.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = Generator(size, z_dim, w_dim, n_mlp, channels, channel_max, channel_base, lr_mlp)
    seed_weights_(gen, seed)
    if random_prior:
        shape_random_prior_(gen, seed)
    with torch.no_grad():
        w_avg = float64_twin(gen).mean_w(10000, seed)
        gen.w_avg.copy_(torch.tensor([stable_scalar(v) for v in w_avg.tolist()]))
    return gen.eval().requires_grad_(False)
