"""Face embeddings of aligned crops: dlib's 128-d descriptor, FaceNet (InceptionResnetV1), pixels, HOG.

Input is the aligned images of the align stage (uint8 S x S x 3 FFHQ crops, or their PNG paths). Each crop's
landmarks default to `canonical_landmarks(S)`, or can be passed (e.g. the raw landmarks mapped into the crop).

- "dlib": dlib's shape_predictor_5 runs inside the face box implied by the landmarks, `dlib.get_face_chip`
  cuts the standard 150 x 150 chip (padding 0.25) from that full-crop shape, and
  dlib_face_recognition_resnet_model_v1 turns it into a 128-d descriptor; the same person is < 0.6 apart.
- "facenet": InceptionResnetV1 on a 160 x 160 crop of the face box (as MTCNN would give it), L2-normalised
  512-d. Weights come from a local file (VGGFace2 / CASIA-WebFace state dicts of facenet-pytorch);
  `allow_random=True` uses seeded random weights (tests, offline smoke runs only).
- "vgg": the reference study's perceptual features (scripts/01_calc_vgg_dists_pairwise.py): torchvision VGG16
  ImageNet features after relu1_2, relu2_2, relu3_3 and relu4_3 of the ImageNet-normalised image resized to
  112 x 112, concatenated (~1.5 M numbers), compared with the L1 distance (`metric: l1`). `pool: g`
  average-pools each map to a g x g grid first (960 g^2 numbers; docs/scaling.md gives the full form's cost).
- "pixel": area-downsampled RGB in [0, 1]; "hog": histogram of oriented gradients of the face region.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ganmatch.errors import InputDataError, WeightsError
from ganmatch.faces.align import canonical_landmarks, warp_affine
from ganmatch.faces.detect import box_from_landmarks, dlib_model_path, dlib_shape

FACENET_URLS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}
"""Where facenet-pytorch publishes its two weight files (for a checksummed download rule)."""

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
"""torchvision's VGG16 ImageNet weights (the file name carries the first 8 hex digits of its sha256)."""
VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23))  # torchvision vgg16.features up to relu1_2, 2_2, 3_3, 4_3
VGG_SIZE = 112
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

DLIB_CHIP_SIZE, DLIB_CHIP_PADDING = 150, 0.25
FACENET_SIZE = 160


# ---------------------------------------------------------------- inputs


def as_images(images) -> list[np.ndarray]:
    """A list of uint8 HxWx3 arrays from an (N, H, W, 3) array, a list of arrays, or a list of paths."""
    from ganmatch.data.io import read_rgb

    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputDataError(f"images must be (N, H, W, 3), got {images.shape}")
        return [np.ascontiguousarray(im, dtype=np.uint8) for im in images]
    out = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            im = read_rgb(im)
        im = np.asarray(im)
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise InputDataError(f"each image must be uint8 HxWx3, got {im.dtype} {im.shape}")
        out.append(np.ascontiguousarray(im))
    return out


def landmarks_for(images: list[np.ndarray], landmarks5) -> list[np.ndarray]:
    """The five landmarks per image: given ones, or the canonical FFHQ positions for already-aligned square
    crops."""
    if landmarks5 is None:
        return [
            canonical_landmarks(im.shape[0]) if im.shape[0] == im.shape[1] else _non_square(im)
            for im in images
        ]
    marks = np.asarray(landmarks5, dtype=np.float64).reshape(len(images), 5, 2)
    return list(marks)


def _non_square(im: np.ndarray) -> np.ndarray:
    raise InputDataError(f"image of shape {im.shape} is not a square aligned crop; pass its landmarks5")


def face_crop(image: np.ndarray, landmarks5: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    """Axis-aligned square crop of the face box implied by the landmarks (plus `margin` of its side),
    resized."""
    x0, y0, x1, y1 = box_from_landmarks(landmarks5)
    pad = margin * (x1 - x0) / 2
    x0, y0, x1 = x0 - pad, y0 - pad, x1 + pad
    scale = size / (x1 - x0)
    matrix = np.array([[scale, 0.0, -scale * x0 - 0.5], [0.0, scale, -scale * y0 - 0.5]])
    return warp_affine(image, matrix, (size, size))


# ---------------------------------------------------------------- dlib


@functools.cache
def dlib_face_recognizer():
    """dlib's ResNet face recognition model (128-d descriptors) from face_recognition_models."""
    import dlib

    return dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))


