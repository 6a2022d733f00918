"""Backbone forwards against independent references: torchvision's ResNets, hand-written SE
and IBN-a blocks. They need no file and catch a missing residual, gate, norm or stem ReLU."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from config import get_cfg
from modeling import build_backbone, build_model
from modeling.backbones.resnet_ibn_a import IBN
from modeling.backbones.senet import SEResNetBottleneck, SEResNeXtBottleneck

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_norms(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial affine and running statistics for every norm layer (eval mode uses them)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def torchvision_trunk(tv: torchvision.models.ResNet, stem_relu: bool) -> nn.Sequential:
    """torchvision's ResNet without pooling and classifier; optionally without its stem ReLU."""
    stem = [tv.conv1, tv.bn1] + ([tv.relu] if stem_relu else []) + [tv.maxpool]
    return nn.Sequential(*stem, tv.layer1, tv.layer2, tv.layer3, tv.layer4).eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("stem_relu", [True, False])
def test_resnet_trunk_equals_torchvision(name, stem_relu):
    """MODEL.STEM_RELU True is torchvision's ResNet; False (the original's, the default) is
    torchvision's with the stem ReLU removed (docs/behaviour.md#stem-quirk)."""
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None)
    randomise_norms(tv)
    ours = build_backbone(name, last_stride=2, stem_relu=stem_relu).eval()
    ours.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), torchvision_trunk(tv, stem_relu)(x), rtol=1e-5,
                                   atol=1e-5)
        # the two stems really differ on this input (the comparison above can tell them apart)
        assert not torch.allclose(ours(x), torchvision_trunk(tv, not stem_relu)(x), rtol=1e-3,
                                  atol=1e-3)


def test_stem_relu_key_reaches_the_plain_resnets_only():
    cfg = get_cfg()
    cfg.MODEL.PRETRAIN_CHOICE = "none"
    cfg.INPUT.SIZE_TRAIN = [64, 32]
    assert cfg.MODEL.STEM_RELU is False
    assert build_model(cfg, 3, None).base.stem_relu is False
    cfg.MODEL.STEM_RELU = True
    assert build_model(cfg, 3, None).base.stem_relu is True
    # IBN-a keeps its stem ReLU whatever the key says (docs/behaviour.md#stem-quirk)
    assert build_backbone("resnet50_ibn_a", stem_relu=False).stem_relu is True


def se_block_reference(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An SE bottleneck written out: three conv-BN(-ReLU), squeeze, excite, gate, residual."""

    def bn(m: nn.BatchNorm2d, y: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0, m.eps)

    out = F.relu(bn(block.bn1, block.conv1(x)))
    out = F.relu(bn(block.bn2, block.conv2(out)))
    out = bn(block.bn3, block.conv3(out))
    se = block.se_module
    squeeze = out.mean((2, 3), keepdim=True)
    gate = torch.sigmoid(se.fc2(F.relu(se.fc1(squeeze))))
    identity = x if block.downsample is None else block.downsample(x)
    return F.relu(out * gate + identity)


@pytest.mark.parametrize("block_type,groups", [(SEResNetBottleneck, 1),
                                               (SEResNeXtBottleneck, 32)])
def test_se_block_equals_a_hand_written_forward(block_type, groups):
    torch.manual_seed(0)
    downsample = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
    block = block_type(64, 64, groups, 16, 1, downsample)
    randomise_norms(block)
    with torch.no_grad():   # gates far from constant, so that removing them shows
        block.se_module.fc2.weight.mul_(20)
    block.eval()
    x = torch.randn(2, 64, 8, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(block(x), se_block_reference(block, x), rtol=1e-5,
                                   atol=1e-5)


def test_ibn_equals_a_hand_written_forward():
    """IBN-a: instance norm (affine, per sample) on the first half, batch norm on the rest."""
    torch.manual_seed(0)
    ibn = IBN(64)
    randomise_norms(ibn)
    ibn.eval()
    x = 3 * torch.randn(2, 64, 8, 4, generator=torch.Generator().manual_seed(1)) + 1
    first, rest = x[:, :32], x[:, 32:]
    mean = first.mean((2, 3), keepdim=True)
    var = first.var((2, 3), unbiased=False, keepdim=True)
    inorm = ((first - mean) / (var + ibn.IN.eps).sqrt() * ibn.IN.weight[:, None, None]
             + ibn.IN.bias[:, None, None])
    bnorm = ((rest - ibn.BN.running_mean[:, None, None])
             / (ibn.BN.running_var[:, None, None] + ibn.BN.eps).sqrt()
             * ibn.BN.weight[:, None, None] + ibn.BN.bias[:, None, None])
    with torch.no_grad():
        torch.testing.assert_close(ibn(x), torch.cat([inorm, bnorm], 1), rtol=1e-5, atol=1e-5)


def test_ibn_a_trunk_uses_ibn_in_stages_1_to_3_only():
    trunk = build_backbone("resnet50_ibn_a", last_stride=1)
    for i, stage in enumerate([trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4]):
        for block in stage:
            assert isinstance(block.bn1, IBN) == (i < 3)
