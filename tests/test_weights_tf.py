"""TensorFlow StyleGAN2 pickles: a synthetic (G, D, Gs) pickle with the official file's class names and
variable layout loads through the restricted unpickler; the generator equals a numpy re-expression of the TF
graph."""

import copyreg
import io
import pickle

import numpy as np
import pytest
import torch

from ganmatch.errors import WeightsError
from ganmatch.gan.weights import load_generator, load_official_pickle, read_official_pickle

pytestmark = pytest.mark.heavy  # loads or projects with a generator

torch.set_num_threads(1)
RES, Z, W, N_MLP, LRMUL = 16, 8, 8, 2, 0.01
CH = {4: 8, 8: 8, 16: 4}
KERNEL = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


class _Network:
    """Writer-side stand-in, pickled as dnnlib.tflib.network.Network with its __getstate__ dict (v4)."""

    def __init__(self, state):
        self.state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (type(self),), self.state


class _TFStylePickler(pickle._Pickler):
    """Names globals as the official files do (written with numpy 1.x: numpy.core.multiarray)."""

    NAMES = {id(_Network): ("dnnlib.tflib.network", "Network"),
             id(np.ndarray.__reduce_ex__(np.zeros(1), 4)[0]): ("numpy.core.multiarray", "_reconstruct")}

    def save_global(self, obj, name=None):
        if id(obj) in self.NAMES:
            module, qual = self.NAMES[id(obj)]
            self.save(module)
            self.save(qual)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _network(name, variables, components=None, **kwargs):
    return _Network({"version": 4, "name": name, "static_kwargs": kwargs, "components": components or {},
                     "build_module_src": "raise SystemExit('network source must never run')",
                     "build_func_name": f"training.networks_stylegan2.{name}",
                     "variables": list(variables.items())})


def tf_params(seed=0):
    """Random variables named and shaped as TF StyleGAN2's (keys relative to Gs, '/' components)."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    p = {"dlatent_avg": r(W, scale=0.3), "lod": np.float32(0.0) * np.ones((), np.float32)}
    for i in range(N_MLP):
        p[f"mapping/Dense{i}/weight"] = r(Z if i == 0 else W, W, scale=1 / LRMUL)
        p[f"mapping/Dense{i}/bias"] = r(W, scale=10.0)
    p["synthesis/4x4/Const/const"] = r(1, CH[4], 4, 4)
    layers = [("4x4/Conv", CH[4], CH[4])]
    for res in (8, 16):
        layers += [(f"{res}x{res}/Conv0_up", CH[res // 2], CH[res]), (f"{res}x{res}/Conv1", CH[res], CH[res])]
    for idx, (scope, cin, cout) in enumerate(layers):
        p[f"synthesis/{scope}/weight"] = r(3, 3, cin, cout)
        p[f"synthesis/{scope}/mod_weight"] = r(W, cin)
        p[f"synthesis/{scope}/mod_bias"] = r(cin, scale=0.2)
        p[f"synthesis/{scope}/bias"] = r(cout, scale=0.2)
        p[f"synthesis/{scope}/noise_strength"] = r(scale=0.3)
        res = 2 ** ((idx + 5) // 2)
        p[f"synthesis/noise{idx}"] = r(1, 1, res, res)
    for res in (4, 8, 16):
        p[f"synthesis/{res}x{res}/ToRGB/weight"] = r(1, 1, CH[res], 3)
        p[f"synthesis/{res}x{res}/ToRGB/mod_weight"] = r(W, CH[res])
        p[f"synthesis/{res}x{res}/ToRGB/mod_bias"] = r(CH[res], scale=0.2)
        p[f"synthesis/{res}x{res}/ToRGB/bias"] = r(3, scale=0.2)
    return p


def write_tf_pickle(path, params, **gs_kwargs):
    """(G, D, Gs) as the official stylegan2-ffhq-config-f.pkl is laid out, written with protocol 4."""
    def gen_net(name):
        part = {c: {k.split("/", 1)[1]: v for k, v in params.items() if k.startswith(c + "/")}
                for c in ("mapping", "synthesis")}
        own = {k: v for k, v in params.items() if "/" not in k}
        kwargs = {"num_channels": 3, "resolution": RES, "label_size": 0, "mapping_lrmul": LRMUL, **gs_kwargs}
        components = {"mapping": _network(f"{name}_mapping", part["mapping"], dlatent_broadcast=6),
                      "synthesis": _network(f"{name}_synthesis", part["synthesis"])}
        return _network(name, own, components, **kwargs)

    d = _network("D", {"Output/weight": np.ones((4, 1), np.float32)}, num_channels=3, resolution=RES)
    buffer = io.BytesIO()
    _TFStylePickler(buffer, protocol=4).dump((gen_net("G"), d, gen_net("Gs")))
    path.write_bytes(buffer.getvalue())
    return path


# ------------------------------------------------------------------ the TF graph, written out in numpy

def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)


def as64(p):
    return {k: np.asarray(v, np.float64) for k, v in p.items()}


def tf_mapping(p, z):
    p = as64(p)
    x = z * (np.mean(z**2, axis=1, keepdims=True) + 1e-8) ** -0.5
    for i in range(N_MLP):
        w = p[f"mapping/Dense{i}/weight"].astype(np.float64)
        x = lrelu(x @ (w * LRMUL / np.sqrt(w.shape[0])) + p[f"mapping/Dense{i}/bias"] * LRMUL)
    return x


def correlate(x, w, pad):
    """NCHW x (N, I, H, W) cross-correlated with per-sample weights (N, kh, kw, I, O), zero padding `pad`."""
    n, _, h, wd = x.shape
    kh, kw = w.shape[1:3]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n, w.shape[-1], oh, ow))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("nihw,nio->nohw", xp[:, :, a:a + oh, b:b + ow], w[:, a, b])
    return out


def upfirdn(x, k, up, pad0, pad1):
    """TF's upfirdn_2d: zero insertion by `up`, zero padding, convolution with the (flipped) kernel."""
    n, c, h, w = x.shape
    if up > 1:
        z = np.zeros((n, c, h * up, w * up))
        z[:, :, ::up, ::up] = x
        x = z
    x = np.pad(x, ((0, 0), (0, 0), (pad0, pad1), (pad0, pad1)))
    kf = k[::-1, ::-1]
    kh = k.shape[0]
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kh + 1
    out = np.zeros((n, c, oh, ow))
    for a in range(kh):
        for b in range(kh):
            out += x[:, :, a:a + oh, b:b + ow] * kf[a, b]
    return out


