"""Generator weights: our own checkpoint format, and NVIDIA's stylegan2-ada-pytorch pickles read safely.

Our format is `torch.save({"format", "config", "state_dict"})`, read back with `weights_only=True`.
Official pickles embed their module source and rebuild objects through
`torch_utils.persistence._reconstruct_persistent_obj`; `OfficialUnpickler` maps that call onto an inert
record (class name + state), never runs the source, and refuses every global not in `SAFE_GLOBALS`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ganmatch.data.io import atomic_path
from ganmatch.data.tensors import read_checkpoint
from ganmatch.errors import WeightsError
from ganmatch.gan.stylegan2 import Generator

FORMAT = "ganmatch-stylegan2/1"


# ----------------------------------------------------------------------------------------- our format

def save_generator(gen: Generator, path: str | os.PathLike) -> None:
    """Write `gen` (config + CPU state dict) atomically in our format."""
    state = {k: v.detach().cpu().clone() for k, v in gen.state_dict().items()}
    buffer = io.BytesIO()  # saved to memory first: torch.save names the archive's folder after a file's name,
    torch.save({"format": FORMAT, "config": dict(gen.config), "state_dict": state}, buffer)  # here 'archive'
    with atomic_path(path, ".pt") as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_generator(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                   size: int | None = None) -> Generator:
    """Read a generator in eval mode from our format or, if `path` is an official pickle, from that.

    `size` (optional) is the resolution the caller expects; another one raises WeightsError.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; official files are plain pickles
        gen = load_official_pickle(path, size=size)
        return gen.to(map_location)
    ckpt = read_checkpoint(path, FORMAT, "ganmatch.gan.weights.save_generator", map_location)
    config = ckpt.get("config")
    if not isinstance(config, dict):
        raise WeightsError(f"{path}: checkpoint has no 'config' dict")
    _check_size(path, config.get("size"), size)
    try:
        gen = Generator(**config)
    except TypeError as exc:
        raise WeightsError(f"{path}: config {config} does not describe a ganmatch Generator ({exc})") from exc
    _load_state(gen, ckpt["state_dict"], path)
    return gen.to(map_location).eval().requires_grad_(False)


def _check_size(path, found, expected) -> None:
    if expected is not None and found != expected:
        raise WeightsError(f"{path}: expected a {expected} px generator, the file holds a {found} px one; "
                           "use weights of the configured resolution or change the config's generator size")


