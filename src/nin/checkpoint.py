"""Checkpoints: safetensors weights and preprocessing buffers, and a JSON sidecar.

A checkpoint `step-00001234` in a run's checkpoints/ folder is up to four files:
  step-00001234.safetensors             model.* tensors (with preprocess.* in format 1)
  step-00001234.preprocess.safetensors  preprocess.* tensors, where there are any: fixed for the
                                        run (a ZCA matrix is 36 MiB), so the same bytes at every
                                        step, which git stores once however many are committed
  step-00001234.state.safetensors       optimizer state and RNG states (what --resume needs)
  step-00001234.json                    config, preprocessing, epoch, step, sha256 of the others
Each is written to a temporary name and renamed, the sidecar last, so a checkpoint whose sidecar
exists is complete; the hashes catch a file damaged later. Loading never runs code: safetensors
holds tensors only and JSON holds plain values. `Sidecar` is what the JSON says, typed: written
only by `Sidecar.to_json` (through save_checkpoint and hub.package), read only by read_sidecar.

A registered network is rebuilt from its name; a NIN built directly (model "NIN" in the sidecar)
from the constructor arguments recorded in the sidecar's `arch`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .errors import CheckpointError
from .files import atomic_write, file_digest
from .models import NIN, build_model
from .preprocessing import Preprocess
from .results import recorded_precision

FORMAT = "nin-checkpoint-2"
FORMATS = ("nin-checkpoint-1", FORMAT)  # 2 may keep the preprocessing in a file of its own
KEEP = 2  # checkpoints kept per run; older ones are deleted once a newer one is complete
__all__ = ["CheckpointError", "Sidecar", "atomic_write", "save_checkpoint", "load_checkpoint"]


@dataclass
class Sidecar:
    """What a checkpoint says. On disk one flat JSON object (format nin-checkpoint-2); files
    from older versions load, a missing field taking its default. The run state's entries
    (epoch, schedule, history, optimizer, ...: training.run_state_dict writes them,
    training.load_run_state reads them) are kept together in `run`."""
    model: str                    # a registered name, or "NIN" (built from `arch`)
    num_classes: int
    preprocess: dict              # Preprocess(**preprocess); buffers: weights or preprocess file
    files: dict                   # {"weights": {"name", "sha256"}, "preprocess", "state"}
    step: int = 0
    arch: dict | None = None      # NIN's constructor arguments
    config: dict = field(default_factory=dict)        # the run's TrainConfig, as a dict
    model_kwargs: dict = field(default_factory=dict)  # build_model's extra arguments
    classes: list | None = None   # class names, in label order
    env: dict = field(default_factory=dict)           # where it ran (device.environment)
    reason: str | None = None     # why this checkpoint was written
    dtype: str | None = None      # shipped weights: the stored float type
    result: dict | None = None    # shipped weights: the run's final result (result.json)
    run: dict = field(default_factory=dict)           # the run state, for --resume
    format: str = FORMAT
    path: Path | None = field(default=None, compare=False)  # where it was read from

    @classmethod
    def from_dict(cls, d: dict, path: Path | None = None) -> "Sidecar":
        names = {f.name for f in dataclasses.fields(cls)} - {"run", "path"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   run={k: v for k, v in d.items() if k not in names}, path=path)

    def to_json(self) -> bytes:
        """The one serialization: flat, without the empty optional fields."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("run", "path")}
        d = {k: v for k, v in d.items()
             if not (k in ("reason", "dtype", "result", "classes", "arch", "env") and not v)}
        return json.dumps({**d, **self.run}, indent=1).encode()

    def file(self, key: str) -> Path:
        """The weights or state file it names, beside it."""
        return self.path.parent / self.files[key]["name"]

    def class_names(self) -> list[str]:
        return self.classes or [str(i) for i in range(self.num_classes)]

    @property
    def dataset(self) -> str | None:
        return self.config.get("dataset")

    @property
    def tta(self) -> bool:
        """Whether the run scored itself with flip TTA."""
        return bool(self.config.get("tta"))

    @property
    def precision(self) -> str:
        """The precision the run trained in (fp32 or bf16)."""
        return recorded_precision({**self.run, "env": self.env, "config": self.config})


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def _tensors(module: torch.nn.Module, prefix: str) -> dict:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(folder, step: int, model, preprocess: Preprocess, meta: dict,
                    state: dict | None = None) -> Path:
    """Write checkpoint `step` into folder; returns the sidecar's path. `state` holds the
    tensors needed to resume (optimizer, RNG); meta: the sidecar's other fields (config,
    classes, ...) and the run state's entries, JSON-serialisable."""
    folder = Path(folder)
    for stale in folder.glob(".step-*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    stem, files = f"step-{step:08d}", {}
    parts = {"": _tensors(model, "model")}
    if preprocess.state_dict():  # "scale" has nothing to store
        parts[".preprocess"] = _tensors(preprocess, "preprocess")
    if state is not None:
        parts[".state"] = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    for suffix, tensors in parts.items():
        f = folder / f"{stem}{suffix}.safetensors"
        atomic_write(f, save(tensors))
        files[suffix[1:] or "weights"] = {"name": f.name, "sha256": sha256_file(f)}
    sidecar = folder / f"{stem}.json"
    record = Sidecar.from_dict(dict(model=model.name or "NIN", num_classes=model.num_classes,
                                    arch=model.arch, preprocess=preprocess.config(), step=step,
                                    files=files, **meta))
    atomic_write(sidecar, record.to_json())
    for old in sorted(folder.glob("step-*.json"))[:-KEEP]:
        for f in (old, *(old.with_suffix(f"{part}.safetensors")
                         for part in ("", ".preprocess", ".state"))):
            f.unlink(missing_ok=True)
    return sidecar


def read_sidecar(path: Path, check: tuple = ("weights",)) -> Sidecar:
    """Read a sidecar and check the sha256 of the files named in `check`."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint sidecar ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: not a nin checkpoint sidecar (format {found!r}, "
                              f"expected {FORMAT!r})")
    files = meta.get("files")
    ok = (isinstance(files, dict) and all(
        isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("sha256"), str)
        and Path(v["name"]).name == v["name"] for v in files.values())
        and isinstance(meta.get("model"), str) and isinstance(meta.get("num_classes"), int)
        and isinstance(meta.get("preprocess"), dict)
        and isinstance(meta.get("model_kwargs", {}), dict))
    if not ok:
        raise CheckpointError(f"{path}: a malformed checkpoint sidecar (its files, model, "
                              "num_classes or preprocess entries are missing or of the wrong "
                              "type); use another checkpoint")
    if "weights" in check and "preprocess" in files:  # the weights are both files
        check = (*check, "preprocess")
    for key in check:
        entry = files.get(key)
        if entry is None:
            raise CheckpointError(f"{path}: the checkpoint has no {key} file")
        f = path.parent / entry["name"]
        if not f.is_file():
            raise CheckpointError(f"{f}: missing (named by {path.name})")
        if sha256_file(f) != entry["sha256"]:
            raise CheckpointError(f"{f}: sha256 does not match its sidecar {path.name}; the file "
                                  "is truncated or corrupt. Use an earlier checkpoint.")
    try:
        return Sidecar.from_dict(meta, path)
    except TypeError as e:  # a field of the wrong kind
        raise CheckpointError(f"{path}: a malformed checkpoint sidecar ({e})") from None


def latest_checkpoint(folder) -> Path | None:
    """The newest complete sidecar in a run folder or its checkpoints/ subfolder."""
    found = checkpoints(folder)
    return found[-1] if found else None


def checkpoints(folder) -> list[Path]:
    folder = Path(folder)
    if (folder / "checkpoints").is_dir():
        folder = folder / "checkpoints"
    return sorted(folder.glob("step-*.json"))


def latest_valid(folder, check=("weights", "state"), log=print):
    """(path, Sidecar) of the newest checkpoint whose files match their hashes; a damaged newer
    one is reported and skipped. (None, None) when there is none."""
    for sidecar in reversed(checkpoints(folder)):
        try:
            return sidecar, read_sidecar(sidecar, check)
        except CheckpointError as e:
            log(f"skipping a damaged checkpoint: {e}")
    return None, None


def find_sidecar(path) -> Path:
    """A sidecar's path from a run folder, a sidecar, or a weights file."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: no checkpoint (step-*.json) in this folder")
        return found
    if path.suffix == ".safetensors":
        path = path.with_name(path.name.split(".")[0] + ".json")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; pass a run folder, a step-*.json "
                              "sidecar or its .safetensors file, or 'pretrained'")
    return path


