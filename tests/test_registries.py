"""The registries of the extension points: the Registry class, the config keys they back, a
plugin module that adds a backbone, a dataset and a training clip sampler with one
registration line each and trains with them through the config, and one that adds an extra
loss term to the criterion."""

import importlib
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from config.defaults import _C
from config.validate import CHOICES
from data import make_data_loaders
from data.datasets import DATASETS
from data.sampling import TEST_SAMPLERS, TRAIN_SAMPLERS
from engine import Trainer
from engine.defaults import REGISTRIES, load_cfg
from layers import LOSS_TERMS, make_loss
from modeling import BACKBONES, FUSION_METHODS, NECKS, build_model
from tests.helpers import MARS_ATTR_LENS, tiny_opts
from utils.errors import UserError
from utils.registry import Registry

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ Registry
def test_register_as_a_decorator_and_as_a_call():
    reg = Registry("MODEL.SHAPE", "shape")

    @reg.register("square")
    def square(side):
        return side * side

    def disc(r):
        return 3 * r * r

    assert reg.register("disc", disc) is disc          # a plain call returns the object
    assert reg.get("square") is square and reg["disc"] is disc
    assert reg.names() == ("square", "disc") == tuple(reg)    # registration order
    assert "square" in reg and "cube" not in reg and ["unhashable"] not in reg
    assert len(reg) == 2 and reg.items() == [("square", square), ("disc", disc)]
    assert reg.values() == [square, disc]
    assert reg.unregister("square") is square and reg.names() == ("disc",)
    assert "MODEL.SHAPE" in repr(reg) and "disc" in repr(reg)


def test_a_duplicate_name_is_an_error():
    reg = Registry("MODEL.SHAPE", "shape")
    reg.register("square", abs)
    with pytest.raises(ValueError, match=r"The shape 'square' \(MODEL\.SHAPE\) is registered "
                                         r"already"):
        reg.register("square", round)
    with pytest.raises(ValueError, match="registered already"):
        reg.register("square")(round)
    assert reg.get("square") is abs                    # the first registration stays
    with pytest.raises(TypeError, match="non-empty string"):
        reg.register("", round)


def test_an_unknown_name_names_the_key_and_lists_the_known_names():
    reg = Registry("MODEL.SHAPE", "shape")
    reg.register("square", abs)
    reg.register("disc", round)
    with pytest.raises(UserError) as e:
        reg.get("cube")
    assert str(e.value) == ("Invalid value 'cube' for MODEL.SHAPE; allowed values: square, "
                            "disc.")
    with pytest.raises(UserError, match=r"Invalid value \['a'\] for MODEL\.SHAPE"):
        reg.get(["a"])
    with pytest.raises(UserError, match="MODEL.SHAPE"):
        reg.unregister("cube")


# ------------------------------------------------------------------------------ the keys
def test_each_extension_point_has_one_registry_backing_its_key():
    keys = {reg.key: reg for reg in REGISTRIES}
    assert len(keys) == len(REGISTRIES)                # one registry per key
    assert {"MODEL.NAME": BACKBONES, "MODEL.FUSION_METHOD": FUSION_METHODS,
            "MODEL.NECK": NECKS, "MODEL.EXTRA_LOSSES": LOSS_TERMS, "DATASETS.NAME": DATASETS,
            "DATASETS.TRAIN_SAMPLE_METHOD": TRAIN_SAMPLERS,
            "DATASETS.TEST_SAMPLE_METHOD": TEST_SAMPLERS}.items() <= keys.items()
    assert not set(keys) & set(CHOICES)                # no second list of the names in config/
    for key, reg in keys.items():
        node = _C
        for part in key.split("."):
            node = node[part]
        names = node if isinstance(node, list) else [node]   # a list key names several
        assert all(name in reg for name in names), key       # the default is registered
    assert _C.MODEL.EXTRA_LOSSES == [] and _C.MODEL.EXTRA_LOSS_WEIGHTS == []


