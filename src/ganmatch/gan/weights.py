"""Generator weights: our own checkpoint format, and NVIDIA's official pickles read safely.

Our format is `torch.save({"format", "config", "state_dict"})`, read back with `weights_only=True`.
stylegan2-ada-pytorch pickles embed their module source and rebuild objects through
`torch_utils.persistence._reconstruct_persistent_obj`; `OfficialUnpickler` maps that call onto an inert
record (class name + state), never runs the source, and refuses every global not in `SAFE_GLOBALS`.
The TensorFlow StyleGAN2 pickles (`stylegan2-ffhq-config-f.pkl`: a tuple G, D, Gs of
`dnnlib.tflib.network.Network`) are read the same way: each Network becomes a `TFNetworkRecord` holding its
pickled state (name, static_kwargs, components, variables as numpy arrays), its build source never run, and
`generator_from_tf_record` maps Gs's variables onto our generator (NVIDIA's legacy.py documents the layout).
"""

from __future__ import annotations

import collections
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ganmatch.data.io import atomic_path
from ganmatch.data.safe_pickle import RestrictedUnpickler
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


class TFNetworkRecord:
    """Inert stand-in for `dnnlib.tflib.network.Network`: the state its `__getstate__` pickled (version,
    name, static_kwargs, components, variables as (name, ndarray) pairs); `build_module_src` is dropped,
    never run."""

    def __setstate__(self, state):
        if not isinstance(state, dict) or state.get("version") not in (2, 3, 4):
            version = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise WeightsError(f"unsupported TensorFlow network pickle state (version {version!r}; "
                               "expected 2-4)")
        self.version = state["version"]
        self.name = str(state.get("name"))
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        self.components = dict(state.get("components") or {})
        if not all(isinstance(c, TFNetworkRecord) for c in self.components.values()):
            raise WeightsError(f"network {self.name}: components that are not networks")
        self.build_func_name = str(state.get("build_func_name"))
        self.variables = []
        for item in state.get("variables") or []:
            name, value = item
            if isinstance(value, _PendingArray):
                value = value.array
            elif isinstance(value, np.generic) and not isinstance(value, np.object_):
                value = np.asarray(value)  # a scalar variable (noise_strength, lod), as TF returned it
            if not isinstance(value, np.ndarray):
                raise WeightsError(f"network {self.name}: variable {name!r} is a {type(value).__name__}, "
                                   "not an array")
            self.variables.append((str(name), value))

    def __repr__(self) -> str:
        return f"TFNetworkRecord({self.name}, {len(self.variables)} variables)"


class _PendingArray:
    """A numpy array as pickled (`_reconstruct`, then its state): raw bytes of a plain dtype, no objects."""

    array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise WeightsError("malformed numpy array in a weights pickle")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, (bytes, bytearray)):
            raise WeightsError("numpy arrays of objects are not allowed in weights pickles")
        shape = tuple(int(n) for n in shape)
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise WeightsError(f"numpy array of shape {shape} with {len(raw)} bytes in a weights pickle")
        order = "F" if fortran else "C"
        self.array = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order=order).copy()


def _numpy_reconstruct(cls, shape, typecode):
    if cls is not np.ndarray:
        raise WeightsError(f"refusing to rebuild numpy subclass {cls!r} in a weights pickle")
    return _PendingArray()


def _codecs_encode(text, encoding="latin1"):
    """Bytes of protocol-2 pickles (`_codecs.encode(str, 'latin1')`)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise WeightsError("unexpected _codecs.encode call in a weights pickle")
    return text.encode("latin1")


SAFE_GLOBALS = {
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("_codecs", "encode"): _codecs_encode,
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


class OfficialUnpickler(RestrictedUnpickler):
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
        raise WeightsError(f"{path}: not a readable StyleGAN2 network pickle ({type(exc).__name__}: {exc})") \
            from exc
    if is_tf_networks(data):
        return data
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a dict with keys 'G', 'D', 'G_ema' (stylegan2-ada-pytorch) or "
                           f"a tuple G, D, Gs (TensorFlow StyleGAN2), found {type(data).__name__}")
    return data


def is_tf_networks(data) -> bool:
    """Whether an unpickled official file is TensorFlow StyleGAN2's (G, D, Gs) tuple of networks."""
    return isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetworkRecord) for n in data)


