"""What a run produced: one RunResult, written to OUT/result.json by training.finish and read
back by the sweep summary, the results tables, hub.package, the CLI and the benchmarks. No
torch here. The row of a results table (`row`) and the grouping of seeds (`group_key`) are
derived from it, so a field is renamed in one place.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import TrainConfig, config_from_dict
from .files import atomic_write


def recorded_precision(record: dict) -> str:
    """The precision a checkpoint sidecar or result.json says its run trained in. Records from
    before it was written ran bf16 on CUDA with amp, fp32 elsewhere."""
    return record.get("precision") or record.get("env", {}).get("precision") or (
        "bf16" if record.get("env", {}).get("device", "").startswith("cuda")
        and record.get("config", {}).get("amp", True) else "fp32")


@dataclass
class RunResult:
    config: TrainConfig           # the run's settings (result.json: as a dict)
    finished: bool                # reached its end (False: stopped at --max-steps)
    steps: int                    # optimizer steps taken
    history: list                 # one metrics row per epoch (metrics.jsonl)
    precision: str = "fp32"       # of the training forward pass: fp32 or bf16 (autocast)
    dropout: str | None = None    # the masks drawn: "torch" or "bits" (None: not recorded)
    model_kwargs: dict = field(default_factory=dict)
    params: int = 0
    epochs_run: int = 0
    wall_s: float = 0.0           # training seconds, evaluation excluded
    final: dict = field(default_factory=dict)  # split, n, error %, loss, per_class_accuracy
    env: dict = field(default_factory=dict)    # versions, device, threads, command
    checkpoint: str | None = None  # the last checkpoint's sidecar
    path: str | None = None       # the result.json it was read from (never written)

    # ---- reading and writing
    @classmethod
    def from_dict(cls, d: dict, path=None) -> RunResult:
        """From a result.json of any version: unknown keys are ignored, the precision of older
        records is derived (recorded_precision), `step` (older stops) is `steps`."""
        names = {f.name for f in dataclasses.fields(cls)} - {"path", "precision", "steps",
                                                            "finished", "history"}
        kw = {k: v for k, v in d.items() if k in names}
        kw["config"] = config_from_dict(d.get("config") or {})
        return cls(**kw, finished=bool(d.get("finished")), history=d.get("history", []),
                   steps=d.get("steps", d.get("step", 0)), precision=recorded_precision(d),
                   path=str(path) if path else None)

    @classmethod
    def read(cls, path) -> RunResult:
        return cls.from_dict(json.loads(Path(path).read_text()), path)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["path"]
        return d

    def write(self, folder) -> Path:
        path = Path(folder) / "result.json"
        atomic_write(path, json.dumps(self.to_dict(), indent=1).encode())
        return path

    # ---- what tables read
    @property
    def error(self) -> float:
        return self.final["error"]

    @property
    def folder(self) -> Path | None:
        return Path(self.path).parent if self.path else None

    def group_key(self) -> tuple:
        """Runs that differ only in seed (and where they ran or wrote) share this key."""
        return tuple(sorted((k, json.dumps(v)) for k, v in self.config.to_dict().items()
                            if k not in ("seed", "out", "data_dir", "device")))

    @property
    def train_error(self) -> float | None:
        """Training error % of the last epoch, as trained (dropout on, augmented, the weights
        moving): the overfitting gap's other side."""
        last = next((h for h in reversed(self.history) if "train_acc" in h), None)
        return None if last is None else round(100 * (1 - last["train_acc"]), 2)

    @property
    def threads(self) -> list[int]:
        """The CPU threads its epochs ran on: recorded per epoch, since a run resumed in pieces
        may change them; epochs from before that was recorded count as its last piece's."""
        used = {h["threads"] for h in self.history if "threads" in h}
        if not used or any("threads" not in h for h in self.history):
            used.add(self.env.get("threads"))
        return sorted(t for t in used if t is not None)

    def row(self) -> dict:
        """The row of a results table: what the run was, and what it scored."""
        c = self.config
        return dict(model=c.model, dataset=c.dataset, recipe=c.recipe,
                    translate=c.translate, flip=c.flip,
                    tta=c.tta, seed=c.seed, precision=self.precision,
                    error=self.error, train_error=self.train_error, n=self.final["n"],
                    epochs=self.epochs_run, wall_s=self.wall_s, params=self.params,
                    threads=self.threads, gpu=self.gpu)

    @property
    def gpu(self) -> str | None:
        """The GPU the run trained on (None: the CPU)."""
        return self.env.get("gpu") if str(self.env.get("device", "")).startswith("cuda") else None


def collect(folder) -> list[RunResult]:
    """Every readable result.json under a folder."""
    found = []
    for p in sorted(Path(folder).rglob("result.json")):
        try:
            found.append(RunResult.read(p))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # not a run's result (a benchmark's, a cut-off file)
    return found
