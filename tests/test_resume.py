"""Runs that can be trusted across changes: resuming old checkpoints, refusing changes that would
alter a run, the optimizer's whole state, SIGTERM, one writer per run folder."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fakedata import small_train_cmd
from nin import checkpoint as ckpt
from nin.config import resolve
from nin.errors import ConfigError
from nin.models import NIN, build_model
from nin.preprocessing import Preprocess
from nin.training import STATE_VERSION, run_lock, train

QUIET = dict(log=lambda *_: None, progress=False)
FIXTURE = Path(__file__).parent / "fixtures" / "resume_from_028d0ab"
FIXTURE_7880BEF = Path(__file__).parent / "fixtures" / "resume_from_7880bef"


def _fixture_cfg(out, **kw):
    """The config the fixture run was started with (by main at commit 028d0ab)."""
    base = dict(subset=256, eval_subset=128, batch_size=32, epochs=2, out=str(out))
    return resolve(dict(recipe="modern", dataset="mnist-sample", **{**base, **kw}))


def _restored(folder):
    """A run built from the fixture's config and restored from its checkpoint, not stepped."""
    from nin.training import build_run, restore
    run = build_run(_fixture_cfg(folder), log=lambda *_: None, ddp=False)
    assert restore(run, resume=True)
    return run


def _resumes_losslessly(tmp_path, fixture):
    """What an old checkpoint must carry, checked value for value against its files (no float
    arithmetic, so on any processor): weights, momentum, both RNG states, the epoch's running
    sums, the counters and the history. Then the continuation: resumed from the old files, the
    run ends bit for bit where it ends when resumed from the same state written by this code's
    format (computed here, so the same kernels on both sides), finished at step 16."""
    from safetensors.torch import load_file
    from nin.training import save
    shutil.copytree(fixture, tmp_path / "old")
    side = tmp_path / "old/checkpoints/step-00000011.json"
    meta = json.loads(side.read_text())
    state = load_file(str(side.with_suffix(".state.safetensors")))
    weights = load_file(str(side.with_suffix(".safetensors")))
    run = _restored(tmp_path / "old")
    s = run.state
    assert (s.step, s.epoch, s.step_in_epoch, s.seen) == (11, 1, 3, 96)
    assert s.history == meta["history"] and run.precision == "fp32" and run.dropout == "torch"
    assert torch.equal(torch.get_rng_state(), state["rng.cpu.0"])
    assert torch.equal(run.data_gen.get_state(), state["rng.data"])
    assert s.loss_sum.item() == state["run.loss_sum.0"].item() > 0
    assert s.correct.item() == state["run.correct.0"].item()
    momentum = ckpt.optimizer_state(run.opt)[0]
    assert len(momentum) == sum(k.endswith("momentum_buffer") for k in state) > 0
    assert all(torch.equal(v, state[k]) for k, v in momentum.items())
    assert all(torch.equal(v, weights[f"model.{k}"]) for k, v in run.model.state_dict().items())
    # the same state, written in this code's format, is the reference continuation
    shutil.copytree(fixture, tmp_path / "new")
    shutil.rmtree(tmp_path / "new/checkpoints")
    run.cfg.out = str(tmp_path / "new")
    (tmp_path / "new/checkpoints").mkdir()
    save(run, "rewritten by the test")
    cut = train(_fixture_cfg(tmp_path / "old"), resume=True, **QUIET)  # keeps its fp32
    ref = train(_fixture_cfg(tmp_path / "new"), resume=True, **QUIET)
    assert cut.finished and cut.steps == 16 and cut.precision == "fp32"
    a = ckpt.load_checkpoint(tmp_path / "new")[0].state_dict()
    b = ckpt.load_checkpoint(tmp_path / "old")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert cut.final["error"] == ref.final["error"]
    assert [h["train_acc"] for h in cut.history] == [h["train_acc"] for h in ref.history]
    assert cut.history[0] == meta["history"][0]  # epoch 1 came from the old run
    return json.loads(ckpt.latest_checkpoint(tmp_path / "old").read_text())


