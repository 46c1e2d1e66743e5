"""nin: Network In Network (Lin, Chen, Yan, ICLR 2014) in PyTorch.

    import nin
    model = nin.create_model("nin_mnist_bn", pretrained=True)

The names below are imported on first use, so `nin --help` answers without loading torch.
"""
__version__ = "0.1.0"
_EXPORTS = {"create_model": "hub", "list_models": "models", "NIN": "models", "MLPConv": "models",
            "count_params": "models", "load_checkpoint": "checkpoint", "NinError": "errors"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'nin' has no attribute {name!r}")