def _load_state(gen: Generator, state: dict, path) -> None:
    """load_state_dict with an error that lists what was expected."""
    own = gen.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: expected {tuple(own[k].shape)}, found {tuple(state[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{path}: weights do not fit the generator {gen.config}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, wrong shapes {wrong[:5]}")
    gen.load_state_dict(state)


# ----------------------------------------------------------------------------------- official pickles

class PersistentRecord:
    """Inert stand-in for a `persistence`-wrapped object: its class name and pickled state, nothing run."""

    def __init__(self, meta):
        if not isinstance(meta, dict) or "class_name" not in meta or not isinstance(meta.get("state"), dict):
            raise WeightsError("persistent object without class_name/state")
        self.class_name = str(meta["class_name"])
        self.state = meta["state"]  # module_src is deliberately dropped, never executed

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"


class EasyDict(dict):
    """Plain dict standing in for dnnlib.util.EasyDict."""


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    return data


def _load_storage_from_bytes(b: bytes):
    """Storages inside plain pickles are nested (legacy) torch.save streams: read those safely too."""
    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


def _numpy_scalar(dtype, data=None):
    if dtype.hasobject:
        raise WeightsError("object numpy scalars are not allowed in weights pickles")
    return np.frombuffer(data, dtype=dtype)[0]


SAFE_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentRecord,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class OfficialUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `SAFE_GLOBALS` (plus torch dtypes) and refuses everything else."""

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return SAFE_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise WeightsError(f"refusing to unpickle global {module}.{name} (not a weights object)")

    def persistent_load(self, pid):
        raise WeightsError(f"refusing persistent id {pid!r} in a weights pickle")


def read_official_pickle(path: str | os.PathLike) -> dict:
    """Unpickle an official network pickle into nested `PersistentRecord`s without running any of its code."""
    try:
        with open(path, "rb") as fh:
            data = OfficialUnpickler(fh).load()
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files
        raise WeightsError(f"{path}: not a readable stylegan2-ada-pytorch pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a dict with keys 'G', 'D', 'G_ema', found {type(data).__name__}")
    return data


def flatten_record(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """State dict (dotted names -> tensors) of a record tree, from its `_parameters`, `_buffers`, `_modules`."""
    out = {}
    for key in ("_parameters", "_buffers"):
        for name, value in (record.state.get(key) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value
    for name, child in (record.state.get("_modules") or {}).items():
        if isinstance(child, PersistentRecord):
            out.update(flatten_record(child, f"{prefix}{name}."))
    return out


def official_name_map(size: int, n_mlp: int) -> dict[str, str]:
    """Official parameter name -> our state-dict name, for a generator of this size and mapping depth."""
    names = {"mapping.w_avg": "w_avg", "synthesis.b4.const": "const"}
    for i in range(n_mlp):
        for p in ("weight", "bias"):
            names[f"mapping.fc{i}.{p}"] = f"mlp.{i}.{p}"
    conv_params = {"affine.weight": "conv.affine.weight", "affine.bias": "conv.affine.bias",
                   "weight": "conv.weight", "bias": "bias", "noise_strength": "noise_strength",
                   "noise_const": "noise_const"}
    rgb_params = {"affine.weight": "conv.affine.weight", "affine.bias": "conv.affine.bias",
                  "weight": "conv.weight", "bias": "bias"}
    for level in range(int(np.log2(size)) - 1):
        res = 4 * 2**level
        convs = {"conv1": 0} if level == 0 else {"conv0": 2 * level - 1, "conv1": 2 * level}
        for layer, idx in convs.items():
            for theirs, ours in conv_params.items():
                names[f"synthesis.b{res}.{layer}.{theirs}"] = f"convs.{idx}.{ours}"
        for theirs, ours in rgb_params.items():
            names[f"synthesis.b{res}.torgb.{theirs}"] = f"to_rgbs.{level}.{ours}"
    return names


def generator_from_record(record: PersistentRecord, source: str = "<pickle>",
                          size: int | None = None) -> Generator:
    """Build our Generator from an official `Generator` record: config from tensor shapes, then weights."""
    if record.class_name != "Generator":
        raise WeightsError(f"{source}: expected a stylegan2-ada-pytorch Generator, found {record.class_name}")
    st = record.state
    flat = flatten_record(record)
    res = st.get("img_resolution")
    _check_size(source, res, size)
    blocks = {int(m.group(1)) for k in flat if (m := re.match(r"synthesis\.b(\d+)\.", k))}
    if not isinstance(res, int) or res < 4 or res & (res - 1) or max(blocks, default=0) != res:
        raise WeightsError(f"{source}: cannot read the resolution (img_resolution={res}, blocks={sorted(blocks)})")
    if st.get("c_dim", 0) or st.get("img_channels", 3) != 3:
        raise WeightsError(f"{source}: expected an unconditional RGB generator (c_dim=0, img_channels=3), "
                           f"found c_dim={st.get('c_dim')}, img_channels={st.get('img_channels')}")
    synth = st["_modules"]["synthesis"]
    for r in sorted(blocks):
        arch = synth.state["_modules"][f"b{r}"].state.get("architecture", "skip")
        if arch != "skip":
            raise WeightsError(f"{source}: expected the 'skip' synthesis architecture (config-f), block b{r} is {arch!r}")
    mapping = st["_modules"]["mapping"]
    n_mlp = sum(1 for k in flat if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    fc0 = mapping.state["_modules"]["fc0"].state
    b4 = synth.state["_modules"]["b4"].state["_modules"]["conv1"].state
    channels = {r: int(flat[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in sorted(blocks)}
    gen = Generator(res, z_dim=int(st["z_dim"]), w_dim=int(st["w_dim"]), n_mlp=n_mlp, channels=channels,
                    lr_mlp=float(fc0.get("bias_gain", 0.01)), conv_clamp=b4.get("conv_clamp"))
    name_map = official_name_map(res, n_mlp)
    ignored = {k for k in flat if k.endswith("resample_filter")}
    unknown = sorted(set(flat) - set(name_map) - ignored)
    if unknown:
        raise WeightsError(f"{source}: parameters not in the StyleGAN2 config-f generator: {unknown[:5]}")
    state = {ours: flat[theirs].float() for theirs, ours in name_map.items() if theirs in flat}
    _load_state(gen, state, source)
    return gen.eval().requires_grad_(False)


def load_official_pickle(path: str | os.PathLike, size: int | None = None, key: str = "G_ema") -> Generator:
    """Our Generator filled from an official stylegan2-ada-pytorch pickle (`G_ema` by default)."""
    data = read_official_pickle(path)
    record = data.get(key)
    if not isinstance(record, PersistentRecord):
        raise WeightsError(f"{path}: expected key {key!r} holding a Generator; keys are {sorted(map(str, data))}")
    return generator_from_record(record, source=str(path), size=size)
