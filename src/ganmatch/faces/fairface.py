"""FairFace race (and its gender, age) predictions: the reference study's Race covariate.

FairFace (Karkkainen and Joo, 2021) is a torchvision ResNet-34 whose last layer gives 18 logits: 7 race
classes (or 4 in the race-4 model), 2 gender and 9 age groups; each head is a softmax. Input as the reference
ran it (matching_benchmarking/scripts/00_predict_race.py): a face chip resized to 224 x 224,
ImageNet-normalised. Here the chip is cut from the aligned crop around its landmarks with dlib's padding 0.25.
The paper's "Race=Black" covariate is FairFace's argmax race being Black; `black_prob` is that class's
probability.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.errors import WeightsError
from ganmatch.faces.face_embeddings import IMAGENET_MEAN, IMAGENET_STD, as_images, face_crop, landmarks_for

RACES = {
    7: ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"),
    4: ("White", "Black", "Asian", "Indian"),
}
AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
FAIRFACE_SIZE, FAIRFACE_PADDING = 224, 0.25
FAIRFACE_WEIGHTS = {7: "fairface_alldata_20191111.pt", 4: "fairface_alldata_4race_20191111.pt"}
FAIRFACE_SOURCE = "https://github.com/dchen236/FairFace (models folder on Google Drive, see its README)"


@functools.lru_cache(maxsize=2)
def load_fairface(weights: str | None = None, allow_random: bool = False, random_state: int = 0,
                  device: str = "cpu"):
    """ResNet-34 with an 18-way last layer in eval mode, weights from FairFace's state dict; `weights=None`
    needs `allow_random=True` (seeded random weights: tests only, the predictions are meaningless)."""
    import torch
    from torchvision.models import resnet34

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = resnet34(weights=None)
        model.fc = torch.nn.Linear(model.fc.in_features, 18)
    if weights is None:
        if not allow_random:
            raise WeightsError("FairFace needs weights: set face_attributes.fairface_weights to "
                               f"{FAIRFACE_WEIGHTS[7]} (from {FAIRFACE_SOURCE})")
    else:
        from ganmatch.data.tensors import load_state_dict_file

        load_state_dict_file(model, weights, lambda k: k.removeprefix("module."), "FairFace's ResNet-34",
                             f"get {Path(weights).name} from {FAIRFACE_SOURCE}")
    return model.eval().to(device)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_race(images, landmarks5=None, weights: str | None = None, races: int = 7,
                 allow_random: bool = False,
                 batch_size: int = 32, device: str = "cpu") -> pd.DataFrame:
    """One row per image: race (argmax class), race_prob (its probability), black_prob (P(Black)),
    fairface_male_prob and fairface_age (argmax age group)."""
    import torch

    if races not in RACES:
        raise WeightsError(f"FairFace has race-7 and race-4 models; races must be 7 or 4, got {races}.")
    imgs = as_images(images)
    marks = landmarks_for(imgs, landmarks5)
    model = load_fairface(None if weights is None else str(weights), bool(allow_random), 0, device)
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    logits = []
    with torch.inference_mode():
        for start in range(0, len(imgs), batch_size):
            chips = np.stack([face_crop(im, pts, FAIRFACE_SIZE, FAIRFACE_PADDING) for im, pts in
                              zip(imgs[start:start + batch_size], marks[start:start + batch_size],
                                  strict=True)])
            x = (chips.astype(np.float32) / 255.0 - mean) / std
            logits.append(model(torch.from_numpy(x).permute(0, 3, 1, 2).to(device)).cpu().numpy())
    z = np.concatenate(logits).astype(np.float64) if logits else np.zeros((0, 18))
    race = _softmax(z[:, :races]) if len(z) else np.zeros((0, races))
    names = np.asarray(RACES[races])
    out = pd.DataFrame({
        "race": names[race.argmax(axis=1)] if len(z) else np.array([], str),
        "race_prob": race.max(axis=1) if len(z) else np.zeros(0),
        "black_prob": race[:, 1],
    })
    if races == 7:  # the race-7 model's other heads: gender (Male, Female) and 9 age groups
        gender = _softmax(z[:, 7:9]) if len(z) else np.zeros((0, 2))
        age = _softmax(z[:, 9:18]) if len(z) else np.zeros((0, 9))
        out["fairface_male_prob"] = gender[:, 0]
        out["fairface_age"] = np.asarray(AGE_GROUPS)[age.argmax(axis=1)] if len(z) else np.array([], str)
    return out
