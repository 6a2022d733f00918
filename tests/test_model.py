"""VideoBaseline: shapes, the forward against a naive oracle, gradients, checkpointing,
channels_last."""

import copy

import pytest
import torch
import torch.nn.functional as F

from config import get_cfg, load_cfg, validate_cfg
from modeling import (
    BACKBONE_NAMES,
    VideoBaseline,
    build_backbone,
    build_model,
    fold_batch_norms,
    resolve_channels_last,
)
from utils.errors import UserError

ATTR_LENS = [[3, 2, 2], [4, 2]]     # tiny groups: 7 and 6 one-hot outputs
SIZE = (48, 32)                      # resnet18, last stride 1 -> 3x2 map (h != w)
MAP = (3, 2)
SMALL = (32, 16)                     # 2x1 map, for the tests that need no oracle
B, T = 2, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def make(**kw) -> VideoBaseline:
    args = {"num_classes": 5, "backbone": "resnet18", "attr_lens": ATTR_LENS,
            "input_size": SIZE}
    args.update(kw)
    torch.manual_seed(0)
    return VideoBaseline(**args)


def clips(seed: int = 1, size=SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, 3, *size, generator=g)


def shapes(out) -> list:
    return [None if o is None else tuple(o.shape) if torch.is_tensor(o)
            else [tuple(a.shape) for a in o] for o in out]