def conv_transpose_stride2(x, f):
    """tf.nn.conv2d_transpose, VALID, stride 2, per-sample filter f (N, kh, kw, O, I):
    out[2i+a, 2j+b, o] += x[i, j, c] f[a, b, o, c]."""
    n, _, h, w = x.shape
    kh = f.shape[1]
    out = np.zeros((n, f.shape[3], 2 * (h - 1) + kh, 2 * (w - 1) + kh))
    for a in range(kh):
        for b in range(kh):
            out[:, :, a:a + 2 * h:2, b:b + 2 * w:2] += np.einsum("nihw,noi->nohw", x, f[:, a, b])
    return out


def modconv(p, scope, x, y, demodulate=True, up=False):
    w = p[f"{scope}/weight"].astype(np.float64)
    kh, kw, cin, _ = w.shape
    mw = p[f"{scope}/mod_weight"].astype(np.float64)
    s = y @ (mw / np.sqrt(mw.shape[0])) + p[f"{scope}/mod_bias"] + 1
    ww = (w / np.sqrt(kh * kw * cin))[None] * s[:, None, None, :, None]
    if demodulate:
        d = (np.sum(ww**2, axis=(1, 2, 3)) + 1e-8) ** -0.5
        ww = ww * d[:, None, None, None, :]
    if up:  # upsample_conv_2d: flipped weights as a transposed-conv filter [kh, kw, O, I], FIR with pads 1, 1
        f = ww[:, ::-1, ::-1].transpose(0, 1, 2, 4, 3)
        return upfirdn(conv_transpose_stride2(x, f), KERNEL * 4, 1, 1, 1)
    return correlate(x, ww, kh // 2)


def tf_synthesis(p, dl):
    p = as64(p)
    def layer(x, idx, scope, up=False):
        x = modconv(p, f"synthesis/{scope}", x, dl[:, idx], up=up)
        x = x + p[f"synthesis/noise{idx}"].astype(np.float64) * p[f"synthesis/{scope}/noise_strength"]
        return lrelu(x + p[f"synthesis/{scope}/bias"][None, :, None, None])

    def torgb(x, y, res, r):
        t = modconv(p, f"synthesis/{r}x{r}/ToRGB", x, dl[:, res * 2 - 3], demodulate=False)
        t = t + p[f"synthesis/{r}x{r}/ToRGB/bias"][None, :, None, None]
        return t if y is None else y + t

    x = np.tile(p["synthesis/4x4/Const/const"].astype(np.float64), (len(dl), 1, 1, 1))
    x = layer(x, 0, "4x4/Conv")
    y = torgb(x, None, 2, 4)
    for res in range(3, int(np.log2(RES)) + 1):
        r = 2**res
        x = layer(x, res * 2 - 5, f"{r}x{r}/Conv0_up", up=True)
        x = layer(x, res * 2 - 4, f"{r}x{r}/Conv1")
        y = upfirdn(y, KERNEL * 4, 2, 2, 1)
        y = torgb(x, y, res, r)
    return y


# ------------------------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def params():
    return tf_params()


@pytest.fixture(scope="module")
def pkl(tmp_path_factory, params):
    return write_tf_pickle(tmp_path_factory.mktemp("tf") / "stylegan2-tiny-config-f.pkl", params)


def test_pickle_has_the_official_structure(pkl):
    data = read_official_pickle(pkl)
    assert isinstance(data, tuple) and [n.name for n in data] == ["G", "D", "Gs"]
    gs = data[2]
    assert set(gs.components) == {"mapping", "synthesis"} and gs.components["mapping"].name == "Gs_mapping"
    assert {"dlatent_avg", "lod"} == {name for name, _ in gs.variables}
    raw = pkl.read_bytes()
    assert b"dnnlib.tflib.network" in raw and b"numpy.core.multiarray" in raw and b"_reconstruct" in raw


def test_generator_equals_the_tf_graph_in_numpy(pkl, params):
    gen = load_generator(pkl).double()
    assert (gen.size, gen.z_dim, gen.w_dim, gen.n_latent, len(gen.mlp)) == (RES, Z, W, 6, N_MLP)
    assert gen.channels == CH and gen.mlp[0].lr_mul == LRMUL
    z = np.random.default_rng(1).standard_normal((3, Z))
    w_ours = gen.mapping(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(w_ours, tf_mapping(params, z), rtol=1e-12, atol=1e-12)
    dl = np.random.default_rng(2).standard_normal((3, gen.n_latent, W))  # distinct rows: each layer's index
    ours = gen.synthesis(torch.from_numpy(dl), noise_mode="const").numpy()
    ref = tf_synthesis(params, dl)
    assert ours.shape == ref.shape == (3, 3, RES, RES)
    # only the demodulation's 1e-8 sits differently (TF adds it to the gain-scaled sum, NVIDIA's PyTorch port
    # and ganmatch to the unscaled one): relative differences of ~4e-8 here
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())
    np.testing.assert_allclose(gen.w_avg.numpy(), params["dlatent_avg"], rtol=0, atol=0)


def test_each_variable_matters(tmp_path, params):
    """Perturbing any one mapped variable changes the output: nothing is silently dropped."""
    base = load_generator(write_tf_pickle(tmp_path / "a.pkl", params)).double()
    dl = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 6, W)))
    ref = base.synthesis(dl).numpy()
    for key in ("synthesis/16x16/Conv0_up/weight", "synthesis/8x8/ToRGB/mod_bias", "synthesis/noise4",
                "synthesis/16x16/Conv1/noise_strength", "synthesis/4x4/Const/const"):
        changed = dict(params)
        changed[key] = params[key] + np.float32(0.5)
        gen = load_generator(write_tf_pickle(tmp_path / "b.pkl", changed)).double()
        assert not np.allclose(gen.synthesis(dl).numpy(), ref), key


