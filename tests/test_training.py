import json
import math

import pytest
import torch

import nin
import nin.training
from nin.errors import ConfigError, DeadStartError
from nin import checkpoint as ckpt
from nin.models import build_model
from nin.preprocessing import Preprocess
from nin.config import resolve
from nin.training import Schedule, train


def _cfg(tmp_path, name, recipe="paper", **kw):
    base = dict(epochs=2, subset=256, eval_subset=128, batch_size=32, out=str(tmp_path / name),
                patience=1)
    base.update(kw)
    return resolve(dict(recipe=recipe, dataset="mnist-sample", **base))


def _weights(out):
    model, pre, meta = ckpt.load_checkpoint(out)
    return model.state_dict(), meta


@pytest.mark.parametrize("recipe,kw", [("paper", dict(amp=False)), ("modern", dict(amp=False)),
                                       # bf16 autocast (native or emulated: forced by amp=True)
                                       ("modern", dict(amp=True)),
                                       # progressive resizing: cut in the crop epoch and after
                                       ("modern", dict(crop_size=20, crop_epochs=1)),
                                       # a moving average of the weights, saved and restored
                                       ("modern", dict(ema=0.9, amp=False)),
                                       # whitened first conv, frozen (its hook set on resume)
                                       ("modern", dict(whiten="frozen", amp=False)),
                                       # lookahead's slow weights (cut between its pulls)
                                       ("modern", dict(lookahead=True, bn_momentum=0.4,
                                                       amp=False))])
