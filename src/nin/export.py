"""Export a trained network with its preprocessing to ONNX.

The graph takes float32 images (N, C, H, W) with pixel values 0-255 (the network's input size)
and returns class probabilities (N, classes): GCN/ZCA or standardization is inside it, so
another runtime needs nothing from this package.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn as nn

from .errors import NinError
from .files import atomic_write


class WithPreprocessing(nn.Module):
    def __init__(self, model, pre):
        super().__init__()
        self.model, self.pre = model, pre

    def forward(self, images):
        return torch.softmax(self.model(self.pre(images)), 1)


def export_onnx(model, pre, path, opset: int = 17) -> Path:
    try:
        import onnx  # noqa: F401 - the exporter needs it
    except ImportError:
        raise NinError("ONNX export needs the onnx package: pip install 'nin[onnx]'") from None
    full = WithPreprocessing(model.eval(), pre).eval()
    example = torch.zeros(2, pre.in_chans, pre.input_size, pre.input_size)
    buf = io.BytesIO()
    # The TorchScript-based exporter: no extra dependency beyond onnx, dynamic batch size.
    torch.onnx.export(full, (example,), buf, input_names=["image"],
                      output_names=["probs"], dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}},
                      opset_version=opset, dynamo=False)
    return atomic_write(path, buf.getvalue())