def test_checkpoint_written_by_main_028d0ab_resumes_losslessly(tmp_path):
    """The fixture is a run stopped at step 11 (inside epoch 2) by the code before the
    training loop was restructured. (Its 11 steps were computed on an AVX-512 machine: an
    uninterrupted run elsewhere takes other kernels, so it is not the reference.)"""
    meta = json.loads((FIXTURE / "checkpoints/step-00000011.json").read_text())
    assert "arch" not in meta and "optimizer" not in meta  # really the old format
    _resumes_losslessly(tmp_path, FIXTURE)


def test_checkpoint_written_by_main_7880bef_resumes_losslessly(tmp_path):
    """The same run stopped at step 11 by main at 7880bef (2026-12-03), before the run state
    had a format version and before bf16 on the CPU: it resumes in fp32."""
    meta = json.loads((FIXTURE_7880BEF / "checkpoints/step-00000011.json").read_text())
    assert "state_version" not in meta and "precision" not in meta  # really the old format
    assert _resumes_losslessly(tmp_path, FIXTURE_7880BEF)["state_version"] == STATE_VERSION


def test_a_checkpoint_from_a_newer_nin_is_refused(tmp_path):
    train(_fixture_cfg(tmp_path / "n", max_steps=2), **QUIET)
    side = ckpt.latest_checkpoint(tmp_path / "n")
    meta = json.loads(side.read_text())
    meta["state_version"] = 99
    side.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="newer nin .*version 99"):
        train(_fixture_cfg(tmp_path / "n"), resume=True, **QUIET)


def test_resume_refuses_a_new_length_of_a_onecycle_schedule(tmp_path):
    train(_fixture_cfg(tmp_path / "r", max_steps=3), **QUIET)
    with pytest.raises(ConfigError, match="epochs.*one-cycle schedule"):
        train(_fixture_cfg(tmp_path / "r", epochs=3), resume=True, **QUIET)
    # on a step schedule, more epochs only run longer: allowed
    step = dict(schedule="step", milestones=(1,))
    train(_fixture_cfg(tmp_path / "s", max_steps=3, **step), **QUIET)
    r = train(_fixture_cfg(tmp_path / "s", epochs=1, **step), resume=True, **QUIET)
    assert r.finished and r.epochs_run == 1


def test_the_optimizers_whole_state_is_saved_and_restored(tmp_path):
    train(_fixture_cfg(tmp_path / "o", max_steps=3, momentum=0.8), **QUIET)
    side = ckpt.latest_checkpoint(tmp_path / "o")
    meta = ckpt.read_sidecar(side, check=("weights", "state"))
    groups = meta.run["optimizer"]["param_groups"]
    assert {g["momentum"] for g in groups} == {0.8} and all(g["nesterov"] for g in groups)
    state = ckpt.load_state(meta)
    n_params = sum(1 for _ in ckpt.load_checkpoint(side)[0].parameters())
    assert sum(k.endswith("momentum_buffer") for k in state) == n_params
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sd = opt.state_dict()
    sd["param_groups"][0]["momentum"] = 0.5  # a setting that only the saved state restores
    opt.load_state_dict(sd)
    tensors, plain = ckpt.optimizer_state(opt)
    fresh = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ckpt.load_optimizer_state(fresh, tensors, json.loads(json.dumps(plain)), "cpu")
    assert fresh.param_groups[0]["momentum"] == 0.5


def test_sigterm_writes_a_checkpoint_and_exits_75(tmp_path):
    _interrupt_then_resume(tmp_path / "t", signal.SIGTERM, 75, "SIGTERM")


def test_a_second_run_into_a_live_run_folder_is_refused(tmp_path):
    out = tmp_path / "live"
    with run_lock(out):  # as a running `nin train` holds it
        with pytest.raises(ConfigError, match="another `nin train` .* is writing to this folder"):
            train(_fixture_cfg(out), **QUIET)
    r = train(_fixture_cfg(out, max_steps=1), **QUIET)  # the lock is gone with its holder
    assert r.steps == 1