def test_resumed_run_equals_uninterrupted(tmp_path, recipe, kw):
    quiet = dict(log=lambda *_: None, progress=False)
    full = train(_cfg(tmp_path, "full", recipe, **kw), **quiet)
    # the same run killed twice: inside epoch 1 and inside epoch 2, resumed each time
    r = train(_cfg(tmp_path, "cut", recipe, max_steps=3, **kw), **quiet)
    assert r.finished is False
    r = train(_cfg(tmp_path, "cut", recipe, max_steps=13, **kw), resume=True, **quiet)
    assert r.finished is False
    cut = train(_cfg(tmp_path, "cut", recipe, **kw), resume=True, **quiet)
    a, _ = _weights(tmp_path / "full")
    b, side = _weights(tmp_path / "cut")
    meta = side.run
    assert side.step == 16 and meta["epoch"] == 2
    assert meta["dropout"] == ("bits" if meta["precision"] == "bf16" else "torch")
    from nin.device import resolve_precision  # amp unset: what this CPU prefers
    assert meta["precision"] == full.precision == resolve_precision(torch.device("cpu"),
                                                                    kw.get("amp"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.final["error"] == cut.final["error"]
    strip = [{k: v for k, v in h.items() if k not in ("time_s", "images_per_s")}
             for h in full.history]
    assert strip == [{k: v for k, v in h.items() if k not in ("time_s", "images_per_s")}
                     for h in cut.history]
    # the metrics log holds each full epoch once, in order
    log = [json.loads(line) for line in (tmp_path / "cut/metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log if not e.get("partial")] == [1, 2]


def test_seed_makes_cpu_runs_repeatable(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    train(_cfg(tmp_path, "a", epochs=1), **quiet)
    train(_cfg(tmp_path, "b", epochs=1), **quiet)
    train(_cfg(tmp_path, "c", epochs=1, seed=1), **quiet)
    a, b, c = (_weights(tmp_path / n)[0] for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_result_json_and_log(tmp_path):
    r = train(_cfg(tmp_path, "r", epochs=1), log=lambda *_: None, progress=False)
    saved = json.loads((tmp_path / "r/result.json").read_text())
    assert saved["final"]["error"] == r.final["error"] and saved["final"]["n"] == 128
    assert saved["config"]["recipe"] == "paper" and saved["config"]["lr"] == 0.1
    assert saved["env"]["torch"] == torch.__version__ and saved["params"] == 349_674
    assert len(saved["history"]) == 1 and "test_error" in saved["history"][0]
    assert saved["history"][0]["threads"] == torch.get_num_threads()  # each epoch's own


def test_dead_start_is_detected(tmp_path, monkeypatch):
    def dead_model(name, **kw):
        m = build_model(name, **kw)
        torch.nn.init.constant_(m.last_layer().bias, -100.0)  # the ReLU before GAP: all zero
        return m
    monkeypatch.setattr(nin.training, "build_model", dead_model)
    with pytest.raises(DeadStartError,
                       match=r"dead start: for 100 steps.*\[0, 1, 2.*ln 10 = 2\.30.*"
                             r"--init kaiming"):
        train(_cfg(tmp_path, "dead", subset=640, epochs=6, patience=10), log=lambda *_: None,
              progress=False)


def test_a_single_dead_class_is_detected(tmp_path, monkeypatch):
    def one_dead(name, **kw):
        m = build_model(name, **kw)
        with torch.no_grad():
            m.last_layer().bias[3] = -100.0  # class 3's map is zero for every image
        return m
    monkeypatch.setattr(nin.training, "build_model", one_dead)
    # 20 dead steps, checked every 5 (not 100 and 50): bf16 is emulated, slowly, on most CPUs
    monkeypatch.setattr(nin.training, "DEAD_STEPS", 20)
    monkeypatch.setattr(nin.training, "SYNC_EVERY", 5)
    for amp in (False, True):  # fp32 and bf16 (forced: native or emulated)
        with pytest.raises(DeadStartError, match=r"class map\(s\) \[3\]"):
            train(_cfg(tmp_path, f"dead3-{amp}", subset=640, epochs=6, init="kaiming",
                       patience=10, lr=1e-3, amp=amp), log=lambda *_: None, progress=False)


def test_resume_refuses_another_config(tmp_path):
    train(_cfg(tmp_path, "x", max_steps=2), log=lambda *_: None, progress=False)
    with pytest.raises(ValueError, match="config differs.*lr"):
        train(_cfg(tmp_path, "x", lr=0.05), resume=True, log=lambda *_: None, progress=False)
    # when to evaluate does not change the training: a resumed run may change it
    r = train(_cfg(tmp_path, "x", eval_every=2, max_steps=3), resume=True,
              log=lambda *_: None, progress=False)
    assert r.steps == 3 and r.finished is False


def test_unwritable_output_is_reported_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot write the run's output"):
        train(_cfg(tmp_path, "file/run"), log=lambda *_: None, progress=False)


def test_plateau_schedule_drops_twice_then_stops():
    cfg = resolve(dict(recipe="paper", dataset="cifar10", patience=2))
    s = Schedule(cfg, 10)
    msgs = [s.end_epoch(a) for a in [0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]]
    assert s.factor(0) == pytest.approx(0.01) and s.drops == 2 and s.stop
    assert sum(m is not None and "lr /= 10" in m for m in msgs) == 2
    onecycle = Schedule(resolve(dict(recipe="modern", dataset="cifar10", epochs=10)), 10)
    assert onecycle.factor(0) < onecycle.factor(19) == 1.0 and onecycle.factor(99) < 0.02
    step = Schedule(resolve(dict(recipe="paper", dataset="cifar10", schedule="step",
                                 milestones=(2, 3))), 10)
    assert [step.factor(i) for i in (19, 20, 30)] == pytest.approx([1, 0.1, 0.01])


# ---------------------------------------------------------------- checkpoints
def _save(tmp_path, name="nin_mnist"):
    m = build_model(name)
    pre = Preprocess("scale", m.in_chans, m.input_size)
    return ckpt.save_checkpoint(tmp_path, 7, m, pre, dict(config={}, classes=list("0123456789")),
                                state={"x": torch.zeros(3)}), m


def test_checkpoint_round_trip_and_rotation(tmp_path):
    side, m = _save(tmp_path)
    m2, pre, back = ckpt.load_checkpoint(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                 m2.state_dict().values()))
    assert back.step == 7 and pre.kind == "scale"
    assert ckpt.load_checkpoint(side.with_suffix(".safetensors"))[2].step == 7
    for step in (8, 9, 10):
        ckpt.save_checkpoint(tmp_path, step, m, pre, dict(config={}))
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["step-00000009.json",
                                                               "step-00000010.json"]


def test_truncated_or_corrupt_checkpoint_is_named(tmp_path):
    side, _ = _save(tmp_path)
    w = side.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(ckpt.CheckpointError, match=f"{w}: sha256 does not match"):
        ckpt.load_checkpoint(side)
    side.write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="unreadable checkpoint sidecar"):
        ckpt.load_checkpoint(side)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    side, _ = _save(tmp_path)
    meta = json.loads(side.read_text())
    meta["model"] = "nin_cifar10"
    side.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="do not fit"):
        ckpt.load_checkpoint(side)


def test_missing_pretrained_weights_say_so():
    with pytest.raises(ckpt.CheckpointError, match="no pretrained weights for nin_svhn"):
        nin.create_model("nin_svhn", pretrained=True)


def test_loss_of_a_fresh_model_is_near_ln10():
    """The paper's std-0.05 init: outputs near zero, so every class near 1/10 and the loss
    near ln 10 (why a dead start is hard to tell from a slow one). He init starts far from it,
    with every class map alive."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    paper = build_model("nin_cifar10").eval()(x)
    assert abs(torch.nn.functional.cross_entropy(paper, y).item() - math.log(10)) < 0.01
    kaiming = build_model("nin_cifar10", init="kaiming").eval()(x)
    assert kaiming.std(1).min() > 0
    assert torch.nn.functional.cross_entropy(kaiming, y).item() > math.log(10) + 0.5
    # kaiming_zero: He's body, but every class map alive everywhere and the classes tied
    zero = build_model("nin_cifar10", init="kaiming_zero").eval()
    assert (zero.forward_maps(x) > 0).all()
    assert abs(torch.nn.functional.cross_entropy(zero(x), y).item() - math.log(10)) < 1e-5
    assert zero.features[0][0].weight.std() > 0.05  # He's std for 75 inputs is 0.16


def test_resume_when_max_steps_is_already_reached(tmp_path):
    """Resuming inside an epoch with a max_steps already met stops again, cleanly."""
    train(_cfg(tmp_path, "m", max_steps=3), log=lambda *_: None, progress=False)
    r = train(_cfg(tmp_path, "m", max_steps=3), resume=True, log=lambda *_: None,
              progress=False)
    assert r.finished is False and r.steps == 3
    side = ckpt.read_sidecar(ckpt.latest_checkpoint(tmp_path / "m"), check=("weights", "state"))
    assert side.step == 3 and side.run["step_in_epoch"] == 3


def test_alternating_flips_mirror_each_image_in_every_other_epoch(tmp_path):
    """--alternate-flips: the images mirrored in even epochs are drawn once from the seed, and
    odd epochs mirror the others: over two epochs each image is seen once each way."""
    import torch

    from nin.preprocessing import augment
    from nin.training import alternating_flips
    start = alternating_flips(1000, 0, torch.device("cpu"))
    assert 400 < int(start.sum()) < 600 and torch.equal(start, alternating_flips(1000, 0, "cpu"))
    assert not torch.equal(start, alternating_flips(1000, 1, torch.device("cpu")))
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    both = [augment(x, flip=True, flips=start[:2] ^ bool(epoch % 2)) for epoch in (0, 1)]
    for i in range(2):
        assert {both[0][i].flip(-1).equal(x[i]), both[1][i].flip(-1).equal(x[i])} == {True, False}
    r = train(_cfg(tmp_path, "alt", flip=True, alternate_flips=True, epochs=2, amp=False),
              log=lambda *_: None, progress=False)
    assert r.finished and r.config.alternate_flips


def test_the_weights_average_is_what_is_scored_and_saved(tmp_path):
    """--ema: the checkpoint's weights are the average (its error is the run's), training's
    own weights differ from it and are kept in the run state for resuming."""
    import torch

    from nin.evaluation import evaluate
    from nin.training import load_data
    cfg = _cfg(tmp_path, "ema", "modern", ema=0.9, amp=False)
    r = train(cfg, log=lambda *_: None, progress=False)
    model, pre, side = ckpt.load_checkpoint(tmp_path / "ema")
    _, test_ds = load_data(cfg, torch.device("cpu"), log=lambda *_: None)
    assert evaluate(model, pre, test_ds, precision="fp32")["error"] == r.final["error"]
    assert side.run["ema"] is True and side.run["state_version"] == nin.training.STATE_VERSION
    state = ckpt.load_state(side)
    raw = {k[len("train."):]: v for k, v in state.items() if k.startswith("train.")}
    assert raw.keys() == model.state_dict().keys()
    assert any(not torch.equal(raw[k], v) for k, v in model.state_dict().items()
               if v.is_floating_point())


def test_lookahead_pulls_the_weights_to_the_slow_copy():
    """d = 0.5: the slow copy goes halfway and the weights go back to it; d = 1: the fast steps
    are thrown away; integer buffers (batch norm's count) are left alone. The decay runs from 0
    at the start to 0.95^5 at the end, as a cube."""
    from nin.training import lookahead, lookahead_decay
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    slow = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    fast = {k: v.clone() for k, v in net.state_dict().items()}
    lookahead(slow, net, 0.5)
    for k, v in net.state_dict().items():
        want = fast[k] if not v.is_floating_point() else fast[k] / 2
        assert torch.equal(v, want), k
        if v.is_floating_point():
            assert torch.equal(slow[k], want), k
    with torch.no_grad():
        net[0].weight.add_(1.0)
    lookahead(slow, net, 1.0)
    assert torch.equal(net[0].weight, fast["0.weight"] / 2)
    assert lookahead_decay(0, 100) == 0 and lookahead_decay(50, 100) == 0.95 ** 5 / 8
    assert lookahead_decay(100, 100) == 0.95 ** 5


def test_lookahead_run_ends_each_epoch_on_its_slow_weights(tmp_path):
    """The weights a lookahead run saves at an epoch's end are its slow copy (kept in the run
    state for resuming), and the run differs from the same run without it; --bn-momentum sets
    every batch norm's."""
    from nin.training import build_run
    quiet = dict(log=lambda *_: None, progress=False)
    cfg = _cfg(tmp_path, "la", "modern", lookahead=True, bn_momentum=0.4, amp=False)
    run = build_run(cfg, log=lambda *_: None, ddp=False)
    bns = [m for m in run.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.4 for m in bns)
    train(cfg, **quiet)
    train(_cfg(tmp_path, "plain", "modern", bn_momentum=0.4, amp=False), **quiet)
    a, side = _weights(tmp_path / "la")
    slow = {k[len("slow."):]: v for k, v in ckpt.load_state(side).items()
            if k.startswith("slow.")}
    assert slow.keys() == a.keys()
    assert all(torch.equal(a[k], slow[k]) for k in a if a[k].is_floating_point())
    b, _ = _weights(tmp_path / "plain")
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_dirac_run_starts_from_the_identity(tmp_path):
    """--dirac on a fresh run (not on resume: the checkpoint's weights win): nin_mnist_bn's
    1x1 layers (all narrowing, e.g. 96 -> 64) start by passing their first input channels
    on; without it they do not."""
    from nin.training import build_run, restore
    for dirac in (True, False):
        cfg = _cfg(tmp_path, f"d{dirac}", "modern", dirac=dirac, amp=False)
        run = build_run(cfg, log=lambda *_: None, ddp=False)
        restore(run, resume=False)
        ones = [m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)
                and m.kernel_size == (1, 1) and m is not run.model.last_layer()]
        assert len(ones) == 5
        assert all(torch.equal(m.weight[:, :, 0, 0], torch.eye(m.out_channels, m.in_channels))
                   for m in ones) is dirac


def test_lookahead_and_bn_momentum_refuse_bad_settings(tmp_path):
    base = dict(recipe="modern", dataset="mnist-sample")
    with pytest.raises(ConfigError, match="--lookahead and --ema"):
        resolve(dict(base, lookahead=True, ema=0.9))
    with pytest.raises(ConfigError, match="plateau schedule"):
        resolve(dict(base, lookahead=True, schedule="plateau"))
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=f"--bn-momentum {bad}"):
            resolve(dict(base, bn_momentum=bad))
    with pytest.raises(ConfigError, match="--dirac sets the convs"):
        resolve(dict(base, dirac=True, weights="pretrained"))
    with pytest.raises(ConfigError, match="nin_mnist has no batch norm"):
        train(_cfg(tmp_path, "nobn", "paper", bn_momentum=0.4), log=lambda *_: None,
              progress=False)