def flatten_record(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """State dict (dotted names -> tensors) of a record tree, from its `_parameters`, `_buffers`,
    `_modules`."""
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
        raise WeightsError(f"{source}: cannot read the resolution (img_resolution={res}, "
                           f"blocks={sorted(blocks)})")
    if st.get("c_dim", 0) or st.get("img_channels", 3) != 3:
        raise WeightsError(f"{source}: expected an unconditional RGB generator (c_dim=0, img_channels=3), "
                           f"found c_dim={st.get('c_dim')}, img_channels={st.get('img_channels')}")
    synth = st["_modules"]["synthesis"]
    for r in sorted(blocks):
        arch = synth.state["_modules"][f"b{r}"].state.get("architecture", "skip")
        if arch != "skip":
            raise WeightsError(f"{source}: expected the 'skip' synthesis architecture (config-f), block b{r} "
                               f"is {arch!r}")
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


TF_KWARGS = {  # Gs static kwargs (legacy.py's list) and the values config-f has, None = any value
    "latent_size": None, "label_size": 0, "dlatent_size": None, "resolution": None, "num_channels": 3,
    "mapping_layers": None, "label_fmaps": None, "mapping_fmaps": None, "mapping_nonlinearity": "lrelu",
    "mapping_lrmul": None, "w_avg_beta": None, "fmap_base": None, "fmap_max": None, "num_fp16_res": 0,
    "conv_clamp": None, "architecture": "skip", "resample_kernel": [1, 3, 3, 1], "use_noise": True,
    "nonlinearity": "lrelu", "truncation_psi": None, "truncation_cutoff": None, "style_mixing_prob": None,
    "structure": None, "fmap_decay": None, "fmap_min": None, "dlatent_avg_beta": None,
    "randomize_noise": None,
}


def tf_variables(net: TFNetworkRecord, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of a network and its components, named '<component>/<scope>/<name>' (e.g.
    'mapping/Dense0/weight', 'synthesis/4x4/Conv/mod_weight'; Gs's own 'dlatent_avg')."""
    out = {prefix + name: value for name, value in net.variables}
    for name, comp in net.components.items():
        out.update(tf_variables(comp, f"{prefix}{name}/"))
    return out


def _tf_kwarg_problems(kwargs: dict) -> list[str]:
    problems = [f"unknown static kwarg {k!r}" for k in kwargs if k not in TF_KWARGS]
    for key, want in TF_KWARGS.items():
        got = kwargs.get(key, want)
        if want is not None and got is not None and (list(got) if isinstance(got, tuple) else got) != want:
            problems.append(f"{key}={got!r} (config-f has {want!r})")
    return problems


def tf_state_dict(params: dict[str, np.ndarray], res: int, n_mlp: int) -> dict[str, torch.Tensor]:
    """Our state dict from TensorFlow StyleGAN2 variables: dense weights [in, out] transposed; conv weights
    [kh, kw, in, out] to [out, in, kh, kw] (the upsampling conv's also flipped, TF running it as a
    transposed convolution); style biases + 1 (TF adds the 1 in the graph); noise maps [1, 1, r, r] to [r, r].
    The equalised learning-rate gains and 'lrmul' are applied at run time by both: raw values carry over."""
    def t(a):
        return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # (ascontiguousarray makes 0-d 1-d)

    def conv(w, flip=False):
        return t((w[::-1, ::-1] if flip else w).transpose(3, 2, 0, 1))

    state = {"w_avg": t(params["dlatent_avg"]), "const": t(params["synthesis/4x4/Const/const"][0])}
    for i in range(n_mlp):
        state[f"mlp.{i}.weight"] = t(params[f"mapping/Dense{i}/weight"].T)
        state[f"mlp.{i}.bias"] = t(params[f"mapping/Dense{i}/bias"])

    def modulated(ours, scope, flip=False):
        state[f"{ours}.conv.weight"] = conv(params[f"{scope}/weight"], flip)
        state[f"{ours}.conv.affine.weight"] = t(params[f"{scope}/mod_weight"].T)
        state[f"{ours}.conv.affine.bias"] = t(params[f"{scope}/mod_bias"] + 1)
        state[f"{ours}.bias"] = t(params[f"{scope}/bias"])

    for level in range(int(np.log2(res)) - 1):
        r = 4 * 2**level
        layers = [(0, "synthesis/4x4/Conv", False)] if level == 0 else [
            (2 * level - 1, f"synthesis/{r}x{r}/Conv0_up", True),
            (2 * level, f"synthesis/{r}x{r}/Conv1", False)]
        for idx, scope, flip in layers:
            modulated(f"convs.{idx}", scope, flip)
            state[f"convs.{idx}.noise_strength"] = t(params[f"{scope}/noise_strength"])
            state[f"convs.{idx}.noise_const"] = t(params[f"synthesis/noise{idx}"][0, 0])
        modulated(f"to_rgbs.{level}", f"synthesis/{r}x{r}/ToRGB")
    return state


def generator_from_tf_record(gs: TFNetworkRecord, source: str = "<pickle>",
                             size: int | None = None) -> Generator:
    """Our Generator from TensorFlow StyleGAN2's Gs network (config-f: skip generator, [1,3,3,1] filter)."""
    if set(gs.components) != {"mapping", "synthesis"}:
        raise WeightsError(f"{source}: network {gs.name} has components {sorted(gs.components)}, expected a "
                           "StyleGAN2 generator (mapping, synthesis)")
    problems = _tf_kwarg_problems(gs.static_kwargs)
    if problems:
        raise WeightsError(f"{source}: not a StyleGAN2 config-f generator: {'; '.join(problems[:5])}")
    params = tf_variables(gs)
    if any(re.match(r"synthesis/ToRGB_lod\d+/|synthesis/\d+x\d+/Skip/", k) for k in params):
        raise WeightsError(f"{source}: expected the 'skip' synthesis architecture (config-f), found 'orig' "
                           "or 'resnet'")
    blocks = [int(m.group(1)) for k in params if (m := re.fullmatch(r"synthesis/(\d+)x\1/Conv1/weight", k))]
    res = max(blocks, default=4)
    _check_size(source, res, size)
    if gs.static_kwargs.get("resolution", res) != res:
        raise WeightsError(f"{source}: static kwarg resolution={gs.static_kwargs['resolution']} but blocks "
                           f"up to {res} px")
    n_mlp = sum(1 for k in params if re.fullmatch(r"mapping/Dense\d+/weight", k))
    if n_mlp < 1 or "synthesis/4x4/Const/const" not in params or "dlatent_avg" not in params:
        raise WeightsError(f"{source}: missing mapping layers, the constant input or dlatent_avg")
    dense = [params[f"mapping/Dense{i}/weight"] for i in range(n_mlp)]
    z_dim, w_dim = int(dense[0].shape[0]), int(dense[-1].shape[1])
    if any(d.shape[1] != w_dim for d in dense) or any(d.shape[0] != w_dim for d in dense[1:]):
        raise WeightsError(f"{source}: mapping layers of widths {[tuple(d.shape) for d in dense]}: ganmatch "
                           "needs mapping_fmaps equal to dlatent_size")
    channels = {4: int(params["synthesis/4x4/Const/const"].shape[1])}
    channels.update({r: int(params[f"synthesis/{r}x{r}/Conv1/weight"].shape[3]) for r in blocks})
    lr_mlp = float(gs.static_kwargs.get("mapping_lrmul") or 0.01)
    gen = Generator(res, z_dim=z_dim, w_dim=w_dim, n_mlp=n_mlp, channels=channels, lr_mlp=lr_mlp)
    try:
        state = tf_state_dict(params, res, n_mlp)
    except KeyError as exc:
        raise WeightsError(f"{source}: variable {exc} missing from the TensorFlow generator") from None
    used = {"lod", "dlatent_avg", "synthesis/4x4/Const/const"}
    used |= {f"synthesis/noise{i}" for i in range(len(gen.convs))}
    used |= {k for k in params if re.fullmatch(r"mapping/Dense\d+/(weight|bias)", k)}
    used |= {k for k in params if re.fullmatch(r"synthesis/\d+x\d+/(Conv|Conv0_up|Conv1|ToRGB)/"
                                              r"(weight|mod_weight|mod_bias|bias|noise_strength)", k)}
    unknown = sorted(set(params) - used)
    if unknown:
        raise WeightsError(f"{source}: variables not in the StyleGAN2 config-f generator: {unknown[:5]}")
    _load_state(gen, state, source)
    return gen.eval().requires_grad_(False)


TF_KEYS = {"G": 0, "D": 1, "Gs": 2, "G_ema": 2}


def load_official_pickle(path: str | os.PathLike, size: int | None = None, key: str = "G_ema") -> Generator:
    """Our Generator filled from an official pickle: stylegan2-ada-pytorch's (`G_ema` by default) or
    TensorFlow StyleGAN2's (its Gs, the same moving average)."""
    data = read_official_pickle(path)
    if is_tf_networks(data):
        if key not in TF_KEYS or key == "D":
            raise WeightsError(f"{path}: a TensorFlow pickle holds G, D, Gs; {key!r} is not a generator")
        return generator_from_tf_record(data[TF_KEYS[key]], source=str(path), size=size)
    record = data.get(key)
    if not isinstance(record, PersistentRecord):
        raise WeightsError(f"{path}: expected key {key!r} holding a Generator; keys are "
                           f"{sorted(map(str, data))}")
    return generator_from_record(record, source=str(path), size=size)
