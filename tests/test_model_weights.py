"""Weights: checkpoint compatibility with the original, ImageNet and whole-model loading."""

import logging
import urllib.error
from pathlib import Path

import pytest
import torch

from config import get_cfg, merge_overrides
from modeling import VideoBaseline, build_model, load_backbone_weights, load_model_weights
from tests.helpers import DUKE_ATTR_LENS, MARS_ATTR_LENS, SHARED
from utils.errors import UserError

REFERENCE = SHARED / "reference"
MARS, DUKE = MARS_ATTR_LENS, DUKE_ATTR_LENS
SMALL = [[3, 2], [4, 2]]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def reference() -> Path:
    """The original's state-dict key lists (../shared/reference); skip when absent."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference key lists not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture
def model_log(caplog):
    """Records of the "reid.model" logger (whatever the propagation settings of "reid"; a
    record can then arrive twice)."""
    logger = logging.getLogger("reid.model")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="reid.model")
    yield caplog
    logger.removeHandler(caplog.handler)


def parse_reference(path: Path) -> list[tuple[str, list[int]]]:
    entries = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            entries.append((key, [int(v) for v in shape.strip("[] ").split(",") if v.strip()]))
    return entries


def tiny(**kw) -> VideoBaseline:
    args = {"num_classes": 6, "backbone": "resnet18", "attr_lens": SMALL, "input_size": (32, 16)}
    args.update(kw)
    return VideoBaseline(**args)


def small_cfg(**overrides):
    """A resnet18 config at 32x16, through the project's own merge (not yet validated)."""
    cfg = get_cfg()
    opts = {"MODEL.NAME": "resnet18", "INPUT.SIZE_TRAIN": [32, 16], "INPUT.SIZE_TEST": [32, 16],
            **overrides}
    merge_overrides(cfg, [x for k, v in opts.items() for x in (k, str(v))])
    return cfg


@pytest.mark.parametrize("loss", ["bce", "mce"])
def test_state_dict_equals_the_original(reference, loss):
    entries = parse_reference(reference / f"video_baseline_state_dict_resnet50_attr_ta_{loss}.txt")
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN = [256, 128]
    cfg.DATASETS.ATTRIBUTE_LOSS = loss
    cfg.MODEL.PRETRAIN_CHOICE = "none"
    with torch.device("meta"):
        model = build_model(cfg, 625, MARS)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    if loss == "mce":   # the mce list leaves out the base.* keys ("identical to the bce file")
        ours = [e for e in ours if not e[0].startswith("base.")]
    assert ours == entries
    header = (reference / f"video_baseline_state_dict_resnet50_attr_ta_{loss}.txt").read_text()
    total = int(header.split("total parameters:")[1].split()[0])
    assert sum(p.numel() for p in model.parameters()) == total


def test_imagenet_weights_from_a_torchvision_file(tmp_path, model_log):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    cfg = small_cfg(**{"MODEL.PRETRAIN_PATH": str(path)})
    model = build_model(cfg, 6, SMALL)
    ours = model.base.state_dict()
    assert ours.keys() == {k for k in state if not k.startswith("fc.")}
    for k, v in ours.items():
        assert torch.equal(v, state[k]), k
    lines = {r.getMessage() for r in model_log.records if "into the" in r.getMessage()}
    assert len(lines) == 1   # one grouped line
    assert "skipped classifier: fc.weight, fc.bias; missing: none; unexpected: none" in lines.pop()