def test_a_nin_built_directly_is_checkpointed_and_rebuilt(tmp_path):
    torch.manual_seed(0)
    net = NIN([(3, (16, 8)), (3, (8, None))], in_chans=1, num_classes=4, input_size=12,
              drop_rate=0.0).eval()
    side = ckpt.save_checkpoint(tmp_path, 1, net, Preprocess("scale", 1, 12), dict(config={}))
    back, _, meta = ckpt.load_checkpoint(side)  # a Sidecar
    x = torch.randn(2, 1, 12, 12)
    assert meta.model == "NIN" and torch.equal(back(x), net(x))


def test_a_resumed_run_keeps_its_precision(tmp_path):
    """A run checkpointed in fp32 resumes in fp32 under auto (whatever this CPU prefers), and
    --amp (bf16) against it is refused rather than silently changing every later step."""
    train(_fixture_cfg(tmp_path / "p", max_steps=3, amp=False), **QUIET)
    with pytest.raises(ConfigError, match="trained in fp32; resume it in fp32"):
        train(_fixture_cfg(tmp_path / "p", amp=True), resume=True, **QUIET)
    r = train(_fixture_cfg(tmp_path / "p", max_steps=5), resume=True, **QUIET)
    meta = json.loads(ckpt.latest_checkpoint(tmp_path / "p").read_text())
    assert r.steps == 5 and meta["precision"] == "fp32" and "precision" not in meta["env"]
    log = [json.loads(s) for s in (tmp_path / "p/metrics.jsonl").read_text().splitlines()]
    assert log and all(e.get("precision", "fp32") == "fp32" for e in log)


def test_precision_follows_the_processor(monkeypatch):
    from nin import device as dev
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert dev.resolve_precision(cpu, None) == "bf16" and dev.resolve_precision(cpu, False) == "fp32"
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)  # emulated bf16: 2x slower
    assert dev.resolve_precision(cpu, None) == "fp32" and dev.resolve_precision(cpu, True) == "bf16"
    assert dev.resolve_precision(cuda, None) == "bf16" and dev.eval_precision(cpu) == "fp32"
    with dev.autocast(cpu, "bf16"):
        assert torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with dev.autocast(cpu, "fp32"):
        assert torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


