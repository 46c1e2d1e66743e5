import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import fakedata
from nin import checkpoint as ckpt
from nin import hub
from nin.cli import main
from nin.config import resolve
from nin.errors import ConfigError
from nin.evaluation import ImageError, load_image
from nin.models import build_model
from nin.preprocessing import Preprocess


def test_models_lists_names_and_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "nin_cifar10 " in out and "966,986" in out and "1,986,026" in out
    assert main(["models", "--json", "nin_mnist"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [dict(name="nin_mnist", params=349_674, dataset="mnist",
                         description=rows[0]["description"], pretrained=rows[0]["pretrained"])]


def test_python_dash_m_and_console_script():
    r = subprocess.run([sys.executable, "-m", "nin", "models", "nin_svhn"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "1,986,026" in r.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny real training run on fake MNIST files, through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    import nin.data
    sums = fakedata.write_mnist(root / "data", 256, 64)
    old = dict(nin.data.MD5["mnist"])
    nin.data.MD5["mnist"].update(sums)
    rc = main(["train", "--dataset", "mnist", "--data-dir", str(root / "data"), "--epochs", "1",
               "--batch-size", "32", "--out", str(root / "run"), "--no-progress", "--init",
               "kaiming"])
    yield root, rc
    nin.data.MD5["mnist"].clear()
    nin.data.MD5["mnist"].update(old)


def test_train_then_eval_json(trained, capsys):
    root, rc = trained
    assert rc == 0 and (root / "run/result.json").exists()
    assert (root / "run/metrics.jsonl").read_text().count("\n") == 1
    capsys.readouterr()
    assert main(["eval", "--weights", str(root / "run"), "--data-dir", str(root / "data"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"model", "dataset", "split", "n", "error"} <= set(out)
    assert out["model"] == "nin_mnist" and out["dataset"] == "mnist" and out["n"] == 64
    result = json.loads((root / "run/result.json").read_text())
    assert out["error"] == pytest.approx(result["final"]["error"])
    assert len(out["confusion"]) == 10 and sum(map(sum, out["confusion"])) == 64
    assert main(["eval", "--weights", str(root / "run"), "--data-dir", str(root / "data"),
                 "--tta"]) == 0
    assert "confusion matrix" in capsys.readouterr().out


def test_eval_uses_flip_tta_as_the_run_did(tmp_path, fake_md5, capsys):
    """`nin eval` without --tta/--no-tta evaluates as the run did, so that it reproduces the
    run's error (the modern CIFAR recipe trains with flip TTA; the CI check of shipped weights
    runs plain `nin eval --weights pretrained --model NAME`)."""
    fake_md5("mnist", fakedata.write_mnist(tmp_path / "data", 128, 64))
    run = tmp_path / "run"
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
                 "--epochs", "1", "--batch-size", "32", "--out", str(run), "--no-progress",
                 "--init", "kaiming", "--tta"]) == 0
    stated = json.loads((run / "result.json").read_text())["final"]["error"]
    got = {}
    for flag in ([], ["--no-tta"], ["--tta"]):
        capsys.readouterr()
        assert main(["eval", "--weights", str(run), "--data-dir", str(tmp_path / "data"),
                     "--json"] + flag) == 0
        out = json.loads(capsys.readouterr().out)
        got[tuple(flag)] = out["tta"]
        if not flag:
            assert out["error"] == pytest.approx(stated)
    assert got == {(): True, ("--no-tta",): False, ("--tta",): True}


def test_eval_errors_are_clear(tmp_path, capsys):
    assert main(["eval", "--weights", str(tmp_path / "nope")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["eval", "--weights", "pretrained", "--model", "nin_svhn"]) == 2
    assert "no pretrained weights for nin_svhn" in capsys.readouterr().err


def test_predict_images_of_any_size_and_mode(trained, tmp_path, capsys):
    root, _ = trained
    rng = np.random.default_rng(0)
    paths = []
    for mode, size in (("RGB", (640, 480)), ("RGBA", (31, 77)), ("L", (28, 28)),
                       ("P", (100, 100)), ("1", (50, 40))):
        im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        im = im.convert(mode)
        p = tmp_path / f"img_{mode}.{'jpg' if mode in ('RGB', 'L') else 'png'}"
        im.save(p)
        paths.append(str(p))
    assert main(["predict", *paths, "--weights", str(root / "run"), "--json", "--topk", "3"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res) == 5 and all(len(r["top"]) == 3 for r in res)
    for r in res:
        probs = [t["prob"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_predict_refuses_non_images(trained, tmp_path, capsys):
    root, _ = trained
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["predict", str(bad), "--weights", str(root / "run")]) == 2
    assert "notes.png: not an image" in capsys.readouterr().err
    trunc = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), "red").save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:60])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(trunc, 3, 32)
    with pytest.raises(ImageError, match="a folder, not a picture; give its pictures"):
        load_image(tmp_path, 3, 32)


def test_load_image_resizes_crops_and_applies_exif(tmp_path):
    im = Image.new("RGB", (60, 30), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 30, 30))  # left half white
    p = tmp_path / "wide.jpg"
    im.save(p, quality=95)
    x = load_image(p, 3, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert x[:, :, :8].float().mean() > 200 and x[:, :, -8:].float().mean() < 50
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    p2 = tmp_path / "rot.jpg"
    im.save(p2, exif=exif, quality=95)
    y = load_image(p2, 3, 32)  # displayed upright: the white half is now on top
    assert y[:, :8].float().mean() > 200 and y[:, -8:].float().mean() < 50
    assert load_image(p, 1, 28).shape == (1, 28, 28)


def test_predict_with_a_cifar_checkpoint(tmp_path, capsys):
    m = build_model("nin_cifar10", init="kaiming")
    pre = Preprocess("standardize", 3, 32).fit(torch.randint(0, 255, (64, 3, 32, 32),
                                                             dtype=torch.uint8))
    ckpt.save_checkpoint(tmp_path / "c", 1, m, pre,
                         dict(config={"dataset": "cifar10"}, classes=fakedata_classes()))
    img = tmp_path / "cat.png"
    Image.new("RGB", (200, 120), (200, 120, 40)).save(img)
    assert main(["predict", str(img), "--weights", str(tmp_path / "c"), "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(img)) and out.count("%") == 2


def fakedata_classes():
    from nin.data import CIFAR10_CLASSES
    return CIFAR10_CLASSES


def test_packaged_weights_load_by_name(trained, tmp_path, monkeypatch, capsys):
    """The path the GPU runs' weights will take: package a run, load it by name, evaluate it."""
    root, _ = trained
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "weights")
    side = hub.package(root / "run", "nin_mnist", tmp_path / "weights")
    stated = json.loads(side.read_text())["result"]["final"]["error"]
    m = hub.create_model("nin_mnist", pretrained=True)
    want = ckpt.load_checkpoint(root / "run")[0].state_dict()
    assert all(torch.equal(v, want[k]) for k, v in m.state_dict().items())
    capsys.readouterr()
    assert main(["eval", "--weights", "pretrained", "--model", "nin_mnist", "--data-dir",
                 str(root / "data"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["error"] == pytest.approx(stated, abs=0.05)
    with pytest.raises(ckpt.CheckpointError, match="not nin_cifar10"):
        hub.package(root / "run", "nin_cifar10", tmp_path / "weights")
    # fp16 shipping: about half the bytes, the same network to fp16 rounding, preprocessing fp32
    half = hub.package(root / "run", "nin_mnist", tmp_path / "half", half=True)
    assert json.loads(half.read_text())["dtype"] == "float16"
    size = half.with_suffix(".safetensors").stat().st_size
    assert size < 0.6 * (tmp_path / "weights/nin_mnist.safetensors").stat().st_size
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "half")
    m16, pre16, _ = hub.load_pretrained("nin_mnist")
    for k, v in m16.state_dict().items():
        assert v.dtype == want[k].dtype, k  # loading casts back to fp32
        assert torch.equal(v, want[k].half().to(want[k].dtype)), k


# ---------------------------------------------------------------- the CLI and its boundary
def test_help_answers_without_importing_torch():
    code = ("import sys, contextlib, io\nfrom nin.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n    main(['train', '--recipe', 'modern', '--help'])\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def test_every_config_field_is_a_flag_with_the_recipes_default(capsys):
    import dataclasses

    from nin.config import TrainConfig, resolve
    with pytest.raises(SystemExit):
        main(["train", "--recipe", "modern", "--dataset", "mnist", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "peak learning rate, on the mean loss (default: 0.05)" in text  # modern MNIST
    assert "(default: standardize)" in text and "--no-nesterov" in text
    assert main(["train", "--recipe", "modern", "--dataset", "mnist", "--momentum", "0.8",
                 "--no-nesterov", "--bias-lr-mult", "3", "--no-amp", "--no-channels-last",
                 "--milestones", "2,4", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    want = resolve(dict(recipe="modern", dataset="mnist", momentum=0.8, nesterov=False,
                        bias_lr_mult=3.0,
                       amp=False, channels_last=False, milestones=(2, 4), schedule="step",
                       out="runs/nin_mnist_bn-modern")).to_dict()
    assert cfg == json.loads(json.dumps(want))


def test_nin_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys, tmp_path):
    import nin.cli
    assert main(["train", "--dataset", "mnist-sample", "--model", "nin_cifar10", "--out",
                 str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nin_cifar10 takes (3, 32, 32) images") and err.count("\n") == 1

    def bug(args):
        raise RuntimeError("a real bug")
    monkeypatch.setattr(nin.cli, "cmd_models", bug)
    with pytest.raises(RuntimeError, match="a real bug"):
        main(["models"])


def test_torch_hub_loads_from_hubconf():
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    import importlib.util
    spec = importlib.util.spec_from_file_location("hubconf", repo / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    from nin.models import list_models
    entries = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")]
    assert sorted(entries) == list_models()  # what torch.hub.list shows: the networks only
    m = torch.hub.load(str(repo), "nin_cifar10_bn", source="local")
    assert m.name == "nin_cifar10_bn" and m(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ckpt.CheckpointError, match="no pretrained weights for nin_svhn"):
        torch.hub.load(str(repo), "nin_svhn", source="local", pretrained=True)
    shipped = torch.hub.load(str(repo), "nin_mnist_bn", source="local", pretrained=True)
    want = hub.create_model("nin_mnist_bn", pretrained=True).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in shipped.state_dict().items())
    # another class count: a network to fine-tune (a fresh classifier; test_folder.py)
    assert hub.create_model("nin_mnist_bn", pretrained=True, num_classes=100).num_classes == 100
    # other settings are fixed: asking for them is an error, not a silent ignore
    with pytest.raises(ConfigError, match="drop_rate"):
        hub.create_model("nin_mnist_bn", pretrained=True, drop_rate=0.1)
    with pytest.raises(ConfigError, match="drop_rate"):  # refused before any file is read
        hub.create_model("nin_svhn", pretrained=True, drop_rate=0.1)
    assert hub.create_model("nin_mnist_bn", pretrained=True, num_classes=10).num_classes == 10


def test_shipped_weights_record_their_run():
    """Each shipped network's sidecar names the run it comes from and its test error, which is
    within 0.05 points of the paper's (or under it): we ship nothing worse."""
    from nin.paper import PAPER_ERROR
    from nin.tables import augmented
    assert {"nin_mnist_bn", "nin_cifar10_bn", "nin_cifar10"} <= set(hub.shipped())
    for name in hub.shipped():
        model, pre, side = hub.load_pretrained(name)
        final, c = side.result["final"], side.config
        aug = c["dataset"] == "cifar10" and augmented(c)  # the paper's only augmented row
        paper = PAPER_ERROR[c["dataset"] + ("_aug" if aug else "")]
        assert model.name == name and final["n"] == 10000 and 0 < final["error"] <= paper + 0.05
        assert c["eval_split"] == "test" and not c["subset"]


def test_table_cells_name_what_a_run_changed_from_its_recipe():
    from nin.config import resolve
    from nin.tables import cell, changes
    paper = resolve(dict(recipe="paper", dataset="mnist", init="kaiming", lr=0.01, schedule="step",
                        milestones=(12, 17), epochs=20, seed=4)).to_dict()
    assert changes(paper) == ["init kaiming", "lr 0.01", "schedule step", "milestones 12,17",
                              "epochs 20"]  # the seed and the folder are not recipe changes
    assert changes(resolve(dict(recipe="modern", dataset="mnist", seed=2, out="x")).to_dict()) == []
    older = resolve(dict(recipe="modern", dataset="mnist")).to_dict()
    del older["crop_size"], older["crop_epochs"]  # a run from before these fields existed
    assert changes(older) == []
    row = dict(mean=0.5, std=0.0, n=1, wall_s=[600.0], epochs=[20], config=paper, threads=[2])
    assert cell(row) == ("0.50 (1 seed), no TTA; 20 epochs in fp32, 10 min of training each "
                         "(2 threads); "
                         "changed from the recipe: init kaiming, lr 0.01, schedule step, "
                         "milestones 12,17, epochs 20")


def test_table_cell_shows_the_headline_runs_not_a_short_one():
    """Three seeds of the full schedule outrank one short time-to-accuracy run of the same
    network and recipe, whatever the order they are found in."""
    from nin.config import resolve
    from nin.tables import find
    full = resolve(dict(recipe="modern", dataset="mnist")).to_dict()
    short = resolve(dict(recipe="modern", dataset="mnist", epochs=7)).to_dict()
    common = dict(dataset="mnist", model="nin_mnist_bn", recipe="modern", translate=2,
                  flip=False, std=0.0, wall_s=[600.0], threads=[2])
    rows = [dict(common, mean=0.38, n=1, epochs=[7], config=short),
            dict(common, mean=0.28, n=3, epochs=[12] * 3, config=full)]
    for order in (rows, rows[::-1]):
        assert find(order, "mnist", "nin_mnist_bn", "modern", True).startswith("0.28")
    # a run with TTA is its own line, after the runs without (the paper's protocol)
    tta = dict(common, mean=0.25, n=1, epochs=[12], config=full, tta=True)
    got = find(rows + [tta], "mnist", "nin_mnist_bn", "modern", True).split("<br>")
    assert [g.split(";")[0] for g in got] == ["0.28 ± 0.00 (n=3), no TTA",
                                              "0.25 (1 seed), flip TTA"]
    # a second recipe with as many seeds and epochs is shown beside it, its change named
    biased = resolve(dict(recipe="modern", dataset="mnist", bias_lr_mult=8.0)).to_dict()
    tie = dict(common, mean=0.30, n=3, epochs=[12] * 3, config=biased)
    got = find(rows + [tie], "mnist", "nin_mnist_bn", "modern", True).split("<br>")
    assert [g.split(";")[0] for g in got] == ["0.28 ± 0.00 (n=3), no TTA",
                                              "0.30 ± 0.00 (n=3), no TTA"]
    assert got[1].endswith("changed from the recipe: bias_lr_mult 8.0")


def test_time_to_accuracy_rows_from_runs(tmp_path):
    """The CPU time-to-accuracy row: training seconds to the first epoch at the paper's error,
    and the published schedules priced at the measured full-size epoch (crop epochs excluded)."""
    import importlib
    from pathlib import Path

    from nin.config import resolve
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    tta = importlib.import_module("time_to_accuracy")
    cfg = resolve(dict(recipe="modern", dataset="cifar10", epochs=4, crop_size=24,
                       crop_epochs=2)).to_dict()
    errors = [40.0, 20.0, 8.81, 8.5]
    history = [dict(epoch=e + 1, time_s=t, test_error=err)
               for e, (t, err) in enumerate(zip([100, 100, 180, 200], errors))]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(dict(
        config=cfg, history=history, final=dict(error=8.5), env=dict(threads=2))))
    [row] = tta.from_runs([tmp_path / "run", tmp_path / "missing"])
    assert (row["dataset"], row["seconds"], row["per_seed"][0]["epoch"]) == ("cifar10", 380, 3)
    assert row["full_size_epoch_s"] == 190  # the median of epochs 3 and 4, not the crops
    assert [(p["epochs"], p["hours"]) for p in row["published"]][-1] == (307, 16.2)
    assert row["bias_lr_mult"] is None  # the recipe's default
    # a bias rate off the recipe's default is a recipe of its own: its own row
    (tmp_path / "bias8").mkdir()
    (tmp_path / "bias8" / "result.json").write_text(json.dumps(dict(
        config=dict(cfg, bias_lr_mult=8.0, seed=1), history=history, final=dict(error=8.5),
        env=dict(threads=2))))
    rows = tta.from_runs([tmp_path / "run", tmp_path / "bias8"])
    assert sorted((r["bias_lr_mult"] or 1, r["seeds"]) for r in rows) == [(1, [0]), (8.0, [1])]


def test_an_unfinished_run_shows_what_it_reached(tmp_path):
    """A run committed mid-way (metrics and resume/, no result.json) fills its table cell with
    its last evaluated error and epoch, never a projection; a finished one does not."""
    from nin.config import resolve
    from nin.tables import unfinished
    run = tmp_path / "results" / "cpu" / "r"
    (run / "resume").mkdir(parents=True)
    cfg = resolve(dict(recipe="modern", dataset="cifar10", epochs=75)).to_dict()
    side = ckpt.Sidecar(model=cfg["model"], num_classes=10, preprocess={}, files={}, config=cfg)
    (run / "resume" / "step-00000010.json").write_bytes(side.to_json())
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        dict(epoch=5, test_error=30.0), dict(epoch=6), dict(epoch=6.5, partial=True)]))
    cell = unfinished(tmp_path, "cifar10", cfg["model"], "modern")
    assert cell.startswith("unfinished: 30.00 at epoch 5 of 75")
    assert unfinished(tmp_path, "cifar10", cfg["model"], "paper") is None
    (run / "result.json").write_text("{}")
    assert unfinished(tmp_path, "cifar10", cfg["model"], "modern") is None


def test_an_unfinished_pilot_lists_every_evaluated_epoch(tmp_path):
    """A run snapshotted mid-way (checkpoints/, as scripts/snapshot_run.sh writes) shows in the
    generated block with each evaluated epoch; a stopped or finished one does not."""
    from nin.config import resolve
    from nin.tables import running_table, unfinished
    run = tmp_path / "results" / "cpu" / "p"
    (run / "checkpoints").mkdir(parents=True)
    cfg = resolve(dict(recipe="paper", dataset="cifar10", epochs=100, eval_split="val",
                       train_split="train-val")).to_dict()
    side = ckpt.Sidecar(model=cfg["model"], num_classes=10, preprocess={}, files={}, config=cfg)
    (run / "checkpoints" / "step-00000020.json").write_bytes(side.to_json())
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        dict(epoch=5, test_error=34.0, train_acc=0.634, time_s=60.0, precision="bf16"),
        dict(epoch=6, time_s=60.0), dict(epoch=6.5, partial=True)]))
    text = "\n".join(running_table(tmp_path))
    assert "epoch 6 of 100 reached after 2 minutes" in text and "bf16 training" in text
    assert "| validation error % | 34.00 |" in text and "| training accuracy % | 63.4 |" in text
    assert unfinished(tmp_path, "cifar10", cfg["model"], "paper") is None  # val: not a result
    (run / "metrics.jsonl").write_text(json.dumps(dict(epoch=2, time_s=90.0)))
    assert "epoch 2 of 100 reached after 2 minutes of training; not evaluated yet (every " \
        in "\n".join(running_table(tmp_path))  # before its first evaluation: listed still
    (run / "stopped.json").write_text("{}")
    assert running_table(tmp_path) == ["No run is unfinished."]


def test_config_files_follow_the_rules_of_flags(tmp_path, capsys):
    """A config file is checked as flags are, resolved in the same order (defaults, recipe,
    its dataset settings, the file, then flags), and a sweep file is sent to `nin sweep`."""
    from nin.config import resolve

    def cfg_of(content, *flags):
        f = tmp_path / "c.json"
        f.write_text(json.dumps(content))
        code = main(["train", "--config", str(f), *flags, "--print-config"])
        out, err = capsys.readouterr()
        return (json.loads(out) if code == 0 else err.strip()), code

    got, code = cfg_of({"dataset": "mnist-sample", "recipe": "modern", "_doc": "a note"})
    assert code == 0 and got["model"] == "nin_mnist_bn" and got["lr"] == resolve(dict(
        recipe="modern", dataset="mnist-sample")).lr and got["out"] == "runs/nin_mnist_bn-modern"
    got, _ = cfg_of({"dataset": "mnist", "lr": 0.02}, "--recipe", "modern")  # flags last
    assert got["recipe"] == "modern" and got["lr"] == 0.02 and got["preprocess"] == "standardize"
    for content, msg in [({"lerning_rate": 0.1}, "unknown setting 'lerning_rate'"),
                         ({"lr": "fast"}, 'lr must be a number, not "fast"'),
                         ({"subset": 1.5}, "subset must be a whole number or null"),
                         ({"flip": 1}, "flip must be true or false"),
                         ({"base": {}, "grid": {}}, "is a sweep file.*nin sweep")]:
        err, code = cfg_of(content)
        assert code == 2 and re.search(msg, err) and "c.json" in err and "\n" not in err, err
    # a result.json is a config file too (its "config")
    got, code = cfg_of({"config": resolve(dict(recipe="modern", dataset="mnist",
                                               epochs=3)).to_dict()})
    assert code == 0 and got["epochs"] == 3 and got["model"] == "nin_mnist_bn"


def test_train_help_shows_where_runs_go(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--recipe", "modern", "--dataset", "mnist", "--help"])
    assert "(default: runs/nin_mnist_bn-modern)" in " ".join(capsys.readouterr().out.split())


def test_one_resolver_serves_help_sweep_and_demo(tmp_path, capsys):
    """--help shows what the recipe, the model and a --config file resolve to (one parse); a
    sweep's points are checked as config files are, before anything runs; the demo's config
    comes from the same resolver; flag types come from the annotations."""
    from nin.cli import _flag_type
    from nin.config import DEMO, resolve
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"recipe": "modern", "dataset": "mnist", "lr": 0.03}))
    with pytest.raises(SystemExit):
        main(["train", "--config", str(f), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "on the mean loss (default: 0.03)" in text and "(default: runs/nin_mnist_bn-modern)" \
        in text
    with pytest.raises(SystemExit):
        main(["train", "--model", "nin_mnist", "-h"])  # the model names its dataset
    assert "(default: scale)" in " ".join(capsys.readouterr().out.split())
    bad = tmp_path / "sweep.json"
    bad.write_text(json.dumps({"out": str(tmp_path / "s"), "base": {"recipe": "modern"},
                               "grid": {"seed": [0, 1], "lerning_rate": [0.1]}}))
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'lerning_rate'" in err and "sweep.json" in err and \
        err.count("\n") == 1 and not (tmp_path / "s").exists()
    demo = resolve(DEMO)
    assert (demo.model, demo.dataset, demo.out, demo.epochs) == \
        ("nin_mnist_bn", "mnist-sample", "runs/demo", DEMO["epochs"])
    assert _flag_type("subset") is int and _flag_type("lr") is float and \
        _flag_type("milestones")("2,4") == (2, 4)


def test_every_shipped_config_file_resolves():
    """Each file in configs/ is a sweep whose every run is checked and resolves (a typo in a
    key or a type fails here, not hours into a run)."""
    from pathlib import Path

    from nin.config import resolve
    from nin.sweep import expand, load_spec
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.rglob("*.json"))
    assert files and not list(root.glob("*.json")), "configs/ is ordered in purpose folders"
    purposes = {"paper", "modern", "clock", "ablations", "pilots"}
    assert {f.parent.name for f in files} <= purposes, "a new purpose: add it to docs/usage.md"
    for f in files:
        for name, settings in expand(load_spec(f), f):
            assert resolve(settings).dataset in ("cifar10", "cifar100", "mnist", "svhn"), name


def test_sweep_grid_list_runs_each_point_once_in_order(tmp_path):
    """A list of grids: seed 0 for three networks, then seed 1 for two of them (seed 0's points
    listed again run once)."""
    from nin.sweep import expand, load_spec
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps({"out": "x", "base": {"dataset": "cifar10", "epochs": 1},
                             "grid": [{"model": ["nin_cifar10", "nin_cifar10_fc", "cnn_cifar10_gap"],
                                       "seed": [0]},
                                      {"model": ["nin_cifar10", "nin_cifar10_fc"], "seed": [0, 1]}]}))
    names = [name for name, _ in expand(load_spec(f))]
    assert names == ["model=nin_cifar10-seed=0", "model=nin_cifar10_fc-seed=0",
                     "model=cnn_cifar10_gap-seed=0", "model=nin_cifar10-seed=1",
                     "model=nin_cifar10_fc-seed=1"]
    f.write_text(json.dumps({"out": "x", "grid": [{"seed": [0]}, {"seed": 1}]}))
    with pytest.raises(ConfigError, match="list of such objects"):
        load_spec(f)


@pytest.mark.parametrize("text, says", [
    ("[]", "a sweep is a JSON object"),
    ('{"out": 5, "grid": {"seed": [0]}}', "a sweep is a JSON object"),
    ('{"out": "x", "base": [], "grid": {"seed": [0]}}', "a sweep is a JSON object"),
    ('{"out": "x", "grid": {"seed": [0], "lr": []}}', "the grid has no points"),
    ('{"out": "x",', "not a readable sweep file")])
def test_sweep_refuses_a_misshapen_file_in_one_line(tmp_path, capsys, text, says):
    """Not a traceback from inside, and not a sweep that silently runs nothing."""
    f = tmp_path / "sweep.json"
    f.write_text(text)
    assert main(["sweep", str(f), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"error: {f}: {says}" in err and "Traceback" not in err


def test_eval_refuses_a_shift_tta_out_of_range(tmp_path, capsys):
    from nin.cli import main
    assert main(["eval", "--weights", str(tmp_path / "none"), "--tta-shift", "9"]) == 2
    assert "--tta-shift 9: use 0 (off) to 8 pixels" in capsys.readouterr().err


def test_models_say_which_have_shipped_weights(capsys):
    """`nin models` tags the networks with shipped weights with their recorded test error."""
    import nin.hub
    assert main(["models", "nin_mnist*", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    shipped = set(nin.hub.shipped())
    assert {n for n, r in rows.items() if r["pretrained"]} == shipped & set(rows)
    sidecar = json.loads((nin.hub.WEIGHTS_DIR / "nin_mnist_bn.json").read_text())
    assert rows["nin_mnist_bn"]["pretrained"]["error"] == sidecar["result"]["final"]["error"]
    assert main(["models", "nin_mnist_bn"]) == 0
    assert "[pretrained: " in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, says", [
    ("--epochs", "0", "--epochs 0: must be 1 or more"),
    ("--batch-size", "0", "--batch-size 0: must be 1 or more"),
    ("--lr", "-0.1", "--lr -0.1: must be above 0"),
    ("--subset", "-5", "--subset -5: must be 1 or more"),
    ("--momentum", "1", "--momentum 1: must be from 0 up to (not including) 1"),
    ("--drop-rate", "1.5", "--drop-rate 1.5: must be from 0 up to (not including) 1"),
    ("--translate", "40", "--translate 40: must be from 0 to 16 pixels"),
    ("--seed", "-1", "--seed -1: must be 0 or more")])
def test_train_refuses_a_setting_out_of_range_before_reading_data(tmp_path, capsys, flag, value,
                                                                  says):
    """Not a crash deep inside (batch 0), nor a run that trains on nothing (epochs 0) or on a
    slice counted from the end (subset -5)."""
    out = tmp_path / "run"
    assert main(["train", flag, value, "--out", str(out)]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_outputs_that_cannot_be_written_are_one_line(tmp_path, capsys):
    """A folder under a file: `nin maps` cannot make it, `nin plot` cannot write its figure."""
    from PIL import Image
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    picture = tmp_path / "digit.png"
    Image.new("L", (28, 28), 255).save(picture)
    assert main(["maps", str(picture), "--weights", "pretrained", "--model", "nin_mnist_bn",
                 "--out", str(blocker / "maps")]) == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'maps'}: cannot make this folder" in err and "Traceback" not in err
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps(
        dict(epoch=1, step=10, lr=0.1, train_loss=1.0, train_acc=0.5, eval_error=40.0,
             wall_s=1.0)) + "\n")
    assert main(["plot", str(run), "--out", str(blocker / "curves.png")]) == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'curves.png'}: cannot write there" in err and "Traceback" not in err
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("dataset, train_split, eval_split", [
    ("cifar10", "train", "val"), ("cifar10", "test", "test"), ("cifar10", "train-val", "train"),
    ("svhn", "extra", "val"), ("folder", "train", "train")])
def test_train_refuses_to_score_images_it_trains_on(dataset, train_split, eval_split):
    """val is the end of train (SVHN's: of train and extra): scoring it after training on train
    would be a silent wrong answer."""
    with pytest.raises(ConfigError, match=f"--train-split {train_split} with --eval-split "
                                          f"{eval_split}: the scored images would be among"):
        resolve(dict(dataset=dataset, train_split=train_split, eval_split=eval_split))
    for ok in (("train", "test"), ("train-val", "val"), ("train-val", "test")):
        resolve(dict(dataset=dataset, train_split=ok[0], eval_split=ok[1]))


def test_eval_on_another_datasets_images_is_one_line(tmp_path, fake_md5, capsys):
    """The MNIST network given CIFAR-10: named in one line, not a convolution's shape error."""
    fake_md5("cifar10", fakedata.write_cifar10_binary(tmp_path / "data"))
    assert main(["eval", "--weights", "pretrained", "--model", "nin_mnist_bn", "--dataset",
                 "cifar10", "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert ("cifar10/test holds 10 classes of 3-channel 32x32 images; nin_mnist_bn takes 10 "
            "classes of 1-channel 28x28: score it on its own dataset (mnist)") in err


def test_models_pattern_with_no_match_and_bad_milestones_are_one_line(capsys):
    assert main(["models", "zzz*"]) == 2
    assert "no registered network matches 'zzz*'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--milestones", "a,b"])
    assert "'a,b': give whole numbers separated by commas" in capsys.readouterr().err
