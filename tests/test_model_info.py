"""Parameter and FLOP counts (utils.model_info)."""

import pytest
import torch

from modeling import VideoBaseline
from utils import model_info
from utils.model_info import MARS_ATTR_LENS, count_flops, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def meta_model(**kw) -> VideoBaseline:
    with torch.device("meta"):
        return VideoBaseline(625, **kw)


def test_paper_model_counts():
    model = meta_model(backbone="resnet50", attr_lens=MARS_ATTR_LENS, input_size=(256, 128))
    flops = count_flops(model, (1, 4, 3, 256, 128))
    # SPEC: about 41 GFLOPs = 20.5 G multiply-accumulates, 32.4 in the ResNet-50, 8.6 in the
    # two attribute streams
    assert flops["flops"] == pytest.approx(41.08e9, rel=1e-3)
    assert flops["macs"] == flops["flops"] / 2
    assert flops["backbone"] == pytest.approx(32.43e9, rel=1e-3)
    assert flops["attribute_streams"] == pytest.approx(8.63e9, rel=1e-3)
    assert flops["identity_head"] == pytest.approx(
        flops["flops"] - flops["backbone"] - flops["attribute_streams"])
    # the streams' cost is their 1x1 conv: 2 streams x 4 frames x 2 x C x C x h*w
    assert flops["attribute_streams"] == pytest.approx(2 * 4 * 2 * 2048 * 2048 * 128, rel=0.01)
    params = count_parameters(model)
    assert params["total"] == 36050309   # the original's count (reference/*_bce.txt)
    assert params["backbone"] == 23508032
    assert params["total"] == params["backbone"] + params["identity_head"] + params[
        "attribute_streams"]
    assert params["trainable"] == params["total"] - 6144   # the frozen BNNeck bias


def test_backbone_flops_match_torchvision_figures():
    # torchvision's published ImageNet cost of ResNet-50 / ResNet-18 (GMACs at 224x224, with
    # the 1000-way classifier, 2048*1000 / 512*1000 MACs)
    for name, gmacs, fc in (("resnet50", 4.089, 2048 * 1000), ("resnet18", 1.814, 512 * 1000)):
        model = meta_model(backbone=name, last_stride=2, fusion_method="baseline",
                           input_size=(224, 224)).train()
        flops = count_flops(model, (1, 1, 3, 224, 224))
        assert (flops["backbone"] / 2 + fc) / 1e9 == pytest.approx(gmacs, abs=0.001)
        assert model.training   # mode restored


def test_count_flops_on_real_tensors_equals_meta():
    with torch.device("meta"):
        meta = VideoBaseline(5, "resnet18", attr_lens=[[3, 2], [4, 2]], input_size=(32, 16))
    real = VideoBaseline(5, "resnet18", attr_lens=[[3, 2], [4, 2]], input_size=(32, 16))
    assert count_flops(real, (1, 2, 3, 32, 16)) == count_flops(meta, (1, 2, 3, 32, 16))


def test_command_line(capsys):
    assert model_info.main(["MODEL.NAME", "resnet18", "INPUT.SIZE_TRAIN", "[64, 32]",
                            "DATASETS.NAME", "duke"]) == 0
    out = capsys.readouterr().out
    assert "702 identities" in out and "GFLOPs" in out and "multiply-accumulates" in out
    assert "attribute_streams" in out
    assert model_info.main(["MODEL.NAME", "resnet5"]) == 2
    assert "MODEL.NAME" in capsys.readouterr().err
