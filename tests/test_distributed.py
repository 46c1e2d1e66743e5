"""DistributedDataParallel on the CPU (gloo, 2 processes) against a single process."""
import json
import os
import subprocess
import sys

import torch

from nin import checkpoint as ckpt
from nin.models import build_model

FLAGS = ["train", "--dataset", "mnist-sample", "--model", "nin_mnist", "--subset", "256",
         "--eval-subset", "200", "--batch-size", "32", "--drop-rate", "0", "--translate", "2",
         "--flip", "--max-steps", "5", "--epochs", "2", "--no-progress",
         "--no-amp"]  # fp32: bf16 sums over 16 and 32 images differ by more than rounding


def _run(args, env_extra=None, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_two_gloo_ranks_equal_one_process(tmp_path):
    # Dropout off: its masks are per-rank random streams; everything else (the global batch,
    # its augmentation draws, the averaged gradient, weight decay, lr) must match exactly.
    _run([sys.executable, "-m", "nin", *FLAGS, "--out", str(tmp_path / "one")])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", "-m", "nin"]
    _run([*torchrun, *FLAGS, "--out", str(tmp_path / "two")])
    a = ckpt.load_checkpoint(tmp_path / "one")[0].state_dict()
    b_model, _, side = ckpt.load_checkpoint(tmp_path / "two")
    b = b_model.state_dict()
    assert side.step == 5 and side.env["world_size"] == 2
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)
    # the weights moved: the comparison is not between two untouched initialisations
    torch.manual_seed(0)
    start = build_model("nin_mnist", drop_rate=0.0).state_dict()
    assert not torch.allclose(start["features.0.0.weight"], a["features.0.0.weight"])
    # only rank 0 wrote: one set of checkpoint files, one log
    assert len(list((tmp_path / "two/checkpoints").glob("*.json"))) == 1
    # resume under torchrun, to the end of epoch 2; evaluation gathers both ranks' counts
    _run([*torchrun, *[f for f in FLAGS if f not in ("--max-steps", "5")], "--resume",
          "--out", str(tmp_path / "two")])
    result = json.loads((tmp_path / "two/result.json").read_text())
    assert result["finished"] and result["final"]["n"] == 200 and result["steps"] == 16


def test_sweep_runs_grid_skips_finished_and_summarizes(tmp_path, capsys):
    from nin.cli import main
    spec = {"out": str(tmp_path / "sw"),
            "base": {"dataset": "mnist-sample", "recipe": "paper", "epochs": 1, "subset": 128,
                     "eval_subset": 100, "batch_size": 32, "init": "kaiming"},
            "grid": {"model": ["nin_mnist", "nin_mnist_bn"], "seed": [0, 1]}}
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps(spec))
    assert main(["sweep", str(f), "--dry-run"]) == 0
    assert "model=nin_mnist-seed=0: would start (1 epochs)" in capsys.readouterr().out
    assert main(["sweep", str(f)]) == 0
    out = capsys.readouterr().out
    assert "| nin_mnist | mnist-sample | paper | none |" in out and "(n=2)" in out
    rows = json.loads((tmp_path / "sw/summary.json").read_text())
    assert [r["model"] for r in rows] == ["nin_mnist", "nin_mnist_bn"]
    for r in rows:
        assert r["n"] == 2 and r["seeds"] == [0, 1]
        import statistics
        assert abs(r["mean"] - statistics.fmean(r["errors"])) < 1e-9
    # a second call finds every run done and trains nothing
    assert main(["sweep", str(f)]) == 0
    out = capsys.readouterr().out
    assert out.count("done already (test error ") == 4
    # a point cut off mid-way: the dry run says where it would resume
    import shutil
    part = tmp_path / "sw" / "model=nin_mnist-seed=1"
    (part / "result.json").unlink()
    assert main(["sweep", str(f), "--dry-run"]) == 0
    step = json.loads(sorted((part / "checkpoints").glob("step-*.json"))[-1].read_text())["step"]
    assert f"model=nin_mnist-seed=1: would resume from epoch 1 of 1 (step {step}, " \
        in capsys.readouterr().out
    shutil.rmtree(part)


def test_a_diverged_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    """A rate pilot that diverges is a result, not the end of the sweep: its folder gets a
    stopped.json saying why, the next point runs, and a rerun does not repeat it."""
    from nin.cli import main
    spec = {"out": str(tmp_path / "sw"),
            "base": {"dataset": "mnist-sample", "recipe": "paper", "model": "nin_mnist",
                     "epochs": 1, "subset": 128, "eval_subset": 100, "batch_size": 32,
                     "init": "kaiming", "amp": False},
            "grid": {"lr": [1e9, 0.01]}}
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps(spec))
    assert main(["sweep", str(f)]) == 0
    stopped = json.loads((tmp_path / "sw/lr=1000000000.0/stopped.json").read_text())
    assert stopped["reason"] in ("NonFiniteLoss", "DeadStartError") and stopped["message"]
    assert (tmp_path / "sw/lr=0.01/result.json").exists()
    assert "the sweep goes on" in capsys.readouterr().out
    assert main(["sweep", str(f)]) == 0
    assert "stopped before" in capsys.readouterr().out