def _split(tensors: dict, prefix: str) -> dict:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def read_tensors(side: Sidecar, map_location="cpu") -> dict:
    """The model.* and preprocess.* tensors of a checkpoint, from one file or two."""
    tensors = {}
    for key in ("weights", "preprocess"):
        if key in side.files:
            f = side.file(key)
            try:
                tensors.update(load_file(str(f), device=str(map_location)))
            except Exception as e:
                raise CheckpointError(f"{f}: unreadable safetensors file ({e})") from None
    return tensors


def load_weights(side: Sidecar, model=None, map_location="cpu"):
    """Build (or fill) the model and preprocessing of a checkpoint; never executes code."""
    f, tensors = side.file("weights"), read_tensors(side, map_location)
    if model is None:
        model = build_from_sidecar(side)
    elif model.num_classes != side.num_classes:
        raise CheckpointError(f"{f}: weights for {side.num_classes} classes, model has "
                              f"{model.num_classes}")
    try:
        model.load_state_dict(_split(tensors, "model"))
    except RuntimeError as e:
        raise CheckpointError(f"{f}: holds weights of {side.model} that do not fit "
                              f"{getattr(model, 'name', 'this model')}: {str(e)[:300]}") from None
    try:
        pre = Preprocess(**side.preprocess)
        pre.load_state_dict(_split(tensors, "preprocess"))
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{f}: its preprocessing does not load ({str(e)[:300]})") from None
    return model, pre


