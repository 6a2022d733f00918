"""VideoBaseline: backbone, temporal attention (TA), attribute streams (ASTA) and BNNeck head.

Reference: Chen et al., "Attribute-aware Identity-hard Triplet Loss for Video-based Person
Re-identification", arXiv 2006.07597. Behaviour: docs/behaviour.md#model.

The temporal fusion methods and the necks are the entries of :data:`FUSION_METHODS`
(MODEL.FUSION_METHOD -> :class:`Fusion`) and :data:`NECKS` (MODEL.NECK -> :class:`Neck`).

Example:
    >>> model = VideoBaseline(625, "resnet18", attr_lens=[[5, 6], [9, 2]], input_size=(64, 32))
    >>> cls_score, global_feat, attr_logits = model(torch.randn(2, 4, 3, 64, 32))
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from utils.errors import UserError
from utils.registry import Registry

from .attribute_heads import AttributeStreamBCE, AttributeStreamMCE, classifier_init, kaiming_init
from .backbones import build_backbone

logger = logging.getLogger("reid.model")

ATTRIBUTE_LOSSES = ("bce", "mce")
NECK_FEATS = ("before", "after")


# ------------------------------------------------------------------ MODEL.FUSION_METHOD
@dataclass(frozen=True)
class Fusion:
    """A temporal fusion method (MODEL.FUSION_METHOD): how a frame's map becomes its feature.

    The frame feature is k blocks of C channels, block j the average of the backbone map F
    (C, h, w) weighted by the j-th weight map; the clip feature is the mean over its frames.

    Attributes:
        weights: ``weights(a_id, attr_maps) -> (B*T, k, h, w)``, the k weight maps from the
            identity attention map ``a_id`` (B*T, 1, h, w: sigmoid of the model's
            ``attention_conv``) and the attribute streams' maps (two (B*T, 1, h, w), None
            without attributes). None: the plain spatial average, and no ``attention_conv``.
        blocks: k, so the feature has ``blocks * C`` dimensions.
        attributes: ``weights`` reads the attribute maps (in "mce" mode the model then learns
            how to combine the attributes' maps into their group's map).
        fallback: the method used, with a warning, by a model without attribute streams when
            ``attributes`` is True; None: an error instead.
    """

    weights: Callable[[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None],
                      torch.Tensor] | None
    blocks: int = 1
    attributes: bool = False
    fallback: str | None = None


def _identity_weights(a_id: torch.Tensor, attr_maps: tuple | None) -> torch.Tensor:
    """TA: the identity attention map alone."""
    return a_id


def _attribute_weights(a_id: torch.Tensor, attr_maps: tuple) -> torch.Tensor:
    """ATTR_TA: concat(F', A1*F', A2*F') pooled == F pooled under these 3 weight maps."""
    return torch.cat([a_id, a_id * attr_maps[0], a_id * attr_maps[1]], 1)


FUSION_METHODS: Registry[Fusion] = Registry("MODEL.FUSION_METHOD", "temporal fusion method")
FUSION_METHODS.register("baseline", Fusion(None))                # no attention
FUSION_METHODS.register("TA", Fusion(_identity_weights))         # temporal attention
FUSION_METHODS.register("ATTR_TA", Fusion(_attribute_weights, blocks=3, attributes=True,
                                          fallback="TA"))         # the paper's (ASTA)


# ------------------------------------------------------------------ MODEL.NECK
@dataclass(frozen=True)
class Neck:
    """A head between the pooled clip feature and the identity classifier (MODEL.NECK).

    Attributes:
        build: ``build(model, feat_dim, num_classes)`` adds the head's modules to the model,
            the identity ``classifier`` (an ``nn.Linear(feat_dim, num_classes)``) among them;
            their names are the keys of the checkpoints.
        reset: ``reset(model)``: the initialisation of the head's own modules (the model
            initialises the classifier).
        forward: ``forward(model, g) -> feat``, the feature after the head from the pooled
            feature g (B, feat_dim): the classifier's input, and the evaluation feature with
            TEST.NECK_FEAT "after".
    """

    build: Callable[[nn.Module, int, int], None]
    reset: Callable[[nn.Module], None]
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _build_bnneck(model: nn.Module, feat_dim: int, num_classes: int) -> None:
    model.bottleneck = nn.BatchNorm1d(feat_dim)
    model.bottleneck.bias.requires_grad_(False)  # BNNeck: frozen zero bias
    model.classifier = nn.Linear(feat_dim, num_classes, bias=False)


def _reset_bnneck(model: nn.Module) -> None:
    nn.init.ones_(model.bottleneck.weight)
    nn.init.zeros_(model.bottleneck.bias)


def _bnneck(model: nn.Module, g: torch.Tensor) -> torch.Tensor:
    return model.bottleneck(g)


def _build_no_neck(model: nn.Module, feat_dim: int, num_classes: int) -> None:
    model.classifier = nn.Linear(feat_dim, num_classes)


def _reset_nothing(model: nn.Module) -> None:
    pass


def _no_neck(model: nn.Module, g: torch.Tensor) -> torch.Tensor:
    return g


NECKS: Registry[Neck] = Registry("MODEL.NECK", "neck")
NECKS.register("bnneck", Neck(_build_bnneck, _reset_bnneck, _bnneck))   # BatchNorm, then the
NECKS.register("no", Neck(_build_no_neck, _reset_nothing, _no_neck))    # bias-free classifier


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{key} '{value}' is not one of {', '.join(allowed)}.")


def feature_map_size(backbone: nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the backbone map for frames of ``input_size`` (H, W).

    Raises:
        UserError: the input is too small for the backbone.
    """
    try:
        return backbone.output_size(input_size)
    except ValueError as e:
        raise UserError(f"Input size {list(input_size)} (INPUT.SIZE_TRAIN) is too small for the "
                        f"backbone: {e}.") from None


class _KeepNormStats:
    """Restore BatchNorm running statistics on exit (the recomputation pass of checkpointing).

    Recomputing a stage in the backward pass runs its BatchNorms in training mode a second
    time; without this their running mean/var would be updated twice per step.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> None:
        self.saved = [(buf, buf.clone()) for m in self.module.modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm)
                      for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
                      if buf is not None]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for buf, value in self.saved:
                buf.copy_(value)
        self.saved = []


class VideoBaseline(nn.Module):
    """Video re-ID model of the paper (ARCH video_baseline).

    Frames are folded into the batch for the backbone; the identity branch applies the TA
    attention; with attributes, two streams (ID-irrelevant, ID-relevant) recognise attributes
    from the detached backbone map and their attention maps re-weight the identity map
    ("ATTR_TA": concat(F', A1*F', A2*F')); space and time are averaged; BNNeck head.

    Args:
        num_classes: number of training identities.
        backbone: MODEL.NAME, a name of ``modeling.backbones.BACKBONES``.
        last_stride: MODEL.LAST_STRIDE.
        fusion_method: a name of :data:`FUSION_METHODS`: "baseline" (no attention), "TA" or
            "ATTR_TA" (needs attributes; falls back to "TA" with a warning without them).
        neck: a name of :data:`NECKS`: "bnneck" or "no".
        neck_feat: eval feature "after" (BNNeck output) or "before" (pooled feature).
        attr_lens: class counts per attribute of the two groups, e.g. MARS
            ``[[5,6,2,2,2,2,2,2,2],[9,10,4,2,2,2,2,2,2,2,2,2]]``; None: no attribute streams.
        attribute_loss: "bce" (one multi-label head per group) or "mce" (one head per attribute).
        input_size: (H, W) of training frames; fixes h*w of the attribute attention layers.
        grad_checkpoint: recompute the backbone stages in the backward pass (less memory).
        channels_last: channels_last memory format for the convolutions.
        stem_relu: MODEL.STEM_RELU: a ReLU in the plain ResNets' stem (torchvision's
            architecture); False is the original's stem without it.

    Forward ``x`` (B, T, 3, H, W):
        train -> (cls_score (B, num_classes), global_feat (B, D) before the BNNeck, attr_logits);
        eval -> (feat (B, D), attr_logits). attr_logits: "bce" [(B, sum(attr_lens[0])),
        (B, sum(attr_lens[1]))]; "mce" one (B, n_k) per attribute in CSV order; None without
        attributes. D = ``feat_dim`` (3C for "ATTR_TA", else C).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", last_stride: int = 1,
                 fusion_method: str = "ATTR_TA", neck: str = "bnneck", neck_feat: str = "after",
                 attr_lens: list[list[int]] | None = None, attribute_loss: str = "bce",
                 input_size: tuple[int, int] = (256, 128), grad_checkpoint: bool = False,
                 channels_last: bool = False, stem_relu: bool = False) -> None:
        super().__init__()
        fusion = FUSION_METHODS.get(fusion_method)
        _check_choice("DATASETS.ATTRIBUTE_LOSS", attribute_loss, ATTRIBUTE_LOSSES)
        head = NECKS.get(neck)
        _check_choice("TEST.NECK_FEAT", neck_feat, NECK_FEATS)
        if attr_lens is not None and (len(attr_lens) != 2 or not all(attr_lens)):
            raise UserError(f"attr_lens must hold two non-empty groups of class counts, got "
                            f"{attr_lens!r}.")
        if fusion.attributes and attr_lens is None:
            needs = (f"FUSION_METHOD {fusion_method} needs the attribute streams (ATTR_RECOG_ON "
                     "True and a dataset with attributes)")
            if fusion.fallback is None:
                raise UserError(f"MODEL.{needs}.")
            logger.warning("%s; using %s.", needs, fusion.fallback)
            fusion_method, fusion = fusion.fallback, FUSION_METHODS.get(fusion.fallback)
        self.fusion_method = fusion_method
        self.fusion = fusion          # the Fusion of fusion_method
        self.head = head              # the Neck of neck
        self.attribute_loss = attribute_loss
        self.neck = neck
        self.neck_feat = neck_feat
        self.attr_lens = attr_lens
        self.grad_checkpoint = grad_checkpoint
        self.channels_last = channels_last

        self.backbone_name = backbone
        self.base = build_backbone(backbone, last_stride, stem_relu)
        c = self.base.out_channels
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.map_size = feature_map_size(self.base, self.input_size)
        hw = self.map_size[0] * self.map_size[1]

        if fusion.weights is not None:
            self.attention_conv = nn.Conv2d(c, 1, 3, padding=1)
        if attr_lens is not None:
            if attribute_loss == "bce":
                self.multi_attr_recoger1 = AttributeStreamBCE(c, sum(attr_lens[0]), hw)
                self.multi_attr_recoger2 = AttributeStreamBCE(c, sum(attr_lens[1]), hw)
            else:
                self.multi_attr_recoger1 = AttributeStreamMCE(c, attr_lens[0])
                self.multi_attr_recoger2 = AttributeStreamMCE(c, attr_lens[1])
                if fusion.attributes:
                    # learnable per-position logits (softmax over the attributes) combining the
                    # attributes' maps into the group's map for the fusion; all ones at first.
                    # (Only where the fusion uses them: unused parameters would break DDP.)
                    self.attention_fusion1 = nn.Parameter(
                        torch.ones(1, len(attr_lens[0]), *self.map_size))
                    self.attention_fusion2 = nn.Parameter(
                        torch.ones(1, len(attr_lens[1]), *self.map_size))
        self.feat_dim = fusion.blocks * c
        head.build(self, self.feat_dim, num_classes)     # the classifier, after a BNNeck or not

        self.reset_head_parameters()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def reset_head_parameters(self) -> None:
        """The original's init of everything but the backbone (where training from ImageNet starts).

        Identity ``attention_conv`` Kaiming normal (fan_in), bias 0; ``bottleneck`` weight 1,
        bias 0; identity classifier N(0, 0.001); the attribute streams as their own
        ``reset_parameters`` says; ``attention_fusion`` all ones.
        """
        if self.fusion.weights is not None:
            kaiming_init(self.attention_conv)
        self.head.reset(self)
        classifier_init(self.classifier)
        if self.attr_on:
            self.multi_attr_recoger1.reset_parameters()
            self.multi_attr_recoger2.reset_parameters()
        for fusion in (getattr(self, "attention_fusion1", None),
                       getattr(self, "attention_fusion2", None)):
            if fusion is not None:
                nn.init.ones_(fusion)

    @property
    def attr_on(self) -> bool:
        """Whether the attribute streams exist."""
        return self.attr_lens is not None

    # ------------------------------------------------------------------ pieces
    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.grad_checkpoint and self.training and torch.is_grad_enabled()):
            return self.base(x)

        def contexts() -> tuple[contextlib.AbstractContextManager, _KeepNormStats]:
            return contextlib.nullcontext(), _KeepNormStats(self.base)

        for stage in self.base.stages():
            x = checkpoint(stage, x, use_reentrant=False, context_fn=contexts)
        return x

    def _check_map_size(self, f: torch.Tensor) -> None:
        size = tuple(f.shape[-2:])
        if size != self.map_size and self.attr_on:
            raise UserError(
                f"The model was built for {self.input_size[0]}x{self.input_size[1]} frames "
                f"(INPUT.SIZE_TRAIN: a {self.map_size[0]}x{self.map_size[1]} feature map that "
                f"the attribute attention layers depend on); these frames give {size[0]}x"
                f"{size[1]}. Use the same INPUT.SIZE_TEST as INPUT.SIZE_TRAIN.")

    def _run(self, x: torch.Tensor) -> dict:
        """Everything the forwards need; x (B, T, 3, H, W)."""
        if x.dim() != 5:
            raise ValueError(f"expected clips (B, T, 3, H, W), got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        x = x.flatten(0, 1)                                      # (B*T, 3, H, W)
        # the loaders' clips are channels last in memory: the layout of the model's weights
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last
                         else torch.contiguous_format)
        f = self._backbone(x)                                    # (B*T, C, h, w)
        self._check_map_size(f)

        a_id = None
        if self.fusion.weights is not None:
            a_id = torch.sigmoid(self.attention_conv(f))         # (B*T, 1, h, w)
        attr_logits = maps = None
        if self.attr_on:
            fd = f.detach()  # attribute losses must not reach the backbone (as the original)
            logits1, att1 = self.multi_attr_recoger1(fd, t)
            logits2, att2 = self.multi_attr_recoger2(fd, t)
            if self.attribute_loss == "mce":
                if self.fusion.attributes:
                    # (B*T, K, h, w) -> (B*T, 1, h, w): softmax over K, then over T
                    att1 = AttributeStreamMCE.fuse_maps(att1, self.attention_fusion1, t)
                    att2 = AttributeStreamMCE.fuse_maps(att2, self.attention_fusion2, t)
                else:  # no fusion: the mean map, for forward_attention only
                    att1, att2 = att1.mean(1, keepdim=True), att2.mean(1, keepdim=True)
                attr_logits = [*logits1, *logits2]
            else:
                attr_logits = [logits1, logits2]
            maps = (att1, att2)

        if a_id is None:
            g = f.mean((2, 3))                                   # (B*T, C)
        else:
            w = self.fusion.weights(a_id, maps)                  # (B*T, k, h, w)
            hw = f.shape[-2] * f.shape[-1]
            g = torch.bmm(f.flatten(2), w.flatten(2).transpose(1, 2)) / hw  # (B*T, C, k)
            g = g.transpose(1, 2).flatten(1)                     # (B*T, k*C), blocks in order
        g = g.view(b, t, -1).mean(1)                             # (B, D)
        return {"global_feat": g, "attr_logits": attr_logits, "identity_map": a_id,
                "attr_maps": maps, "bt": (b, t)}

    # ------------------------------------------------------------------ forwards
    def forward(self, x: torch.Tensor):
        """Train: (cls_score, global_feat, attr_logits); eval: (feat, attr_logits)."""
        out = self._run(x)
        g = out["global_feat"]
        feat = self.head.forward(self, g)
        if self.training:
            return self.classifier(feat), g, out["attr_logits"]
        return (feat if self.neck_feat == "after" else g), out["attr_logits"]

    def forward_attention(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Attention maps of a clip batch x (B, T, 3, H, W).

        Returns:
            dict with "identity" (B, T, h, w) (None for "baseline") and the attribute streams'
            spatio-temporal maps "unrelated" and "related" (B, T, h, w) (None without
            attributes; in "mce" mode the fused group maps, or the mean of the attributes' maps
            without the ATTR_TA fusion). Call it in eval mode.
        """
        out = self._run(x)
        b, t = out["bt"]

        def shaped(m: torch.Tensor | None) -> torch.Tensor | None:
            return None if m is None else m.reshape(b, t, *m.shape[-2:])

        maps = out["attr_maps"] or (None, None)
        return {"identity": shaped(out["identity_map"]), "unrelated": shaped(maps[0]),
                "related": shaped(maps[1])}

    def extra_repr(self) -> str:
        attrs = self.attribute_loss if self.attr_on else "off"
        return (f"fusion={self.fusion_method}, attributes={attrs}, neck={self.neck}/"
                f"{self.neck_feat}, feat_dim={self.feat_dim}, map={self.map_size}")
