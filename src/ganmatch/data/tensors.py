"""Torch files read safely (tensors and plain data only, never a pickle's code): our checkpoints, state dicts
into a module, any weights file; every failure a WeightsError naming the file and the fix.

The I/O floor: the face models (faces) and the generator (gan) both load their weights through here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganmatch.errors import WeightsError


def read_checkpoint(path, fmt: str, writer: str, map_location="cpu") -> dict:
    """Load one of our torch.save checkpoints safely (weights_only) and check its format tag."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not ours
        raise WeightsError(f"{path}: not a readable '{fmt}' checkpoint ({torch_load_reason(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise WeightsError(f"{path}: expected a checkpoint with format '{fmt}', found {got!r}; write it with "
                           f"{writer}")
    return ckpt


def torch_load_reason(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to retry with
    weights_only=False (which would run the file's code: never to be shown to a user about an untrusted file).
    """
    text = str(exc)
    if "weights_only" not in text and "Weights only load failed" not in text:
        return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    detail = [line.strip() for line in text.splitlines()
              if line.strip() and "weights_only" not in line and "Weights only load failed" not in line
              and "torch.load" not in line]
    what = detail[0][:200].rstrip(".") if detail else "objects other than tensors"
    return (f"it holds more than tensors and plain data: {what}; weights are loaded without running code "
            "from the file")


def read_tensor_file(path: str | Path):
    """A torch file's content loaded as tensors and plain data only (weights_only); WeightsError naming the
    file and why otherwise, without torch's advice to load it unsafely."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsError(
            f"{path}: not a loadable weights file ({torch_load_reason(err)}); re-download it "
            "or "
            "point the key at a state dict saved with torch.save"
        ) from None


def load_state_dict_file(
    module,
    path: str | Path,
    rename=lambda key: key,
    what: str = "the model",
    missing_hint: str = "download it there",
):
    """Load a torch state dict file (tensors only, never arbitrary pickles) into `module`; keys pass through
    `rename` (None drops a key). Every failure is a WeightsError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {what} weights not found; {missing_hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsError(
            f"{path}: not a loadable state dict ({torch_load_reason(err)}); re-download it"
        ) from None
    state = {new: v for k, v in state.items() if (new := rename(k)) is not None}
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{path}: does not fit {what} ({str(err)[:200]})") from err
    return module
