"""Named networks with the weights shipped in the package, as timm's create_model.

    nin.create_model("nin_mnist_bn", pretrained=True)     # Python
    nin eval --weights pretrained --model nin_mnist_bn     # the CLI (one syntax everywhere)
    torch.hub.load("REPO", "nin_mnist_bn", pretrained=True) # hubconf.py

Shipped weights live in nin/weights/NAME.safetensors with a NAME.json sidecar that also records
the run they come from (config, epochs, the test error it measured). `package` makes them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from safetensors.torch import save

from .checkpoint import find_sidecar, load_checkpoint, read_sidecar, read_tensors, sha256_file
from .errors import CheckpointError, ConfigError
from .files import atomic_write
from .models import NIN, build_model, list_models
from .results import RunResult

WEIGHTS_DIR = Path(__file__).parent / "weights"
__all__ = ["create_model", "list_models", "load_pretrained", "load_weights_arg", "package",
           "pretrained_info", "shipped", "transfer"]


def shipped() -> list[str]:
    """Names with weights in the package."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json")) if WEIGHTS_DIR.is_dir() else []


def _sidecar(name: str) -> Path:
    """Where the shipped weights of `name` are described (the file may not exist)."""
    return WEIGHTS_DIR / f"{name}.json"


def pretrained_info(name: str) -> dict | None:
    """What the shipped weights of `name` recorded: their test error (with or without flip
    TTA, as the run scored it), the split and its size, the stored precision; None if none."""
    sidecar = _sidecar(name)
    if not sidecar.is_file():
        return None
    side = read_sidecar(sidecar, check=())
    final = (side.result or {}).get("final") or {}
    return dict(error=final.get("error"), split=final.get("split"), n=final.get("n"),
                tta=side.tta, dtype=side.dtype or "float32")


def create_model(name: str, pretrained: bool = False, num_classes: int | None = None,
                 **kwargs) -> NIN:
    """A registered network; pretrained=True loads the weights shipped for it (eval mode). With
    pretrained=True and another num_classes, everything but the classifier is loaded and the
    classifier starts fresh (He init), as timm does: a network to fine-tune."""
    if not pretrained:
        return build_model(name, num_classes=num_classes, **kwargs)
    # a silent mismatch would hand back another network than the one asked for
    if kwargs:
        raise ConfigError(f"pretrained {name} has fixed settings; drop {', '.join(kwargs)} "
                          "or use pretrained=False and load weights yourself")
    model, _, _ = load_pretrained(name)
    if num_classes in (None, model.num_classes):
        return model
    fresh = build_model(name, num_classes=num_classes, init="kaiming")
    transfer(fresh, model, where=f"pretrained {name}")
    return fresh.eval()


def transfer(model: NIN, source: NIN, where="the weights") -> list[str]:
    """Copy source's weights into model wherever the shapes agree. Those that differ must be the
    classifier's (its first dimension is the class count): they keep model's fresh values.
    Returns their names."""
    mine, theirs = model.state_dict(), source.state_dict()
    if set(mine) != set(theirs):
        raise ConfigError(f"{where}: a different network ({source.name or 'NIN'}) than "
                          f"{model.name or 'this one'}; fine-tune with weights of the same model")
    fresh = [k for k in mine if mine[k].shape != theirs[k].shape]
    wrong = [k for k in fresh if theirs[k].shape[:1] != (source.num_classes,)]
    if wrong:
        raise ConfigError(f"{where}: {wrong[0]} has shape {tuple(theirs[wrong[0]].shape)}, this "
                          f"network's {tuple(mine[wrong[0]].shape)}: only the classifier may "
                          "differ (an fc head also needs the same image size)")
    model.load_state_dict({k: (mine[k] if k in fresh else theirs[k]) for k in mine})
    return fresh


def load_pretrained(name: str, map_location="cpu"):
    """(model, preprocess, Sidecar) of the weights shipped for `name`."""
    sidecar = _sidecar(name)
    if not sidecar.is_file():
        raise CheckpointError(
            f"no pretrained weights for {name} in {WEIGHTS_DIR} (shipped: "
            f"{', '.join(shipped()) or 'none yet'}). Train one with `nin train --model {name}` "
            "and pass its run folder with --weights.")
    return load_checkpoint(sidecar, map_location)


def load_weights_arg(weights: str, model: str | None = None, map_location="cpu"):
    """What the CLI's --weights names: 'pretrained' (with --model), a run folder or a
    checkpoint file. Returns (model, preprocess, Sidecar)."""
    if weights == "pretrained":
        if not model:
            raise CheckpointError("--weights pretrained needs --model NAME (shipped: "
                                  f"{', '.join(shipped()) or 'none yet'})")
        return load_pretrained(model, map_location)
    return load_checkpoint(weights, map_location)


def _one_file(side, half: bool) -> bytes:
    """The network and its preprocessing in one file; half: the network's float tensors in fp16
    (half the bytes; loading casts them back to fp32). The preprocessing stays fp32: it sets
    the input scale."""
    t = read_tensors(side)
    return save({k: v.half() if half and k.startswith("model.") and v.is_floating_point() else v
                 for k, v in t.items()})


def package(run, name: str, out_dir: Path | None = None, half: bool = False) -> Path:
    """Copy a run's final weights (with its preprocessing) into the package's weights folder as
    NAME.safetensors + NAME.json, keeping the config and the run's final test error, so that
    create_model(name, pretrained=True) and `nin eval --weights pretrained` find them.
    half=True stores the network in fp16: check its test error against the run's."""
    out_dir = Path(out_dir or WEIGHTS_DIR)
    side = read_sidecar(find_sidecar(run))
    if side.model != name:
        raise CheckpointError(f"{side.path}: holds {side.model}, not {name}")
    result_file = side.path.parent.parent / "result.json"
    result = RunResult.read(result_file) if result_file.is_file() else None
    weights = out_dir / f"{name}.safetensors"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(weights, _one_file(side, half))
    record = dataclasses.replace(  # the network, not the run's state or machine
        side, files={"weights": {"name": weights.name, "sha256": sha256_file(weights)}},
        dtype="float16" if half else "float32", env={}, reason=None, run={},
        result=None if result is None else dict(final=result.final, epochs_run=result.epochs_run,
                                                 wall_s=result.wall_s, env=result.env))
    path = out_dir / f"{name}.json"
    atomic_write(path, record.to_json())
    return path