def test_refuses_foreign_globals_and_other_architectures(tmp_path, params):
    class Evil:
        def __reduce__(self):
            return (eval, ("1",))

    bad = tmp_path / "evil.pkl"
    buffer = io.BytesIO()
    _TFStylePickler(buffer, protocol=4).dump((Evil(),))
    bad.write_bytes(buffer.getvalue())
    with pytest.raises(WeightsError, match="refusing to unpickle global builtins.eval"):
        load_official_pickle(bad)
    orig = dict(params)
    orig["synthesis/ToRGB_lod0/weight"] = orig.pop("synthesis/16x16/ToRGB/weight")
    with pytest.raises(WeightsError, match="skip"):
        load_official_pickle(write_tf_pickle(tmp_path / "orig.pkl", orig))
    with pytest.raises(WeightsError, match="architecture='resnet'"):
        load_official_pickle(write_tf_pickle(tmp_path / "r.pkl", params, architecture="resnet"))
    with pytest.raises(WeightsError, match="expected a 1024 px generator"):
        load_official_pickle(write_tf_pickle(tmp_path / "s.pkl", params), size=1024)
    objects = np.array([{"a": 1}], dtype=object)
    with pytest.raises(WeightsError):
        load_official_pickle(write_tf_pickle(tmp_path / "o.pkl", {**params, "dlatent_avg": objects}))