def test_the_built_in_names():
    assert BACKBONES.names()[:5] == ("resnet18", "resnet34", "resnet50", "resnet101",
                                     "resnet152")
    assert set(BACKBONES.names()[5:]) == {"resnet50_ibn_a", "se_resnet50", "se_resnet101",
                                          "se_resnet152", "se_resnext50", "se_resnext101",
                                          "senet154"}
    assert FUSION_METHODS.names() == ("baseline", "TA", "ATTR_TA")
    assert NECKS.names() == ("bnneck", "no")
    assert DATASETS.names() == ("mars", "duke", "ilidsvid", "prid", "folder")
    assert TRAIN_SAMPLERS.names() == ("random", "evenly")
    assert TEST_SAMPLERS.names() == ("dense", "evenly", "random")
    assert LOSS_TERMS.names() == ()                    # the paper's loss has its own keys


@pytest.mark.parametrize("key, value", [
    ("MODEL.NAME", "resnet51"), ("MODEL.FUSION_METHOD", "LSTM"), ("MODEL.NECK", "bnnek"),
    ("DATASETS.NAME", "market"), ("DATASETS.TRAIN_SAMPLE_METHOD", "dense"),
    ("DATASETS.TEST_SAMPLE_METHOD", "all"),
])
def test_the_config_loader_refuses_an_unregistered_name(key, value):
    allowed = ", ".join(next(r for r in REGISTRIES if r.key == key).names())
    with pytest.raises(UserError) as e:
        load_cfg(None, [key, value])
    assert str(e.value) == f"Invalid value {value!r} for {key}; allowed values: {allowed}."


def test_the_config_loader_refuses_an_unregistered_extra_loss_term():
    """Each element of the list key is checked; an empty registry says that it is empty."""
    with pytest.raises(UserError) as e:
        load_cfg(None, ["MODEL.EXTRA_LOSSES", "['my_term']"])
    assert str(e.value) == ("Invalid value 'my_term' for MODEL.EXTRA_LOSSES; allowed values: "
                            "none (no extra loss term is registered).")


# ------------------------------------------------------------------------------ a plugin
PLUGIN = '''
"""A backbone, a dataset and a training clip sampler, registered with one line each."""

import numpy as np
from torch import nn

from data.datasets import DATASETS, Mars
from data.sampling import TRAIN_SAMPLERS
from modeling.backbones import BACKBONES
from modeling.backbones.resnet import conv_output_size

CALLS = []     # (n, seq_len) of every clip first_frames sampled


class TinyNet(nn.Module):
    """Two 3x3 convolutions, strides 2 and last_stride: (N, 3, H, W) -> (N, 8, h, w)."""

    out_channels = 8

    def __init__(self, last_stride=1, stem_relu=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.layer = nn.Sequential(nn.Conv2d(8, 8, 3, last_stride, 1, bias=False),
                                   nn.BatchNorm2d(8), nn.ReLU())
        self.last_stride = last_stride

    def output_size(self, size):
        h, w = (conv_output_size(n, 3, 2, 1) for n in size)
        return conv_output_size(h, 3, self.last_stride, 1), \\
            conv_output_size(w, 3, self.last_stride, 1)

    def stages(self):
        return [self.stem, self.layer]

    def forward(self, x):
        return self.layer(self.stem(x))


BACKBONES.register("tiny_net", TinyNet)


@DATASETS.register("mars_copy")
class MarsCopy(Mars):
    """MARS read under another DATASETS.NAME."""


@TRAIN_SAMPLERS.register("first_frames")
def first_frames(n, seq_len, generator):
    """The first T places of the frame order (cyclic when the tracklet is shorter)."""
    CALLS.append((n, seq_len))
    return np.arange(seq_len, dtype=np.int64) % n
'''
PLUGIN_NAMES = ((BACKBONES, "tiny_net"), (DATASETS, "mars_copy"),
                (TRAIN_SAMPLERS, "first_frames"))


