"""Learned LPIPS-VGG distance (Zhang et al. 2018, v0.1): the perceptual term of the paper's projector.

The StyleGAN2 projector the paper ran measures `vgg16_zhang_perceptual.pkl`, NVIDIA's port of LPIPS v0.1 on
VGG16: images shifted and scaled per channel, VGG16's relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 maps,
each unit-normalised over channels, squared differences weighted per channel by learned non-negative linear
layers, averaged over space and summed over the five layers. The network code is ours; the weights are files:
torchvision's VGG16 ImageNet state dict (`vgg16-397923af.pth`) and the `lpips` package's linear layers
(`lpips/weights/v0.1/vgg.pth`), both read as tensors only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganmatch.errors import WeightsError

VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # vgg16.features to relu1_2, 2_2, 3_3, 4_3, 5_3
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's input scaling layer, on images in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
LPIPS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"
LPIPS_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"  # lpips 0.1.4 wheel (PyPI)
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


def normalize_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Each pixel's feature vector divided by its length (+ eps), as LPIPS's normalize_tensor."""
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


def average_down(x: Tensor, size: int = 256) -> Tensor:
    """Images larger than `size` averaged over factor x factor blocks (factor = side // size), as the paper's
    projector brings 1024 px images to 256 px before the distance; smaller images pass unchanged."""
    side = x.shape[-1]
    if side <= size:
        return x
    factor = side // size
    if side % size:
        raise ValueError(f"image side {side} is not a multiple of {size}")
    return F.avg_pool2d(x, factor)


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 on VGG16: `features` of images in [-1, 1] once, then `forward` gives per-image distances."""

    def __init__(self):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["D"], batch_norm=False)[: VGG_SLICES[-1][1]]
        for layer in features:
            if hasattr(layer, "inplace"):
                layer.inplace = False
        self.features_net = features
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])
        self.eval().requires_grad_(False)

    def features(self, x: Tensor) -> list[Tensor]:
        """Channel-normalised relu1_2 .. relu5_3 maps of images (N, 3, H, W) in [-1, 1]."""
        h = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        out = []
        for start, stop in VGG_SLICES:
            h = self.features_net[start:stop](h)
            out.append(normalize_channels(h))
        return out

    def forward(self, x: Tensor, target_features: list[Tensor]) -> Tensor:
        """Per-image distance (N,) between images x in [-1, 1] and targets given by their `features`."""
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins, self.features(x), target_features, strict=True):
            total = total + lin((fx - fy).square()).mean(dim=(1, 2, 3))
        return total


def load_lpips_vgg(vgg_weights: str | None, lpips_weights: str | None, allow_random: bool = False,
                   random_state: int = 0) -> LPIPSVGG:
    """LPIPSVGG with torchvision's VGG16 state dict and the lpips package's v0.1 linear layers (tensors only).

    Without files, `allow_random=True` gives seeded random weights of the same architecture (tests, timing).
    """
    from ganmatch.data.tensors import load_state_dict_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = LPIPSVGG()
        if allow_random and not (vgg_weights and lpips_weights):
            for lin in model.lins:  # learned LPIPS weights are non-negative
                lin.weight.data.uniform_(0.0, 0.2)
    if vgg_weights is None or lpips_weights is None:
        if not allow_random:
            raise WeightsError("the paper objective needs project.paper.vgg_weights (torchvision's "
                               f"vgg16-397923af.pth, {VGG16_URL}) and project.paper.lpips_weights (the lpips "
                               f"package's v0.1 vgg.pth, {LPIPS_URL})")
        return model
    n_layers = VGG_SLICES[-1][1]

    def vgg_key(k: str):
        if not k.startswith("features."):
            return None
        return k[len("features."):] if int(k.split(".")[1]) < n_layers else None

    load_state_dict_file(model.features_net, vgg_weights, vgg_key, "torchvision's VGG16",
                         f"download {VGG16_URL} there")

    def lin_key(k: str):
        parts = k.split(".")  # lin<k>.model.1.weight
        if len(parts) == 4 and parts[0].startswith("lin") and parts[1:] == ["model", "1", "weight"]:
            return f"{parts[0][3:]}.weight"
        return None

    load_state_dict_file(model.lins, lpips_weights, lin_key, "LPIPS v0.1 VGG linear layers",
                         f"download {LPIPS_URL} there (or copy lpips/weights/v0.1/vgg.pth from the lpips "
                         "package)")
    return model.eval().requires_grad_(False)