def dlib_chips(images, landmarks5=None) -> np.ndarray:
    """dlib's standard 150 x 150 aligned chips (N, 150, 150, 3): 5-point shape in the landmark box,
    get_face_chip."""
    import dlib

    imgs = as_images(images)
    marks = landmarks_for(imgs, landmarks5)
    chips = np.empty((len(imgs), DLIB_CHIP_SIZE, DLIB_CHIP_SIZE, 3), np.uint8)
    for i, (im, pts) in enumerate(zip(imgs, marks, strict=True)):
        shape = dlib_shape(im, box_from_landmarks(pts), 5)
        chips[i] = dlib.get_face_chip(im, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)
    return chips


def dlib_descriptors(images, landmarks5=None, num_jitters: int = 0, batch_size: int = 64) -> np.ndarray:
    """dlib 128-d face descriptors (N, 128) float32; Euclidean distance < 0.6 means the same person."""
    chips = dlib_chips(images, landmarks5)
    rec = dlib_face_recognizer()
    out = np.empty((len(chips), 128), np.float32)
    for start in range(0, len(chips), batch_size):
        batch = [np.ascontiguousarray(c) for c in chips[start : start + batch_size]]
        if num_jitters:
            vecs = [rec.compute_face_descriptor(c, num_jitters=int(num_jitters)) for c in batch]
        else:
            vecs = rec.compute_face_descriptor(batch)
        out[start : start + len(batch)] = np.asarray([np.asarray(v) for v in vecs], np.float32)
    return out


# ---------------------------------------------------------------- FaceNet


