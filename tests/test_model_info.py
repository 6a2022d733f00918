"""Parameter and FLOP counts (tools.model_info), against independent counts."""

import re

import pytest
import torch

from config import load_cfg
from data.datasets import DATASETS, PRID2011, DukeVideo, Mars
from modeling import VideoBaseline, build_model
from tools import model_info
from tools.model_info import count_flops, count_parameters, dataset_facts
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")
MARS_ATTR_LENS = Mars.attribute_schema.attr_lens


SIZES = ["INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]"]

def meta_model(**kw) -> VideoBaseline:
    with torch.device("meta"):
        return VideoBaseline(625, **kw)


def numel(params) -> int:
    return sum(p.numel() for p in params)


def test_paper_model_counts():
    model = meta_model(backbone="resnet50", attr_lens=MARS_ATTR_LENS, input_size=(256, 128))
    flops = count_flops(model, (1, 4, 3, 256, 128))
    # Expected: about 41 GFLOPs = 20.5 G multiply-accumulates, 32.4 in the ResNet-50, 8.6 in the
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
    assert params["trainable"] == params["total"] - 6144   # the frozen BNNeck bias


def test_parameter_parts_match_the_modules():
    model = VideoBaseline(7, "resnet18", attr_lens=[[3, 2], [4, 2]], input_size=(32, 16))
    streams = [model.multi_attr_recoger1, model.multi_attr_recoger2]
    params = count_parameters(model)
    assert params["total"] == numel(model.parameters())
    assert params["trainable"] == numel(p for p in model.parameters() if p.requires_grad)
    assert params["trainable"] == params["total"] - model.bottleneck.bias.numel()  # BNNeck bias
    assert params["backbone"] == numel(model.base.parameters())
    assert params["attribute_streams"] == numel(p for s in streams for p in s.parameters())
    assert params["identity_head"] == (params["total"] - params["backbone"]
                                       - params["attribute_streams"])


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


def test_dataset_facts_are_the_dataset_classes():
    assert dataset_facts("mars") == (625, MARS_ATTR_LENS)
    assert dataset_facts("duke") == (702, DukeVideo.attribute_schema.attr_lens)
    assert dataset_facts("prid") == (PRID2011.standard_train_pids, None)
    for name, cls in DATASETS.items():
        if cls.standard_train_pids is not None:
            assert dataset_facts(name)[0] == cls.standard_train_pids


def test_the_folder_dataset_needs_num_classes_and_reads_its_schema(tmp_path, capsys):
    from tools.synthetic import write_synthetic_dataset

    with pytest.raises(UserError, match="DATASETS.NAME folder has no standard split.*"
                                        "--num-classes"):
        dataset_facts("folder", str(tmp_path))
    assert dataset_facts("folder", str(tmp_path), 7) == (7, None)      # no attributes.yml
    root = write_synthetic_dataset(tmp_path / "tracklets", fmt="folder", ids=4, tracklets=2,
                                   frames=2, size=(32, 16))
    assert dataset_facts("folder", str(root), 7) == (7, MARS_ATTR_LENS)
    assert model_info.main(["DATASETS.NAME", "folder", "DATASETS.ROOT_DIR", str(root),
                            "MODEL.NAME", "resnet18", *SIZES]) == 2
    assert "--num-classes" in capsys.readouterr().err
    assert model_info.main(["--num-classes", "7", "DATASETS.NAME", "folder", "DATASETS.ROOT_DIR",
                            str(root), "MODEL.NAME", "resnet18", *SIZES]) == 0
    assert "7 identities" in capsys.readouterr().out


def test_command_line_prints_the_models_counts(capsys):
    opts = ["MODEL.NAME", "resnet18", *SIZES, "DATASETS.NAME", "duke"]
    assert model_info.main(opts) == 0
    out = capsys.readouterr().out
    cfg = load_cfg(None, opts)
    model = build_model(cfg, 702, DukeVideo.attribute_schema.attr_lens, load_pretrained=False)
    flops = count_flops(model, (1, cfg.DATASETS.SEQ_LEN, 3, 64, 32))
    assert "; 702 identities" in out and model.classifier.out_features == 702
    assert re.search(rf"Parameters: {numel(model.parameters()) / 1e6:.2f} M", out)
    assert f"{flops['flops'] / 1e9:.2f} GFLOPs = {flops['macs'] / 1e9:.2f} G multiply-acc" in out
    assert re.search(rf"attribute_streams +{flops['attribute_streams'] / 1e9:.2f} GFLOPs", out)
    assert model_info.build_parser().format_usage().startswith("usage: python -m tools.model_info")


def test_command_line_options(capsys):
    for option in ("--num-classes", "--num_classes"):   # the spelling of tools.visualize, too
        assert model_info.main(["MODEL.NAME", "resnet18", option, "9"]) == 0
        assert "; 9 identities" in capsys.readouterr().out
    assert model_info.main(["MODEL.NAME", "resnet18", "DATASETS.NAME", "prid"]) == 0
    assert f"; {PRID2011.standard_train_pids} identities" in capsys.readouterr().out
    assert model_info.main(["MODEL.NAME", "resnet5"]) == 2
    assert "MODEL.NAME" in capsys.readouterr().err