# ------------------------------------------------------------------ oracle
def temporal_conv_loop(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Conv1d (kernel 3, padding 1) over time written as a loop; x (B, P, T) -> (B, P, T)."""
    out = []
    for tau in range(x.shape[2]):
        acc = conv.bias[None, :].expand(x.shape[0], -1).clone()
        for k in range(3):
            src = tau + k - 1
            if 0 <= src < x.shape[2]:
                acc = acc + x[:, :, src] @ conv.weight[:, :, k].T
        out.append(acc)
    return torch.stack(out, 2)


def oracle(model: VideoBaseline, x: torch.Tensor):
    """Eval forward written naively: materialised attended maps, concat, then pool."""
    b, t = x.shape[:2]
    f = model.base(x.flatten(0, 1))
    bt, c, h, w = f.shape
    fp = f
    if model.fusion_method != "baseline":
        fp = torch.sigmoid(model.attention_conv(f)) * f
    logits, maps = [], []
    streams = (model.multi_attr_recoger1, model.multi_attr_recoger2) if model.attr_on else ()
    for g, stream in enumerate(streams):
        z = F.relu(stream.bn(stream.conv(f)))
        if model.attribute_loss == "bce":
            s = stream.attention_s_conv(z).view(b, t, h * w).transpose(1, 2)
            a = torch.sigmoid(temporal_conv_loop(stream.attention_t_conv, s))
            a = a.transpose(1, 2).reshape(bt, 1, h, w)
            pooled = (a * f).mean((2, 3)).view(b, t, c).mean(1)
            logits.append(stream.classifier(F.relu(pooled)))
            maps.append(a)
        else:  # "mce" mode steps 1-3 (docs/behaviour.md), softmaxes written out as exp / sum
            n = len(stream.attr_recog_modules)
            fusion = getattr(model, f"attention_fusion{g + 1}", None)
            weights = (torch.full((1, n, h, w), 1 / n) if fusion is None  # TA: the mean map
                       else fusion.exp() / fusion.exp().sum(1, keepdim=True))
            group = 0
            for k, head in enumerate(stream.attr_recog_modules):
                a_k = torch.sigmoid(head.attention_conv(z))
                pooled = (a_k * z).mean((2, 3)).view(b, t, -1).mean(1)
                logits.append(head.classifier(F.relu(pooled)))
                group = group + weights[:, k:k + 1] * a_k
            if fusion is not None:   # softmax over the T frames of each clip, per position
                e = group.view(b, t, 1, h, w).exp()
                group = (e / e.sum(1, keepdim=True)).view(bt, 1, h, w)
            maps.append(group)
    if model.fusion_method == "ATTR_TA":
        fp = torch.cat([fp, maps[0] * fp, maps[1] * fp], 1)   # (B*T, 3C, h, w)
    g = fp.mean((2, 3)).view(b, t, -1).mean(1)
    feat = model.bottleneck(g) if model.neck == "bnneck" and model.neck_feat == "after" else g
    return feat, (logits or None), maps


CASES = [  # fusion, attribute loss (None: no attributes), neck, neck_feat, feat_dim
    ("ATTR_TA", "bce", "bnneck", "after", 3 * 512),
    ("ATTR_TA", "mce", "bnneck", "before", 3 * 512),
    ("TA", "bce", "no", "after", 512),
    ("baseline", "mce", "bnneck", "after", 512),
    ("ATTR_TA", None, "bnneck", "after", 512),      # no attributes: falls back to TA
    ("baseline", None, "no", "after", 512),
]


@pytest.mark.parametrize("fusion,loss,neck,neck_feat,dim", CASES)
def test_outputs_match_naive_oracle(fusion, loss, neck, neck_feat, dim):
    model = make(fusion_method=fusion, attribute_loss=loss or "bce", neck=neck,
                 neck_feat=neck_feat, attr_lens=ATTR_LENS if loss else None)
    assert model.feat_dim == dim
    assert hasattr(model, "attention_fusion1") == (loss == "mce" and fusion == "ATTR_TA")
    if loss == "mce" and fusion == "ATTR_TA":   # non-uniform weights, so that their use is checked
        with torch.no_grad():
            model.attention_fusion1.uniform_(0, 1)
            model.attention_fusion2.uniform_(0, 1)
    n_logits = {"bce": [(B, 7), (B, 6)], "mce": [(B, 3), (B, 2), (B, 2), (B, 4), (B, 2)],
                None: None}[loss]
    x = clips()
    cls_score, global_feat, logits = model.train()(x)
    assert shapes((cls_score, global_feat, logits)) == [(B, 5), (B, dim), n_logits]

    model.eval()
    with torch.no_grad():
        feat, logits = model(x)
        ref_feat, ref_logits, ref_maps = oracle(model, x)
        maps = model.forward_attention(x)
    torch.testing.assert_close(feat, ref_feat, rtol=1e-4, atol=1e-5)
    assert shapes([logits]) == [n_logits]
    for a, r in zip(logits or [], ref_logits or []):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)
    assert (maps["identity"] is None) == (fusion == "baseline")
    if loss is None:
        assert maps["unrelated"] is None and maps["related"] is None
    else:
        torch.testing.assert_close(maps["related"], ref_maps[1].view(B, T, *MAP))
    if neck == "bnneck":
        assert not model.bottleneck.bias.requires_grad and not model.bottleneck.bias.any()
        assert model.classifier.bias is None


def _kaiming_fan_in_std(conv: torch.nn.Module) -> float:
    return (2 / conv.weight[0].numel()) ** 0.5


def test_initialisation_bce():
    """The original's init: Kaiming normal (fan_in) convolutions with zero bias, N(0, 0.001)
    classifiers, BN weight 1 bias 0."""
    model = make(input_size=(128, 64))               # an 8x4 map: 32 positions
    assert model.classifier.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert torch.all(model.bottleneck.weight == 1) and not model.bottleneck.bias.any()
    convs = [model.attention_conv]
    for stream in (model.multi_attr_recoger1, model.multi_attr_recoger2):
        assert stream.classifier.weight.std().item() == pytest.approx(0.001, rel=0.3)
        assert not stream.classifier.bias.any()
        assert torch.all(stream.bn.weight == 1) and not stream.bn.bias.any()
        convs += [stream.conv, stream.attention_s_conv, stream.attention_t_conv]
    for conv in convs:
        assert conv.weight.std().item() == pytest.approx(_kaiming_fan_in_std(conv), rel=0.1)
        assert conv.weight.mean().abs().item() < 0.2 * _kaiming_fan_in_std(conv)
        assert not conv.bias.any()


def test_initialisation_mce():
    """The original's init, "mce": the shared conv/bn keep PyTorch's defaults; each attribute's
    attention_conv is Kaiming normal (fan_in), bias 0; attention_fusion all ones."""
    model = make(attribute_loss="mce")
    for stream in (model.multi_attr_recoger1, model.multi_attr_recoger2):
        conv = stream.conv                            # PyTorch default: U(-1/sqrt(fan_in), ..)
        bound = 1 / conv.weight[0].numel() ** 0.5
        assert conv.weight.abs().max().item() <= bound
        assert conv.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)
        assert conv.bias.abs().max().item() <= bound and conv.bias.abs().min().item() > 0
        assert torch.all(stream.bn.weight == 1) and not stream.bn.bias.any()
        heads = stream.attr_recog_modules
        att = torch.cat([h.attention_conv.weight.flatten() for h in heads])
        assert att.std().item() == pytest.approx(_kaiming_fan_in_std(heads[0].attention_conv),
                                                 rel=0.1)
        assert all(not h.attention_conv.bias.any() for h in heads)
        cls = torch.cat([h.classifier.weight.flatten() for h in heads])
        assert cls.std().item() == pytest.approx(0.001, rel=0.1)
        assert all(not h.classifier.bias.any() for h in heads)
    assert torch.all(model.attention_fusion1 == 1) and torch.all(model.attention_fusion2 == 1)
    assert model.attention_fusion2.shape == (1, 2, *MAP)


def test_attribute_losses_do_not_reach_the_backbone():
    for loss in ("bce", "mce"):
        model = make(attribute_loss=loss, input_size=SMALL).train()
        _, _, logits = model(clips(size=SMALL))
        sum(lg.square().sum() for lg in logits).backward()
        assert all(p.grad is None or not p.grad.any() for p in model.base.parameters())
        assert model.multi_attr_recoger1.conv.weight.grad.abs().sum() > 0
        assert model.multi_attr_recoger2.bn.weight.grad.abs().sum() > 0


def test_reid_losses_train_the_attribute_attention():
    model = make(input_size=SMALL).train()
    cls_score, global_feat, _ = model(clips(size=SMALL))
    (F.cross_entropy(cls_score, torch.tensor([0, 1])) + global_feat.square().mean()).backward()
    assert model.base.conv1.weight.grad.abs().sum() > 0
    for stream in (model.multi_attr_recoger1, model.multi_attr_recoger2):
        assert stream.attention_s_conv.weight.grad.abs().sum() > 0
        assert stream.attention_t_conv.weight.grad.abs().sum() > 0
        grad = stream.classifier.weight.grad   # only attribute losses train the classifier
        assert grad is None or not grad.any()
    mce = make(attribute_loss="mce", input_size=SMALL).train()
    cls_score, global_feat, _ = mce(clips(size=SMALL))
    global_feat.square().mean().backward()
    assert mce.attention_fusion1.grad.abs().sum() > 0
    assert mce.multi_attr_recoger2.attr_recog_modules[1].attention_conv.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_same_outputs_gradients_and_bn_statistics():
    plain = make(input_size=SMALL).train()
    ckpt = copy.deepcopy(plain)
    ckpt.grad_checkpoint = True
    x = clips(size=SMALL)
    results = []
    for model in (plain, ckpt):
        cls_score, global_feat, logits = model(x)
        (cls_score.square().sum() + global_feat.mean() + logits[1].sum()).backward()
        results.append((cls_score, global_feat,
                        {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                        {n: b.clone() for n, b in model.named_buffers()}))
    (c0, g0, grads0, bufs0), (c1, g1, grads1, bufs1) = results
    torch.testing.assert_close(c1, c0)
    torch.testing.assert_close(g1, g0)
    assert grads0.keys() == grads1.keys()
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], rtol=1e-5, atol=1e-6)
    for n in bufs0:   # running statistics updated once, not twice
        torch.testing.assert_close(bufs1[n], bufs0[n])


@pytest.mark.parametrize("attribute_loss", ["bce", "mce"])
def test_channels_last_same_outputs_and_gradients(attribute_loss):
    plain = make(input_size=SMALL, attribute_loss=attribute_loss)
    cl = make(input_size=SMALL, attribute_loss=attribute_loss, channels_last=True)
    assert cl.base.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.base.conv1.weight.is_contiguous()
    x = clips(size=SMALL)
    results = []
    for model in (plain, cl):
        cls_score, global_feat, logits = model.train()(x)
        (cls_score.square().sum() + global_feat.mean() + sum(a.sum() for a in logits)).backward()
        with torch.no_grad():
            feat, _ = model.eval()(x)
        results.append((cls_score, global_feat, logits, feat,
                        {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                        {n: b.clone() for n, b in model.named_buffers()}))
    (c0, g0, l0, f0, grads0, bufs0), (c1, g1, l1, f1, grads1, bufs1) = results
    for a, b in ((c1, c0), (g1, g0), (f1, f0), *zip(l1, l0, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert grads0.keys() == grads1.keys() and len(grads0) > 20
    for n in grads0:
        # other convolution kernels: float32 sums in another order, through BatchNorms
        scale = float(grads0[n].abs().max())
        torch.testing.assert_close(grads1[n], grads0[n], rtol=1e-3, atol=2e-3 * scale + 1e-6,
                                   msg=n)
    for n in bufs0:
        torch.testing.assert_close(bufs1[n], bufs0[n], rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.parametrize("attribute_loss", ["bce", "mce"])
def test_folded_batch_norms_same_features(attribute_loss):
    model = make(input_size=SMALL, attribute_loss=attribute_loss, channels_last=True)
    with torch.no_grad():
        model.train()(clips(seed=3, size=SMALL))        # non-trivial running statistics
    folded = fold_batch_norms(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())  # streams too
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.base.modules())
    assert folded.base.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.training and not folded.training               # the model is left as it is
    x = clips(size=SMALL)
    with torch.no_grad():
        (f0, l0), (f1, l1) = model.eval()(x), folded(x)
    torch.testing.assert_close(f1, f0, rtol=1e-4, atol=1e-5)
    for a, b in zip(l1, l0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_channels_last_setting_from_yml_and_command_line(tmp_path):
    assert get_cfg().MODEL.CHANNELS_LAST == "auto"
    for given, expected in (("True", True), ("false", False), ("auto", "auto"), ("AUTO", "auto")):
        assert load_cfg(None, ["MODEL.CHANNELS_LAST", given]).MODEL.CHANNELS_LAST == expected
    for given, expected in (("True", True), ("false", False), ("auto", "auto")):
        path = tmp_path / f"{given}.yml"
        path.write_text(f"MODEL:\n  CHANNELS_LAST: {given}\n")
        assert load_cfg(str(path)).MODEL.CHANNELS_LAST == expected
    with pytest.raises(UserError, match=r"MODEL.CHANNELS_LAST in the command line takes True, "
                                        r"False or auto; got '1'"):
        load_cfg(None, ["MODEL.CHANNELS_LAST", "1"])
    cfg = get_cfg()
    cfg.MODEL.CHANNELS_LAST = "on"
    with pytest.raises(UserError, match="MODEL.CHANNELS_LAST"):
        validate_cfg(cfg)


def test_channels_last_auto_per_device():
    assert resolve_channels_last("auto", "cpu") is True                 # 256x128: faster
    assert resolve_channels_last("auto", "cpu", (256, 128)) is True
    assert resolve_channels_last("auto", "cpu", (128, 64)) is False     # small frames: slower
    assert resolve_channels_last("auto", "cpu", [64, 32]) is False
    assert resolve_channels_last("auto", torch.device("cuda", 1), (64, 32)) is True
    assert resolve_channels_last("auto", "meta") is False          # not measured: off
    assert resolve_channels_last(False, "cuda") is False
    assert resolve_channels_last(True, "meta") is True
    cfg = get_cfg()
    cfg.MODEL.NAME, cfg.MODEL.PRETRAIN_CHOICE, cfg.INPUT.SIZE_TRAIN = "resnet18", "none", SMALL
    cfg.MODEL.DEVICE = "cpu"
    for setting, device, size, expected in (
            ("auto", None, [256, 128], True), ("auto", None, SMALL, False),
            ("auto", "meta", [256, 128], False), (False, None, [256, 128], False),
            (True, "meta", SMALL, True)):
        cfg.MODEL.CHANNELS_LAST, cfg.INPUT.SIZE_TRAIN = setting, size
        model = build_model(cfg, 5, None, device=device)
        assert model.channels_last is expected
        assert model.base.conv1.weight.is_contiguous(
            memory_format=torch.channels_last if expected else torch.contiguous_format)


def test_eval_is_deterministic_and_per_clip():
    model = make(input_size=SMALL).eval()
    x = clips(size=SMALL)
    with torch.no_grad():
        a, la = model(x)
        b, _ = model(x)
        single, ls = model(x[1:])
    assert torch.equal(a, b)
    torch.testing.assert_close(single, a[1:], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ls[0], la[0][1:], rtol=1e-4, atol=1e-5)


def test_attention_maps_and_input_size_check():
    model = make().eval()
    with torch.no_grad():
        maps = model.forward_attention(clips())
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "identity": (B, T, *MAP), "unrelated": (B, T, *MAP), "related": (B, T, *MAP)}
    assert all(0 <= v.min() and v.max() <= 1 for v in maps.values())
    assert model.multi_attr_recoger1.attention_t_conv.weight.shape == (6, 6, 3)
    with pytest.raises(UserError, match="SIZE_TEST"):
        model(clips(size=SMALL))
    no_attr = make(attr_lens=None, fusion_method="TA").eval()
    assert no_attr(clips(size=SMALL))[0].shape == (B, 512)   # any size without attributes


def test_bad_values_raise_user_errors():
    with pytest.raises(UserError, match="FUSION_METHOD"):
        make(fusion_method="LSTM")
    with pytest.raises(UserError, match="MODEL.NAME"):
        build_backbone("resnet51")
    with pytest.raises(UserError, match="LAST_STRIDE"):
        build_backbone("resnet18", last_stride=3)
    with pytest.raises(UserError, match="too small"), torch.device("meta"):
        make(backbone="se_resnet50", input_size=(2, 2))   # 1x1 before a 3x3 unpadded pool


# ------------------------------------------------------------------ backbones
@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_backbone_output_size_and_channels(name):
    stride = 2 if name.startswith("se") else 1
    with torch.device("meta"):
        net = build_backbone(name, last_stride=stride).eval()
        with torch.no_grad():
            out = net(torch.empty(1, 3, 251, 97))        # odd sizes: rounding of every layer
    assert tuple(out.shape[-2:]) == net.output_size((251, 97))
    assert out.shape[1] == net.out_channels == (512 if name in ("resnet18", "resnet34") else 2048)
    assert net.output_size((256, 128)) == ((16, 8) if stride == 1 else (8, 4))


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_resnet_keys_equal_torchvision(name):
    import torchvision

    with torch.device("meta"):
        ours = build_backbone(name).state_dict()
        theirs = getattr(torchvision.models, name)(weights=None).state_dict()
    theirs = {k: v.shape for k, v in theirs.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.items()} == theirs


def test_senet_and_ibn_key_names_and_sizes():
    # parameter counts of the pretrainedmodels / IBN-Net releases without their classifier
    expected = {"se_resnet50": 26039024, "se_resnet101": 47277872, "se_resnet152": 64772848,
                "se_resnext50": 25510896, "se_resnext101": 46906416, "senet154": 113039984,
                "resnet50_ibn_a": 23508032}
    for name, count in expected.items():
        with torch.device("meta"):
            sd = build_backbone(name).state_dict()
        assert sum(v.numel() for k, v in sd.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                   ) == count, name
    with torch.device("meta"):
        se = build_backbone("senet154").state_dict()
        ibn = build_backbone("resnet50_ibn_a").state_dict()
    assert {"layer0.conv1.weight", "layer0.conv3.weight", "layer0.bn3.running_var",
            "layer1.0.se_module.fc1.weight", "layer1.0.se_module.fc2.bias",
            "layer2.0.downsample.0.weight"} <= se.keys()
    assert se["layer2.0.downsample.0.weight"].shape == (512, 256, 3, 3)
    assert {"layer1.0.bn1.IN.weight", "layer3.5.bn1.BN.running_mean",
            "layer4.0.bn1.running_mean"} <= ibn.keys()
    assert ibn["layer1.0.bn1.IN.weight"].shape == (32,)


@pytest.mark.parametrize("name", ["se_resnext50", "resnet50_ibn_a"])
def test_small_forward_of_other_families(name):
    model = make(backbone=name, input_size=SMALL).train()
    cls_score, global_feat, logits = model(clips(size=SMALL))
    assert shapes((cls_score, global_feat, logits)) == [(B, 5), (B, 6144), [(B, 7), (B, 6)]]
    assert torch.isfinite(global_feat).all()