@pytest.fixture
def plugin(tmp_path, monkeypatch, request):
    """The module PLUGIN, imported from a file; its registrations are undone afterwards."""
    def undo():
        for registry, name in PLUGIN_NAMES:
            if name in registry:
                registry.unregister(name)
        sys.modules.pop("reid_plugin", None)

    request.addfinalizer(undo)
    (tmp_path / "reid_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("reid_plugin")


def plugin_cfg(root, out, *extra: str):
    return load_cfg(None, [*tiny_opts(root, out, 1), "MODEL.NAME", "tiny_net",
                           "DATASETS.NAME", "mars_copy", "DATASETS.TRAIN_SAMPLE_METHOD",
                           "first_frames", *extra])


def test_a_plugin_is_built_through_the_config(plugin, tiny_mars, tmp_path):
    cfg = plugin_cfg(tiny_mars, tmp_path / "out")
    train, query, _gallery, dataset = make_data_loaders(cfg)
    assert type(dataset) is plugin.MarsCopy and dataset.attr_lens is not None
    model = build_model(cfg, dataset.num_train_pids, dataset.attr_lens, device=CPU)
    assert isinstance(model.base, plugin.TinyNet) and model.feat_dim == 3 * 8   # ATTR_TA
    clips, pids, _camids, _attrs = next(iter(train))
    assert clips.shape == (4, 2, 3, 32, 16) and plugin.CALLS
    assert all(seq_len == 2 for _, seq_len in plugin.CALLS)
    cls_score, feat, attr_logits = model.train()(clips)
    assert cls_score.shape == (4, dataset.num_train_pids) and feat.shape == (4, 24)
    query_clips = next(iter(query))[0]
    assert model.eval()(query_clips)[0].shape == (query_clips.shape[0], 24)
    # the registered names are the allowed values, listed with the others
    with pytest.raises(UserError, match=r"for MODEL\.NAME; allowed values: resnet18, .*, "
                                        r"tiny_net\.$"):
        load_cfg(None, ["MODEL.NAME", "tiny"])


def test_the_plugins_names_are_gone_after_it(plugin):
    """The control of the fixture: the registrations are undone between tests."""
    assert "tiny_net" in BACKBONES
    for registry, name in PLUGIN_NAMES:
        registry.unregister(name)
    assert "tiny_net" not in BACKBONES and "mars_copy" not in DATASETS
    with pytest.raises(UserError, match="DATASETS.NAME"):
        load_cfg(None, ["DATASETS.NAME", "mars_copy"])


@pytest.mark.slow
def test_a_plugin_trains_one_step(plugin, tiny_mars, tmp_path):
    cfg = plugin_cfg(tiny_mars, tmp_path / "out")
    torch.manual_seed(0)
    train, query, gallery, dataset = make_data_loaders(cfg)
    model = build_model(cfg, dataset.num_train_pids, dataset.attr_lens, device=CPU)
    trainer = Trainer.from_config(cfg, model, (train, query, gallery), dataset, CPU, None)
    train.batch_sampler.set_epoch(1)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    losses = trainer.run_step(next(iter(train)))
    assert torch.isfinite(losses["total"])
    assert not torch.equal(before["base.stem.0.weight"], model.base.stem[0].weight)
    assert plugin.CALLS


# ------------------------------------------------------------------------------ a loss term
LOSS_PLUGIN = '''
"""An extra loss term, registered with one line."""

from torch import nn

from layers import LOSS_TERMS

BUILT = []     # (num_classes, feat_dim, attr_lens) of every term the factory built


@LOSS_TERMS.register("my_term")
class FeatureEnergy(nn.Module):
    """The mean squared norm of the global feature."""

    def __init__(self, num_classes, feat_dim, attr_lens):
        super().__init__()
        BUILT.append((num_classes, feat_dim, attr_lens))

    def forward(self, outputs, pids, attrs):
        return outputs[1].pow(2).sum(1).mean()
'''


@pytest.fixture
def loss_plugin(tmp_path, monkeypatch, request):
    """The module LOSS_PLUGIN, imported from a file; its registration is undone afterwards."""
    def undo():
        if "my_term" in LOSS_TERMS:
            LOSS_TERMS.unregister("my_term")
        sys.modules.pop("reid_loss_plugin", None)

    request.addfinalizer(undo)
    (tmp_path / "reid_loss_plugin.py").write_text(textwrap.dedent(LOSS_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("reid_loss_plugin")


def train_outputs(n=8, num_classes=4, dim=12, seed=6):
    """Train outputs of the paper's model ("bce" attribute logits) and the batch's labels."""
    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(n // 2).repeat_interleave(2) % num_classes
    cls = torch.randn(n, num_classes, generator=g, requires_grad=True)
    feat = torch.randn(n, dim, generator=g, requires_grad=True)
    logits = [torch.randn(n, sum(lens), generator=g, requires_grad=True)
              for lens in MARS_ATTR_LENS]
    targets = [torch.cat([F.one_hot(torch.randint(0, c, (n,), generator=g), c) for c in lens],
                         1).float() for lens in MARS_ATTR_LENS]
    return (cls, feat, logits), pids, targets


def test_a_loss_term_is_added_through_the_config(loss_plugin):
    default = make_loss(load_cfg(None, []), 4, MARS_ATTR_LENS, feat_dim=12)
    cfg = load_cfg(None, ["MODEL.EXTRA_LOSSES", "['my_term']",
                          "MODEL.EXTRA_LOSS_WEIGHTS", "[0.25]"])
    crit = make_loss(cfg, 4, MARS_ATTR_LENS, feat_dim=12)
    assert loss_plugin.BUILT == [(4, 12, MARS_ATTR_LENS)]    # factory(num_classes, feat_dim, ..)
    assert isinstance(crit.extra_modules[0], loss_plugin.FeatureEnergy)
    outputs, pids, attrs = train_outputs()
    base, losses = default(outputs, pids, attrs), crit(outputs, pids, attrs)
    term = outputs[1].pow(2).sum(1).mean()
    assert list(losses) == [*list(base)[:-1], "loss_my_term", "total"]
    for key in list(base)[:-1]:                               # the paper's terms are untouched
        assert torch.equal(losses[key], base[key]), key
    assert torch.equal(losses["loss_my_term"], 0.25 * term)
    assert torch.equal(losses["total"], base["total"] + 0.25 * term)    # exact
    # terms (the log line, the curves and the architecture picture read them) list it
    assert crit.terms == default.terms + [("loss_my_term", 0.25)]
    assert crit.formula() == default.formula() + " + 0.25 * loss_my_term"
    losses["total"].backward()                                # it trains the feature
    assert outputs[1].grad is not None
    # without weights each term weighs 1.0; without attributes the factory gets attr_lens None
    ones = make_loss(load_cfg(None, ["MODEL.EXTRA_LOSSES", "['my_term']"]), 4, None)
    assert ones.terms[-1] == ("loss_my_term", 1.0) and loss_plugin.BUILT[-1] == (4, None, None)


def test_the_default_criterion_has_no_extra_term():
    crit = make_loss(load_cfg(None, []), 4, MARS_ATTR_LENS, feat_dim=12)
    assert len(crit.extra_modules) == 0 and not list(crit.extra_modules.parameters())
    assert [k for k, _ in crit.terms] == ["loss_id", "loss_triplet", "loss_aitl_unrelated",
                                          "loss_aitl_related", "loss_attr"]
    assert not [k for k in crit.state_dict() if k.startswith("extra")]


def test_an_unregistered_loss_term_is_refused_by_the_config_loader(loss_plugin):
    with pytest.raises(UserError) as e:
        load_cfg(None, ["MODEL.EXTRA_LOSSES", "['my_term', 'my_trem']"])
    assert str(e.value) == ("Invalid value 'my_trem' for MODEL.EXTRA_LOSSES; allowed values: "
                            "my_term.")


def test_an_extra_term_may_not_take_a_key_of_the_paper_loss(loss_plugin):
    LOSS_TERMS.register("id", loss_plugin.FeatureEnergy)
    try:
        with pytest.raises(ValueError, match="'id' would be logged as 'loss_id'"):
            make_loss(load_cfg(None, ["MODEL.EXTRA_LOSSES", "['id']"]), 4, None)
    finally:
        LOSS_TERMS.unregister("id")