def test_imagenet_weights_in_other_formats(tmp_path, model_log):
    # IBN-Net style: {"state_dict": ...} with DataParallel "module." prefixes, a classifier,
    # and no BatchNorm step counters
    src = tiny(backbone="resnet50_ibn_a", attr_lens=None).base.state_dict()
    state = {"module." + k: v + 1 for k, v in src.items() if not k.endswith("num_batches_tracked")}
    state["module.fc.weight"] = torch.zeros(1000, 2048)
    torch.save({"state_dict": state, "epoch": 100}, tmp_path / "ibn.pth")
    target = tiny(backbone="resnet50_ibn_a", attr_lens=None)
    load_backbone_weights(target.base, "resnet50_ibn_a", str(tmp_path / "ibn.pth"))
    for k, v in target.base.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, src[k] + 1), k
    assert "missing: none" in model_log.records[-1].getMessage()
    # a SENet file with last_linear into a different backbone: clear error
    torch.save({"layer0.conv1.weight": torch.zeros(64, 3, 7, 7),
                "last_linear.weight": torch.zeros(1000, 2048)}, tmp_path / "se.pth")
    with pytest.raises(UserError, match="share no parameter name"):
        load_backbone_weights(target.base, "resnet50_ibn_a", str(tmp_path / "se.pth"))
    # right names, wrong sizes (a resnet18 file into a resnet50)
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(UserError, match="shape differences.*layer1.0.conv1.weight"):
        load_backbone_weights(target.base, "resnet50", str(tmp_path / "r18.pth"))
    with pytest.raises(UserError, match="not found"):
        load_backbone_weights(target.base, "resnet50", str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("file_net, model_net, kind", [("resnet18", "resnet34", "missing"),
                                                        ("resnet34", "resnet18", "unexpected")])
def test_imagenet_weights_of_another_depth_fail_unless_partial(tmp_path, model_log, file_net,
                                                               model_net, kind):
    import torchvision

    state = getattr(torchvision.models, file_net)(weights=None).state_dict()
    torch.save(state, tmp_path / "w.pth")
    opts = {"MODEL.NAME": model_net, "MODEL.PRETRAIN_PATH": str(tmp_path / "w.pth")}
    with pytest.raises(UserError) as e:
        build_model(small_cfg(**opts), 6, None)
    msg = str(e.value)
    extra = "layer1.2.conv1.weight"                              # resnet34 has 3 blocks in layer1
    assert f"do not cover MODEL.NAME {model_net}" in msg and f"{kind} keys ({extra}" in msg
    assert f"The file is {file_net} weights" in msg and "MODEL.PRETRAIN_PARTIAL True" in msg
    assert "fc." not in msg and "num_batches_tracked" not in msg   # skipped silently as before
    model = build_model(small_cfg(**opts, **{"MODEL.PRETRAIN_PARTIAL": True}), 6, None)
    ours = model.base.state_dict()
    assert torch.equal(ours["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    (line,) = {r.getMessage() for r in model_log.records if "into the" in r.getMessage()}
    assert f"{kind}: {extra}" in line
    assert [r.levelname for r in model_log.records if "into the" in r.getMessage()][0] == "WARNING"


def test_imagenet_without_a_path(monkeypatch):
    base = tiny(attr_lens=None).base
    with pytest.raises(UserError, match="PRETRAIN_PATH"):
        load_backbone_weights(base, "se_resnet50", "")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="Could not download.*resnet18.*MODEL.PRETRAIN_PATH"):
        load_backbone_weights(base, "resnet18", "")


def test_self_loads_the_originals_dataparallel_file(tmp_path):
    src = tiny()
    torch.nn.init.normal_(src.classifier.weight)
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "orig.pth")
    cfg = small_cfg(**{"MODEL.PRETRAIN_CHOICE": "self",
                       "MODEL.PRETRAIN_PATH": str(tmp_path / "orig.pth")})
    cfg.DATASETS.NAME = "mars"
    model = build_model(cfg, 6, SMALL)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x = torch.randn(2, 2, 3, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[0], src.eval()(x)[0])
    with pytest.raises(UserError, match="PRETRAIN_PATH"):
        build_model(small_cfg(**{"MODEL.PRETRAIN_CHOICE": "self"}), 6, SMALL)


def test_the_originals_ibn_a_checkpoint_loads_without_its_backbone_classifier(model_log):
    """The IBN-a checkpoint quirk: the original's file carries base.fc.*; exactly these two keys
    are dropped, with one log line, and a hint never asks to check a MODEL.NAME that is right."""
    src = tiny(backbone="resnet50_ibn_a", attr_lens=None)
    torch.nn.init.normal_(src.classifier.weight)
    state = {"module." + k: v for k, v in src.state_dict().items()}
    state["module.base.fc.weight"] = torch.zeros(1000, 2048)
    state["module.base.fc.bias"] = torch.zeros(1000)
    dst = tiny(backbone="resnet50_ibn_a", attr_lens=None)
    load_model_weights(dst, state)
    assert torch.equal(dst.classifier.weight, src.classifier.weight)
    assert "base.fc" not in " ".join(dst.state_dict())
    dropped = [r.getMessage() for r in model_log.records if "Dropped" in r.getMessage()]
    assert len(set(dropped)) == 1 and "base.fc.weight, base.fc.bias" in dropped[0]
    # any other extra key still fails, and the right backbone is not blamed
    state["module.base.extra"] = torch.zeros(1)
    with pytest.raises(UserError) as e:
        load_model_weights(dst, state)
    assert "base.extra" in str(e.value) and "MODEL.NAME" not in str(e.value)
    # a different classifier: the hint is about the identities, not the backbone
    with pytest.raises(UserError) as e:
        load_model_weights(tiny(backbone="resnet50_ibn_a", attr_lens=None, num_classes=7),
                           {k: v for k, v in state.items() if k != "module.base.extra"})
    assert "6-identity classifier" in str(e.value) and "MODEL.NAME" not in str(e.value)


def test_our_checkpoint_format_and_evaluate_only_skips_imagenet(tmp_path):
    src = tiny()
    dst = tiny()
    load_model_weights(dst, {"model": src.state_dict(), "epoch": 3, "optimizer": {}})
    assert torch.equal(dst.classifier.weight, src.classifier.weight)
    # EVALUATE_ONLY: no ImageNet download attempt even with an empty PRETRAIN_PATH
    cfg = small_cfg(**{"MODEL.NAME": "se_resnext50", "EVALUATE_ONLY": True})
    assert build_model(cfg, 6, SMALL).feat_dim == 3 * 2048


def test_mismatched_checkpoint_lists_keys_and_the_fitting_config():
    model = tiny(attr_lens=MARS)
    duke = tiny(attr_lens=DUKE).state_dict()
    with pytest.raises(UserError) as e:
        load_model_weights(model, duke)
    msg = str(e.value)
    assert "shape differences" in msg and "multi_attr_recoger2.classifier.weight" in msg
    assert "33-way ID-relevant attribute classifier" in msg and "DATASETS.NAME" in msg

    mce = tiny(attribute_loss="mce").state_dict()
    with pytest.raises(UserError) as e:
        load_model_weights(tiny(), mce)
    msg = str(e.value)
    assert "missing keys" in msg and "multi_attr_recoger1.attention_s_conv.weight" in msg
    assert "unexpected keys" in msg and "in all" in msg   # long lists are cut, with counts
    assert "ATTRIBUTE_LOSS mce" in msg

    plain = tiny(attr_lens=None, fusion_method="baseline", neck="no").state_dict()
    with pytest.raises(UserError) as e:
        load_model_weights(tiny(), plain)
    msg = str(e.value)
    for hint in ("ATTR_RECOG_ON False", "FUSION_METHOD baseline", "NECK no"):
        assert hint in msg

    other = tiny(backbone="resnet34", attr_lens=None).state_dict()
    with pytest.raises(UserError, match="backbone is resnet34, not MODEL.NAME resnet18: set "
                                        "MODEL.NAME resnet34"):
        load_model_weights(tiny(attr_lens=None), other)
    # a resnet34 trunk (BasicBlock, 6 blocks in layer3) is not mistaken for a resnet50 one
    with torch.device("meta"):
        r50 = tiny(backbone="resnet50", attr_lens=None)
    with pytest.raises(UserError, match="backbone is resnet34, not MODEL.NAME resnet50"):
        load_model_weights(r50, other)
    with pytest.raises(UserError, match="no state dict"):
        load_model_weights(model, {"epoch": 1})
