"""torch.hub entry points: one per registered network.

    torch.hub.load("OWNER/nin", "nin_mnist_bn", pretrained=True)
    torch.hub.load("path/to/nin", "nin_cifar10", source="local")

pretrained=True loads the weights shipped in src/nin/weights (see `nin.hub.shipped()`).
"""
import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "numpy", "safetensors"]

_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

from nin.hub import create_model as _create  # noqa: E402
from nin.models import list_models as _names  # noqa: E402


def _entry(name):
    def load(pretrained: bool = False, **kwargs):
        return _create(name, pretrained=pretrained, **kwargs)
    load.__name__ = name
    load.__doc__ = f"{name}; pretrained=True loads the package's shipped weights."
    return load


for _name in _names():
    globals()[_name] = _entry(_name)
