"""Command: the eval-mode network as an ONNX file, checked against PyTorch with onnxruntime.

    python -m tools.export_onnx --config_file F --out model.onnx TEST.WEIGHT W

The file's input is ``clips`` (B, T, 3, H, W) float32 with a dynamic batch B (T =
DATASETS.SEQ_LEN, (H, W) = INPUT.SIZE_TEST, frames normalised as evaluation does); its outputs
are ``feat`` (B, D), the clip feature of evaluation (pool the clips of a tracklet as
TEST.TEMPORAL_POOL_METHOD says), and, when the model has attribute streams, ``attr_logits``
(B, sum of all class counts) in CSV attribute order (the layout that
:func:`data.attributes.decode_attribute_logits` reads as "flat"). The export uses torch's
TorchScript-based exporter (``dynamo=False``: it needs ``onnx``, not ``onnxscript``). Before
the file is moved into place, onnxruntime runs it on random clips of another batch size than
the export's; the largest difference to PyTorch is printed and must stay under
:data:`PARITY_TOLERANCE` of the largest output value, else the command fails (exit 1) and
writes nothing.

Needs the packages ``onnx`` and ``onnxruntime`` (``pip install onnx onnxruntime``), and the
config's dataset folder (for the model's identity count and attribute schema; no image is
read).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import torch
from torch import nn

from data import build_dataset
from engine import default_argument_parser, parse_command_line
from engine.defaults import DEFAULT_CONFIG, load_cfg
from modeling import VideoBaseline
from tools.export_features import load_trained_model
from tools.synthetic import ensure_dataset
from utils.checkpoint import check_writable_file
from utils.errors import UserError, run_cli

__all__ = ["PARITY_TOLERANCE", "DeployedNetwork", "build_parser", "check_parity", "export_onnx",
           "main"]

PARITY_TOLERANCE = 1e-4      # largest |onnxruntime - torch| / largest |torch|, per output
OPSET = 17
EXPORT_BATCH, CHECK_BATCH = 2, 3


class DeployedNetwork(nn.Module):
    """The eval-mode :class:`VideoBaseline` with plain tensor outputs.

    Forward ``clips`` (B, T, 3, H, W) -> ``feat`` (B, D), or ``(feat, attr_logits (B, L))``
    with attribute streams (the logits of every attribute concatenated in CSV order).
    """

    def __init__(self, model: VideoBaseline) -> None:
        super().__init__()
        self.model = model
        self.output_names = ["feat", "attr_logits"] if model.attr_on else ["feat"]
        self.eval()

    def forward(self, clips: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feat, attr_logits = self.model(clips)
        if attr_logits is None:
            return feat
        return feat, torch.cat(list(attr_logits), dim=1)


def _onnxruntime():
    """The onnxruntime module (the exporter also needs onnx), or a UserError saying how to
    install them."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export imports it)
        import onnxruntime
    except ImportError as e:
        raise UserError(f"python -m tools.export_onnx needs the packages onnx and onnxruntime; "
                        f"{e.name} is not installed. Fix: pip install onnx onnxruntime") from None
    return onnxruntime


def export_onnx(network: DeployedNetwork, path: str, clip_shape: tuple[int, int, int, int]
                ) -> None:
    """Write ``network`` to ``path`` with input ``clips`` (B, *clip_shape), dynamic B.

    Args:
        network: the network to export (CPU, eval mode).
        path: the ONNX file.
        clip_shape: (T, 3, H, W) of a clip.
    """
    example = torch.zeros(EXPORT_BATCH, *clip_shape)
    axes = {name: {0: "batch"} for name in ("clips", *network.output_names)}
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter's deprecation notice; the model's shape checks are constants
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(network, (example,), path, input_names=["clips"],
                          output_names=network.output_names, dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)


def check_parity(path: str, network: DeployedNetwork, clip_shape: tuple[int, int, int, int],
                 seed: int = 0) -> dict[str, tuple[float, float]]:
    """Run the ONNX file with onnxruntime and the network with torch on the same random clips.

    Args:
        path: the ONNX file.
        network: the exported network.
        clip_shape: (T, 3, H, W) of a clip; the check uses :data:`CHECK_BATCH` clips.
        seed: seed of the random clips.

    Returns:
        ``{output name: (largest absolute difference, relative to the largest |torch| value)}``.
    """
    session = _onnxruntime().InferenceSession(path, providers=["CPUExecutionProvider"])
    clips = torch.randn(CHECK_BATCH, *clip_shape, generator=torch.Generator().manual_seed(seed))
    got = session.run(network.output_names, {"clips": clips.numpy()})
    with torch.no_grad():
        want = network.eval()(clips)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    result = {}
    for name, a, b in zip(network.output_names, got, want, strict=True):
        b = b.numpy()
        diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
        result[name] = (diff, diff / max(float(np.abs(b).max()), 1e-12))
    return result


def build_parser() -> argparse.ArgumentParser:
    """``--config_file``, ``--out`` and ``KEY VALUE`` overrides (TEST.WEIGHT among them)."""
    parser = default_argument_parser(
        "Export the eval-mode network to ONNX (input clips (B, T, 3, H, W), dynamic B; outputs "
        "feat and attr_logits) and check it with onnxruntime.", DEFAULT_CONFIG)
    parser.prog = "python -m tools.export_onnx"
    parser.add_argument("--out", required=True, metavar="model.onnx",
                        help="the file to write (missing folders are created)")
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Command line; returns 0, 1 when the parity check fails, 2 for a user error."""
    args = parse_command_line(build_parser(), argv)
    _onnxruntime()
    cfg = load_cfg(args.config_file or None, args.opts)
    check_writable_file(args.out)
    ensure_dataset(cfg)
    network = DeployedNetwork(load_trained_model(cfg, build_dataset(cfg), torch.device("cpu")))
    clip_shape = (cfg.DATASETS.SEQ_LEN, 3, *(int(v) for v in cfg.INPUT.SIZE_TEST))
    folder = os.path.dirname(os.path.abspath(args.out))
    tmp = os.path.join(folder, f".{os.path.basename(args.out)}.tmp-{os.getpid()}")
    try:
        try:
            os.makedirs(folder, exist_ok=True)
            export_onnx(network, tmp, clip_shape)
        except OSError as e:
            raise UserError(f"Cannot write '{args.out}': {e.strerror or e}.") from None
        parity = check_parity(tmp, network, clip_shape)
        lines = [f"  {name}: largest difference {diff:.2e} (relative {rel:.2e})"
                 for name, (diff, rel) in parity.items()]
        print(f"onnxruntime vs torch on {CHECK_BATCH} random clips {list(clip_shape)}:",
              *lines, sep="\n")
        if not all(rel < PARITY_TOLERANCE for _, rel in parity.values()):
            print(f"error: the ONNX network differs from the torch one by more than "
                  f"{PARITY_TOLERANCE:g} (relative); '{args.out}' was not written.",
                  file=sys.stderr)
            return 1
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {args.out} (input clips [B, {', '.join(map(str, clip_shape))}], outputs "
          f"{', '.join(network.output_names)}; parity under {PARITY_TOLERANCE:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
