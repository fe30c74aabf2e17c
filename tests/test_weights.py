"""Weights: our checkpoint format round trip, and the restricted loader for official-structure pickles."""

import collections
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from ganmatch.errors import WeightsError
from ganmatch.gan.stylegan2 import make_generator
from ganmatch.gan.weights import (
    load_generator,
    load_official_pickle,
    official_name_map,
    read_official_pickle,
    save_generator,
)

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)

torch.set_num_threads(1)
CH = {4: 16, 8: 16, 16: 8}


@pytest.fixture(scope="module")
def gen():
    g = make_generator(16, z_dim=8, w_dim=8, n_mlp=2, channels=CH, seed=3)
    for i, conv in enumerate(g.convs):  # non-zero noise so noise buffers matter
        conv.noise_strength.fill_(0.1 * (i + 1))
    return g


def _ws(g, n=3):
    return g.mapping(torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(7)))


# ------------------------------------------------------------------------------------------ our format

def test_save_load_round_trip(gen, tmp_path):
    path = tmp_path / "g.pt"
    save_generator(gen, path)
    back = load_generator(path)
    assert back.config == gen.config
    w = _ws(gen)
    assert torch.equal(back.synthesis(w), gen.synthesis(w))
    assert torch.equal(back.w_avg, gen.w_avg)
    assert [p.name for p in tmp_path.iterdir()] == ["g.pt"]  # no temp files left