def test_ema_and_alternating_flips_refuse_bad_settings():
    with pytest.raises(ConfigError, match="--ema 1.0: the decay"):
        resolve(dict(recipe="modern", dataset="mnist-sample", ema=1.0))
    with pytest.raises(ConfigError, match="--alternate-flips needs --flip"):
        resolve(dict(recipe="paper", dataset="mnist-sample", alternate_flips=True))


@pytest.mark.parametrize("mode", ["frozen", "trained"])
def test_whitened_filters_stay_frozen_or_train(tmp_path, mode):
    """--whiten fills 2 x 25 of the MNIST network's 192 first filters (5x5 patches, one
    channel); frozen, they end the run as they started (no step, no weight decay moves them)
    while the other filters train; trained, they move too."""
    from nin.models import first_conv, whiten_first_conv
    from nin.training import build_run, restore
    quiet = dict(log=lambda *_: None, progress=False)
    cfg = _cfg(tmp_path, mode, "modern", whiten=mode, max_steps=6, amp=False)
    run = build_run(cfg, log=lambda *_: None, ddp=False)
    restore(run, resume=False)
    start = first_conv(run.model).weight.detach().clone()
    probe = build_model("nin_mnist_bn")
    assert whiten_first_conv(probe, run.pre(run.train_ds.images[:5000])) == 50
    assert torch.allclose(start[:50], first_conv(probe).weight[:50])  # the init is the whitening
    train(cfg, **quiet)
    end = first_conv(ckpt.load_checkpoint(tmp_path / mode)[0]).weight
    assert not torch.allclose(end[50:], start[50:])
    assert torch.equal(end[:50], start[:50]) == (mode == "frozen")