def _start_and_wait_for_a_checkpoint(out, env):
    p = subprocess.Popen(small_train_cmd(out), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.time() + 120
    while not list(out.glob("checkpoints/step-*.json")):
        assert p.poll() is None and time.time() < deadline, p.stderr.read()
        time.sleep(0.02)
    return p


def _interrupt_then_resume(out, sig, code: int, name: str):
    """A `nin train` subprocess signalled after its first checkpoint writes one more, says how
    to resume in one line, exits with `code`; --resume then finishes the run."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = _start_and_wait_for_a_checkpoint(out, env)
    p.send_signal(sig)
    assert p.wait(timeout=120) == code
    err = p.stderr.read()
    assert f"{name}: checkpoint written at step" in err and "--resume" in err
    assert "Traceback" not in err
    assert json.loads(ckpt.latest_checkpoint(out).read_text())["reason"] == name
    r = subprocess.run(small_train_cmd(out, "--resume"), env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and (out / "result.json").exists(), r.stderr


def test_ctrl_c_writes_a_checkpoint_and_a_second_stops_at_once(tmp_path):
    _interrupt_then_resume(tmp_path / "c", signal.SIGINT, 130, "Ctrl-C")
    # twice: the second interrupt does not wait for a checkpoint
    from nin.training import StopSignal
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread
        assert stop.flag and stop.name == "Ctrl-C"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)


def test_a_cut_off_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
    from nin.cli import main
    train(_fixture_cfg(tmp_path / "m", max_steps=9, eval_every=1), **QUIET)  # epoch 1 is 8 steps
    log = tmp_path / "m/metrics.jsonl"
    log.write_text(log.read_text() + '{"epoch": 2, "step": 16, "train_lo')  # a crash mid-write
    r = train(_fixture_cfg(tmp_path / "m"), resume=True, **QUIET)
    assert r.finished and "cut-off last line" in capsys.readouterr().err
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["epoch"] for x in rows if not x.get("partial")] == [1, 2]
    log.write_text(log.read_text() + '{"epoch": 3, "ste')
    assert main(["plot", str(tmp_path / "m"), "--out", str(tmp_path / "c.png")]) == 0
    assert "cut-off last line" in capsys.readouterr().err and (tmp_path / "c.png").exists()
    log.write_text('{"epoch": 1, "ste\n' + log.read_text())  # damage before the end: an error
    assert main(["plot", str(tmp_path / "m"), "--out", str(tmp_path / "d.png")]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err


def test_the_dropout_mask_is_the_runs_own(tmp_path):
    """A new bf16 run on the CPU draws random-bits dropout masks, an fp32 run torch's; a bf16
    checkpoint from before the choice was recorded (state version 2) keeps torch's, so it
    resumes bit-equal to the run it continues."""
    train(_fixture_cfg(tmp_path / "b", max_steps=3, amp=True), **QUIET)
    train(_fixture_cfg(tmp_path / "f", max_steps=3, amp=False), **QUIET)
    meta = {k: json.loads(ckpt.latest_checkpoint(tmp_path / k).read_text()) for k in "bf"}
    assert (meta["b"]["dropout"], meta["f"]["dropout"]) == ("bits", "torch")
    side = ckpt.latest_checkpoint(tmp_path / "b")
    old = dict(meta["b"], state_version=2)
    del old["dropout"]
    side.write_text(json.dumps(old))
    r = train(_fixture_cfg(tmp_path / "b", max_steps=5, amp=True), resume=True, **QUIET)
    assert r.dropout == "torch"
    assert json.loads(ckpt.latest_checkpoint(tmp_path / "b").read_text())["dropout"] == "torch"


def test_snapshot_script_keeps_one_newest_checkpoint(tmp_path):
    """scripts/snapshot_run.sh: the newest whole checkpoint replaces the committed one (one path,
    overwritten), with the metrics and the log; a damaged newer one is skipped, as --resume
    skips it; a run with no checkpoint is refused by name."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "snapshot_run.sh"
    run, dest = tmp_path / "run", tmp_path / "dest"
    (run / "checkpoints").mkdir(parents=True)
    (dest / "checkpoints").mkdir(parents=True)
    m = build_model("nin_mnist")
    for step, where in ((10, run), (20, run), (30, run), (5, dest)):
        ckpt.save_checkpoint(where / "checkpoints", step, m, Preprocess("scale"), dict(config={}),
                             state={"rng": torch.zeros(3)})
    damaged = run / "checkpoints" / "step-00000030.state.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-8])
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (tmp_path / "rank1.log").write_text("epoch   2\n")
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(["bash", str(script), str(run), str(dest), str(tmp_path / "rank1.log")],
                       check=True, capture_output=True, text=True, env=env)
    assert "skipping a damaged checkpoint" in r.stderr and str(damaged) in r.stderr
    kept = sorted(p.name for p in (dest / "checkpoints").iterdir())
    assert kept == [f"step-00000020{s}" for s in (".json", ".safetensors", ".state.safetensors")]
    assert ckpt.read_sidecar(dest / "checkpoints" / "step-00000020.json", ("weights", "state"))
    assert (dest / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    assert (dest / "train.log").read_text() == "epoch   2\n"
    assert not list(dest.glob(".snapshot.*"))
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run(["bash", str(script), str(empty), str(dest)], capture_output=True,
                       text=True, env=env)
    assert r.returncode != 0 and f"no checkpoint in {empty}" in r.stderr
    assert len(list((dest / "checkpoints").iterdir())) == 3  # the snapshot there is untouched


def test_a_new_run_into_a_folder_holding_one_is_refused_unless_overwrite(tmp_path):
    """Without --resume, a second run would lose the first one's metrics and result and leave
    its checkpoints for a later --resume to pick up; --overwrite deletes them first."""
    out = tmp_path / "run"
    train(_fixture_cfg(out, max_steps=4), **QUIET)
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match="holds a run already .* continue it with --resume, "
                                          "start over with --overwrite"):
        train(_fixture_cfg(out, max_steps=2), **QUIET)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # nothing lost
    r = train(_fixture_cfg(out, max_steps=2), overwrite=True, **QUIET)
    assert r.steps == 2
    assert not (out / "checkpoints" / "step-00000004.json").exists()  # the old run's are gone