@functools.lru_cache(maxsize=4)
def load_facenet(
    weights: str | None = None, allow_random: bool = False, random_state: int = 0, device: str = "cpu"
):
    """InceptionResnetV1 in eval mode with weights from a local facenet-pytorch state dict.

    `weights=None` needs `allow_random=True` and gives seeded random weights (for tests and smoke runs; the
    embedding is then meaningless). The classifier head in the file ("logits.*") is not needed and is dropped.
    """
    import torch
    from facenet_pytorch import InceptionResnetV1

    if weights is None:
        if not allow_random:
            raise WeightsError(
                "face embedding 'facenet' needs weights: set embeddings.<name>.weights to a local file "
                f"(download {FACENET_URLS['vggface2']}) or allow_random: true for a smoke run"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            model = InceptionResnetV1(pretrained=None)
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(
                f"{path}: FaceNet weights not found; download {FACENET_URLS['vggface2']} there"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
            raise WeightsError(f"{path}: not a loadable state dict ({err}); re-download it") from err
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        model = InceptionResnetV1(pretrained=None)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsError(
                f"{path}: does not fit InceptionResnetV1 (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    return model.eval().to(device)


def facenet_embeddings(
    images,
    landmarks5=None,
    weights: str | None = None,
    allow_random: bool = False,
    random_state: int = 0,
    margin: float = 0.1,
    batch_size: int = 32,
    device: str = "cpu",
) -> np.ndarray:
    """FaceNet 512-d L2-normalised embeddings (N, 512) float32 of 160 x 160 face crops, standardised as in
    training."""
    import torch

    imgs = as_images(images)
    marks = landmarks_for(imgs, landmarks5)
    crops = (
        np.stack([face_crop(im, pts, FACENET_SIZE, margin) for im, pts in zip(imgs, marks, strict=True)])
        if imgs
        else np.empty((0, FACENET_SIZE, FACENET_SIZE, 3), np.uint8)
    )
    model = load_facenet(
        None if weights is None else str(weights), bool(allow_random), int(random_state), device
    )
    out = np.empty((len(crops), 512), np.float32)
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(crops[start : start + batch_size]).to(device).permute(0, 3, 1, 2).float()
            x = (x - 127.5) / 128.0
            out[start : start + len(x)] = model(x).cpu().numpy()
    return out


# ---------------------------------------------------------------- VGG perceptual features


@functools.lru_cache(maxsize=2)
def load_vgg16_features(weights: str | None = None, allow_random: bool = False, random_state: int = 0,
                        device: str = "cpu"):
    """torchvision VGG16 `features[:23]` (to relu4_3) in eval mode, weights from a local state dict
    (vgg16-397923af.pth); `weights=None` needs `allow_random=True` (seeded random weights, tests only)."""
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    with torch.random.fork_rng(devices=[]):  # the convolutional part only: the 100 M-parameter head is unused
        torch.manual_seed(random_state)
        features = make_layers(cfgs["D"], batch_norm=False)
    if weights is None:
        if not allow_random:
            raise WeightsError("face embedding 'vgg' needs weights: set embeddings.<name>.weights to a local "
                               "file "
                               f"(download {VGG16_URL}) or allow_random: true for a smoke run")
    else:
        from ganmatch.data.tensors import load_state_dict_file

        load_state_dict_file(features, weights,
                             lambda k: k[len("features."):] if k.startswith("features.") else None,
                             "torchvision's VGG16", f"download {VGG16_URL} there")
    features = features[: VGG_SLICES[-1][1]]
    for layer in features:
        if hasattr(layer, "inplace"):
            layer.inplace = False  # each block's output is kept
    return features.eval().to(device)


def vgg_embeddings(images, weights: str | None = None, allow_random: bool = False, random_state: int = 0,
                   pool: int | None = 4, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """VGG16 relu1_2/2_2/3_3/4_3 features of ImageNet-normalised images resized to 112 x 112, each map
    average-pooled to `pool` x `pool` (None: full maps, ~1.5 M numbers), flattened and concatenated (N, D)."""
    import torch
    import torch.nn.functional as F

    imgs = as_images(images)
    model = load_vgg16_features(None if weights is None else str(weights), bool(allow_random),
                                int(random_state),
                                device)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(imgs), batch_size):
            # as the reference: [0, 1], ImageNet-normalise, then bilinear resize to 112 x 112
            # (align_corners=False)
            xs = [(torch.from_numpy(np.ascontiguousarray(im[..., :3])).permute(2, 0, 1)[None].float() / 255.0
                   - mean) / std for im in imgs[start:start + batch_size]]
            x = torch.cat([F.interpolate(xi, size=(VGG_SIZE, VGG_SIZE), mode="bilinear", align_corners=False)
                           for xi in xs]).to(device)
            parts = []
            for a, b in VGG_SLICES:
                x = model[a:b](x)
                f = F.adaptive_avg_pool2d(x, int(pool)) if pool else x
                parts.append(f.flatten(1).cpu().numpy())
            out.append(np.concatenate(parts, axis=1))
    dim = 960 * int(pool) ** 2 if pool else sum(c * (VGG_SIZE // 2 ** i) ** 2 for i, c in enumerate((64, 128,
                                                                                                     256,
                                                                                                     512)))
    return np.concatenate(out).astype(np.float32) if out else np.empty((0, dim), np.float32)


# ---------------------------------------------------------------- cheap fallbacks


def pixel_embeddings(images, size: int = 16, grayscale: bool = False, scale: float = 1.0) -> np.ndarray:
    """Area-downsampled pixels in [0, `scale`] (1: [0, 1]; 255: the photos' own levels), flattened
    (N, size*size*channels) float32."""
    import cv2

    imgs = as_images(images)
    out = []
    for im in imgs:
        small = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
        if grayscale:
            small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        out.append(small.reshape(-1))
    if not out:  # no images (e.g. every photo of a shard rejected): an empty table of the right width
        return np.zeros((0, size * size * (1 if grayscale else 3)), np.float32)
    values = np.asarray(out, np.float32)
    if scale != 255:
        values = values * np.float32(scale / 255.0)
    return values.reshape(len(imgs), -1)


def hog_embeddings(images, landmarks5=None, size: int = 64, cell: int = 8) -> np.ndarray:
    """HOG of the grayscale face region (N, D) float32: edge layout, insensitive to colour and lighting."""
    from skimage.feature import hog

    imgs = as_images(images)
    marks = landmarks_for(imgs, landmarks5)
    feats = []
    for im, pts in zip(imgs, marks, strict=True):
        crop = face_crop(im, pts, size, margin=0.1).astype(np.float32) @ np.array(
            [0.299, 0.587, 0.114], np.float32
        )
        feats.append(
            hog(
                crop,
                orientations=9,
                pixels_per_cell=(cell, cell),
                cells_per_block=(2, 2),
                feature_vector=True,
            )
        )
    return np.asarray(feats, np.float32).reshape(len(imgs), -1)


EMBEDDERS = {
    "dlib": dlib_descriptors,
    "facenet": facenet_embeddings,
    "vgg": vgg_embeddings,
    "pixel": pixel_embeddings,
    "hog": hog_embeddings,
}


def embed_images(name: str, images: Sequence | np.ndarray, **params) -> np.ndarray:
    """Embedding `name` (a key of `EMBEDDERS`) of aligned images or their paths, (N, D) float32 in input
    order.

    `params` go to the embedder (e.g. weights=..., allow_random=..., size=...); "kind" and "metric" keys are
    ignored.
    """
    from ganmatch.errors import ConfigError

    params = {k: v for k, v in params.items() if k not in ("kind", "metric")}  # metric: for the kNN stage
    if name not in EMBEDDERS:
        raise ConfigError(f"embeddings: unknown face embedding {name!r}; use one of {sorted(EMBEDDERS)}")
    return np.ascontiguousarray(EMBEDDERS[name](images, **params), dtype=np.float32)