def test_whiten_refuses_pretrained_weights(tmp_path):
    with pytest.raises(ConfigError, match="--whiten .*--weights"):
        _cfg(tmp_path, "w", "modern", whiten="trained", weights="pretrained")


def test_eval_every_from_scores_every_epoch_near_the_end(tmp_path):
    """eval_every 10 alone scores only the last epoch of 3; with eval_every_from 2 the
    evaluation schedule is a setting: epochs 2 and 3 are scored, epoch 1 is not."""
    r = train(_cfg(tmp_path, "e", "modern", epochs=3, eval_every=10, eval_every_from=2,
                   amp=False), log=lambda *_: None, progress=False)
    assert ["test_error" in h for h in r.history] == [False, True, True]


def test_the_environment_names_the_processor(tmp_path, monkeypatch):
    """Speeds are compared only between runs on one processor: every result records its model
    name with family and model numbers (a first-generation Zen is family 23, a Zen 4 family 25)."""
    import nin.device
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\n"
                    "model name\t: AMD EPYC 7601 32-Core Processor\nflags\t\t: fpu avx2\n")
    real = nin.device.Path
    monkeypatch.setattr(nin.device, "Path", lambda p: info if p == "/proc/cpuinfo" else real(p))
    assert nin.device.cpu_model() == "AMD EPYC 7601 32-Core Processor (family 23 model 1)"
    monkeypatch.setattr(nin.device, "Path", lambda p: tmp_path / "absent")
    assert nin.device.cpu_model()  # no /proc (not Linux): the platform's name
    monkeypatch.setattr(nin.device, "Path", real)
    assert "cpu_model" in nin.device.environment(torch.device("cpu"))