def test_wrong_format_and_architecture(gen, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else", "config": {}, "state_dict": {}}, bad)
    with pytest.raises(WeightsError, match="bad.pt.*ganmatch-stylegan2/1"):
        load_generator(bad)
    path = tmp_path / "g.pt"
    save_generator(gen, path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["channels"] = {4: 32, 8: 16, 16: 8}
    torch.save(ckpt, bad)
    with pytest.raises(WeightsError, match=r"bad.pt.*const: expected \(32, 4, 4\), found \(16, 4, 4\)"):
        load_generator(bad)
    with pytest.raises(WeightsError, match="expected a 32 px generator"):
        load_generator(path, size=32)
    with pytest.raises(WeightsError, match="not found"):
        load_generator(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- official-like pickles

def _fake_official_modules(monkeypatch):
    """Modules named like theirs, holding only what pickling needs to resolve the globals by name."""
    tu = types.ModuleType("torch_utils")
    pers = types.ModuleType("torch_utils.persistence")
    dn = types.ModuleType("dnnlib")
    dnu = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by our loader
        raise AssertionError("the loader must not call the pickle's own reconstruct function")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    pers._reconstruct_persistent_obj = _reconstruct_persistent_obj
    easy = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    dnu.EasyDict = easy
    tu.persistence, dn.util = pers, dnu
    for m in (tu, pers, dn, dnu):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    return _reconstruct_persistent_obj, easy


class _Persistent:
    """Pickles exactly like a persistence-wrapped module: REDUCE(_reconstruct_persistent_obj, (meta,))."""

    reconstruct = None

    def __init__(self, class_name, params=None, buffers=None, modules=None, **attrs):
        self.meta = dict(type="class", version=4, class_name=class_name,
                         module_src="import os\nos.system('echo pwned')\n",
                         state=dict(training=False,
                                    _parameters=collections.OrderedDict(
                                        (k, torch.nn.Parameter(v.clone())) for k,
                                        v in (params or {}).items()),
                                    _buffers=collections.OrderedDict(buffers or {}),
                                    _non_persistent_buffers_set=set(),
                                    _modules=collections.OrderedDict(modules or {}),
                                    _init_args=(), **attrs))

    def __reduce__(self):
        return (_Persistent.reconstruct, (self.meta,))


def _official_like_generator(g, easy):
    """Their Generator module tree (names from training/networks.py), filled from our generator `g`."""
    sd = g.state_dict()
    filt = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64

    def fc(prefix, **attrs):
        return _Persistent("FullyConnectedLayer", {"weight": sd[prefix + "weight"],
                                                   "bias": sd[prefix + "bias"]},
                           weight_gain=np.float64(1 / np.sqrt(sd[prefix + "weight"].shape[1])), **attrs)

    mapping = _Persistent(
        "MappingNetwork", buffers={"w_avg": sd["w_avg"]},
        modules={f"fc{i}": fc(f"mlp.{i}.", activation="lrelu", bias_gain=0.01) for i in range(2)},
        z_dim=8, c_dim=0, w_dim=8, num_ws=6, num_layers=2, w_avg_beta=0.995)

    def layer(i, res, up):
        p = f"convs.{i}."
        return _Persistent("SynthesisLayer",
                           {"weight": sd[p + "conv.weight"], "noise_strength": sd[p + "noise_strength"],
                            "bias": sd[p + "bias"]},
                           {"resample_filter": filt, "noise_const": sd[p + "noise_const"]},
                           {"affine": fc(p + "conv.affine.", activation="linear", bias_gain=1)},
                           resolution=res, up=up, use_noise=True, activation="lrelu", conv_clamp=None)

    blocks = {}
    conv_idx = 0
    for level, res in enumerate((4, 8, 16)):
        mods = {}
        if res > 4:
            mods["conv0"] = layer(conv_idx, res, 2)
            conv_idx += 1
        mods["conv1"] = layer(conv_idx, res, 1)
        conv_idx += 1
        p = f"to_rgbs.{level}."
        mods["torgb"] = _Persistent("ToRGBLayer", {"weight": sd[p + "conv.weight"], "bias": sd[p + "bias"]},
                                    modules={"affine": fc(p + "conv.affine.", activation="linear",
                                                          bias_gain=1)},
                                    conv_clamp=None)
        blocks[f"b{res}"] = _Persistent("SynthesisBlock", {"const": sd["const"]} if res == 4 else {},
                                        {"resample_filter": filt}, mods, architecture="skip",
                                        in_channels=0 if res == 4 else 16, resolution=res)
    synthesis = _Persistent("SynthesisNetwork", modules=blocks, w_dim=8, img_resolution=16, img_channels=3)
    kwargs = easy(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=easy(num_layers=2), synthesis_kwargs=easy(channel_base=256, channel_max=16))
    return _Persistent("Generator", modules={"synthesis": synthesis, "mapping": mapping}, z_dim=8, c_dim=0,
                       w_dim=8, img_resolution=16, img_channels=3, num_ws=6, _init_kwargs=kwargs)


@pytest.fixture()
def official_pickle(gen, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _Persistent.reconstruct, easy = _fake_official_modules(m)
        g_rec = _official_like_generator(gen, easy)
        disc = _Persistent("Discriminator", {"b16.fromrgb.weight": torch.zeros(1)})
        data = {"G": g_rec, "D": disc, "G_ema": g_rec, "augment_pipe": None,
                "training_set_kwargs": easy(path="ffhq.zip", resolution=16, max_size=70000)}
        path = tmp_path / "network-snapshot.pkl"
        path.write_bytes(pickle.dumps(data, protocol=3))
    assert "torch_utils.persistence" not in sys.modules  # the loader below must work without it
    return path


def test_official_name_map_known_answer():
    names = official_name_map(8, n_mlp=1)
    assert names["mapping.fc0.weight"] == "mlp.0.weight"
    assert names["mapping.w_avg"] == "w_avg"
    assert names["synthesis.b4.const"] == "const"
    assert names["synthesis.b4.conv1.affine.weight"] == "convs.0.conv.affine.weight"
    assert names["synthesis.b4.torgb.weight"] == "to_rgbs.0.conv.weight"
    assert names["synthesis.b8.conv0.noise_const"] == "convs.1.noise_const"
    assert names["synthesis.b8.conv1.noise_strength"] == "convs.2.noise_strength"
    assert names["synthesis.b8.torgb.affine.bias"] == "to_rgbs.1.conv.affine.bias"
    assert len(names) == 2 + 2 + 3 * 6 + 2 * 4


def test_official_pickle_loads_into_same_generator(gen, official_pickle):
    data = read_official_pickle(official_pickle)
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    g = load_official_pickle(official_pickle)
    assert (g.size, g.z_dim, g.w_dim, g.n_latent) == (16, 8, 8, 6)
    assert g.channels == CH
    w = _ws(gen)
    assert torch.equal(g.synthesis(w), gen.synthesis(w))
    assert torch.equal(g.mapping(w), gen.mapping(w))
    wp = w[:, None].repeat(1, g.n_latent, 1)
    assert torch.equal(g.synthesis(wp), g.synthesis(w))
    g2 = load_generator(official_pickle)  # dispatches on file type
    assert torch.equal(g2.synthesis(w), g.synthesis(w))


def test_official_pickle_wrong_resolution(official_pickle):
    with pytest.raises(WeightsError, match="network-snapshot.pkl: expected a 1024 px generator.*16 px"):
        load_official_pickle(official_pickle, size=1024)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}, protocol=3))
    with pytest.raises(WeightsError, match=r"evil.pkl: refusing to unpickle global (posix|nt|os)\.system"):
        load_official_pickle(path)
    assert not marker.exists()
    path.write_bytes(b"\x80\x03cbuiltins\neval\nq\x00.")
    with pytest.raises(WeightsError, match="builtins.eval"):
        load_generator(path)