def load_checkpoint(path, map_location="cpu"):
    """(model, preprocess, Sidecar) from a run folder, sidecar or weights file, hashes
    checked."""
    side = read_sidecar(find_sidecar(path))
    model, pre = load_weights(side, map_location=map_location)
    return model.eval(), pre, side


def load_state(side: Sidecar) -> dict:
    return load_file(str(side.file("state")))


def build_from_sidecar(side: Sidecar) -> NIN:
    """A fresh network of the checkpoint's architecture (weights not loaded yet): registered
    names from the registry (so weights that do not fit are refused), a NIN built directly
    from its recorded constructor arguments."""
    try:
        if side.model == "NIN" and isinstance(side.arch, dict):
            arch = dict(side.arch)
            arch["blocks"] = [(k, tuple(w)) for k, w in arch["blocks"]]
            return NIN(**arch)
        return build_model(side.model, num_classes=side.num_classes, **side.model_kwargs)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{side.path}: cannot build its model ({e})") from None


# ---------------------------------------------------------------- optimizer state
def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The optimizer's whole state: its tensors (keyed opt.GROUP.INDEX.NAME, for safetensors)
    and the rest as plain values (per-parameter scalars and each group's settings)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for i, g in enumerate(sd["param_groups"]):
        for j, pid in enumerate(g["params"]):
            for key, v in sd["state"].get(pid, {}).items():
                if torch.is_tensor(v):
                    tensors[f"opt.{i}.{j}.{key}"] = v
                else:
                    scalars[f"opt.{i}.{j}.{key}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
              for g in sd["param_groups"]]
    return tensors, dict(scalars=scalars, param_groups=groups)


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict, plain: dict | None, device):
    """Restore what optimizer_state saved. Checkpoints from before the optimizer's settings
    were saved hold only the momentum tensors; the groups' settings then stay as built."""
    sd = opt.state_dict()
    plain = plain or {}
    values = {**plain.get("scalars", {}),
              **{k: v for k, v in tensors.items() if k.startswith("opt.")}}
    for i, g in enumerate(sd["param_groups"]):
        for j, pid in enumerate(g["params"]):
            prefix = f"opt.{i}.{j}."
            entry = {k[len(prefix):]: (v.to(device) if torch.is_tensor(v) else v)
                     for k, v in values.items() if k.startswith(prefix)}
            if entry:
                sd["state"][pid] = entry
    for g, saved in zip(sd["param_groups"], plain.get("param_groups", [])):
        g.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()})
    opt.load_state_dict(sd)
