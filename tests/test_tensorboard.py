"""nin train --tensorboard: the scalars TensorBoard shows are metrics.jsonl's, one per epoch,
and each evaluation adds the class-maps grid; without the extra installed, a one-line error."""
import json

import pytest

from nin.cli import main


def test_tensorboard_logs_hold_the_runs_metrics_and_maps(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="the nin[tensorboard] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist-sample", "--recipe", "modern", "--epochs", "2",
                 "--subset", "256", "--eval-subset", "64", "--batch-size", "64",
                 "--out", str(out), "--tensorboard", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ev = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    for key, tag in (("train_loss", "loss/train"), ("test_error", "error/test"), ("lr", "lr")):
        got = ev.Scalars(tag)
        assert [e.step for e in got] == [r["epoch"] for r in rows]
        assert [e.value for e in got] == pytest.approx([r[key] for r in rows], rel=1e-6)
    maps = ev.Images("class_maps")
    assert [m.step for m in maps] == [1, 2] and maps[0].width > 200


def test_tensorboard_flag_without_the_extra_is_one_line(tmp_path, monkeypatch, capsys):
    import builtins
    real = builtins.__import__

    def no_tensorboard(name, *a, **kw):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert main(["train", "--dataset", "mnist-sample", "--epochs", "1", "--subset", "64", "--batch-size", "32",
                 "--out", str(tmp_path / "run"), "--tensorboard", "--no-progress"]) != 0
    assert "pip install -e '.[tensorboard]'" in capsys.readouterr().err
