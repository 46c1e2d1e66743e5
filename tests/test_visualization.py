import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from nin import checkpoint as ckpt
from nin.cli import main
from nin.data import load_dataset
from nin.export import export_onnx
from nin.models import build_model
from nin.preprocessing import Preprocess
from nin.config import resolve
from nin.training import train
from nin.visualization import box_from_map, class_maps, localize


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """nin_mnist briefly trained on the embedded sample (so its maps mean something)."""
    out = tmp_path_factory.mktemp("vis") / "run"
    cfg = resolve(dict(recipe="modern", dataset="mnist-sample", subset=2560, eval_subset=500,
                       batch_size=64,
                      lr=0.1, warmup_epochs=0.2, epochs=1, out=str(out)))
    train(cfg, log=lambda *_: None, progress=False)
    return out


def test_maps_by_dataset_index(run, tmp_path, capsys):
    assert main(["maps", "--weights", str(run), "--dataset", "mnist-sample", "--index", "0",
                 "7", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for i in (0, 7):
        png = tmp_path / f"mnist-sample_test_{i}_maps.png"
        assert Image.open(png).size == (1760, 200)  # input + 10 maps, 1.6 in x 100 dpi each
    assert "box (" in out


def test_top_map_is_the_prediction(run):
    model, pre, _ = ckpt.load_checkpoint(run)
    ds = load_dataset("mnist-sample", "test")
    probs, maps = class_maps(model, pre, ds.images[:50])
    assert maps.shape == (50, 10, 7, 7)
    with torch.no_grad():  # the network's own forward pass, not the maps' mean
        logits = model.eval()(pre(ds.images[:50]))
    assert torch.equal(maps.mean((2, 3)).argmax(1), logits.argmax(1))
    torch.testing.assert_close(probs, torch.softmax(logits, 1))
    assert (probs.argmax(1) == ds.labels[:50]).float().mean() > 0.6  # it learned something


def test_topk_and_user_images(run, tmp_path, capsys):
    img = tmp_path / "digit.png"
    Image.fromarray(load_dataset("mnist-sample", "test").images[3, 0].numpy()).resize(
        (200, 200)).convert("RGBA").save(img)
    assert main(["maps", str(img), "--weights", str(run), "--topk", "3", "--out",
                 str(tmp_path / "m")]) == 0
    assert Image.open(tmp_path / "m/digit_maps.png").size == (640, 200)


def test_grid_like_the_paper(run, tmp_path, capsys):
    assert main(["maps", "--weights", str(run), "--dataset", "mnist-sample", "--index",
                 *map(str, range(6)), "--grid", "--out", str(tmp_path)]) == 0
    w, h = Image.open(tmp_path / "grid.png").size
    assert (w, h) == (1210, 730)


def test_box_from_map_takes_the_largest_region():
    m = np.zeros((32, 32))
    m[2:5, 2:5] = 1.0          # small, strongest blob
    m[10:30, 12:20] = 0.8      # large blob
    assert box_from_map(m, 0.5) == (12, 10, 20, 30)
    assert box_from_map(m, 0.9) == (2, 2, 5, 5)
    assert box_from_map(np.zeros((4, 4))) is None
    ring = np.zeros((9, 9))
    ring[1, 1:8] = ring[7, 1:8] = ring[1:8, 1] = ring[1:8, 7] = 1.0  # 24 pixels, one region
    ring[4, 4] = 1.0                                                    # 1 pixel, apart
    assert box_from_map(ring, 0.5) == (1, 1, 8, 8)
    diagonal = np.eye(5)  # 4-connected: five regions of one pixel, the first is taken
    assert box_from_map(diagonal, 0.5) == (0, 0, 1, 1)


def test_localize_returns_a_box_inside_the_image(run):
    model, pre, _ = ckpt.load_checkpoint(run)
    x = load_dataset("mnist-sample", "test").images[0]
    loc = localize(model, pre, x)
    x0, y0, x1, y1 = loc["box"]
    assert 0 <= x0 < x1 <= 28 and 0 <= y0 < y1 <= 28
    assert loc["map"].shape == (28, 28)
    assert loc["map"][y0:y1, x0:x1].max() == loc["map"].max()


def test_maps_refuse_fc_models_and_bad_index(tmp_path, run, capsys):
    m = build_model("nin_cifar10_fc")
    pre = Preprocess("scale", 3, 32)
    ckpt.save_checkpoint(tmp_path / "fc", 1, m, pre, dict(config={}))
    assert main(["maps", "--weights", str(tmp_path / "fc"), "--dataset", "mnist-sample",
                 "--out", str(tmp_path)]) == 2
    assert main(["maps", "--weights", str(run), "--dataset", "mnist-sample", "--index", "5000",
                 "--out", str(tmp_path)]) == 2
    assert "has 2000 images" in capsys.readouterr().err


def test_plot_and_report(run, tmp_path, capsys):
    assert main(["plot", str(run), str(run), "--out", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").size == (700, 420)
    assert main(["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "d.png")]) == 2
    assert "nope/metrics.jsonl: no metrics log" in capsys.readouterr().err
    root = tmp_path / "proj"
    (root / "results/x").mkdir(parents=True)
    for f in ("result.json", "metrics.jsonl"):
        (root / "results/x" / f).write_text((run / f).read_text())
    assert main(["report", "--root", str(root), "--out", str(root / "results/report"),
                 "--weights", str(run)]) == 0
    md = (root / "results/report/report.md").read_text()
    assert "| CIFAR-10, no augmentation | 10.41 |" in md and "results/x" in md
    assert (root / "results/report/curves.png").is_file()
    assert Image.open(root / "results/report/maps.png").size[0] == 1210


def test_onnx_export_matches_pytorch(run, tmp_path, capsys):
    assert main(["export", "--weights", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 0
    model, pre, _ = ckpt.load_checkpoint(run)
    x = load_dataset("mnist-sample", "test").images[:64]
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = sess.run(None, {"image": x.float().numpy()})[0]
    with torch.no_grad():
        want = torch.softmax(model(pre(x)), 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.realdata
def test_onnx_gcn_zca_matches_pytorch_on_real_cifar10(real_data_dir, tmp_path):
    train_ds = load_dataset("cifar10", "train", real_data_dir)
    test_ds = load_dataset("cifar10", "test", real_data_dir)
    torch.manual_seed(0)
    model = build_model("nin_cifar10", init="kaiming").eval()
    pre = Preprocess("gcn_zca", 3, 32).fit(train_ds.images[:3000])
    export_onnx(model, pre, tmp_path / "c10.onnx")
    x = test_ds.images[:200]
    sess = ort.InferenceSession(str(tmp_path / "c10.onnx"))
    got = sess.run(None, {"image": x.float().numpy()})[0]
    with torch.no_grad():
        want = torch.softmax(model(pre(x)), 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert json.dumps(got.argmax(1).tolist()) == json.dumps(want.argmax(1).tolist())


def test_shift_images_moves_pixels_and_fills_zero():
    from nin.evaluation import shift_images
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    r = shift_images(x, 1, 0)[0, 0]
    assert r[:, 0].eq(0).all() and torch.equal(r[:, 1:], x[0, 0, :, :3])
    u = shift_images(x, 0, -2)[0, 0]
    assert u[2:].eq(0).all() and torch.equal(u[:2], x[0, 0, 2:])
    assert shift_images(x, 4, 0).eq(0).all() and torch.equal(shift_images(x, 0, 0), x)


def test_shifts_command_curves_and_map_rows(run, tmp_path, capsys):
    assert main(["shifts", str(run), "--max-shift", "2", "--subset", "200", "--index", "3",
                 "--out", str(tmp_path / "s")]) == 0
    curves = json.loads((tmp_path / "s/shifts.json").read_text())
    c = curves[run.name]
    assert c["shifts"] == [0, 1, 2] and c["n"] == 200 and set(c["by_direction"]) == \
        {"left", "right", "up", "down"}
    assert all(c["by_direction"][d][0] == c["error"][0] for d in c["by_direction"])
    assert c["error"][2] != c["error"][0] or c["error"][1] != c["error"][0]  # shifts matter
    assert (tmp_path / "s/shifts.png").exists() and (tmp_path / "s/shift_maps.png").exists()


def test_shifts_command_keeps_what_it_measured(run, tmp_path, monkeypatch, capsys):
    """A second call with the same weights, images and shifts measures nothing again; another
    range of shifts or precision is measured afresh; a file that is not its JSON is named, not
    overwritten."""
    import nin.evaluation
    args = ["shifts", str(run), "--max-shift", "1", "--subset", "50", "--out", str(tmp_path)]
    assert main(args) == 0
    first = json.loads((tmp_path / "shifts.json").read_text())[run.name]
    assert first["model"] and first["weights"] and first["precision"] == "fp32"

    def fail(*a, **k):
        raise AssertionError("measured again")
    monkeypatch.setattr(nin.evaluation, "shift_errors", fail)
    assert main(args) == 0
    assert json.loads((tmp_path / "shifts.json").read_text())[run.name] == first
    with pytest.raises(AssertionError, match="measured again"):
        main(args[:3] + ["2"] + args[4:])
    with pytest.raises(AssertionError, match="measured again"):
        main(args + ["--precision", "bf16"])
    (tmp_path / "shifts.json").write_text("{")
    assert main(args) == 2
    assert "shifts.json: not the JSON" in capsys.readouterr().err
    assert (tmp_path / "shifts.json").read_text() == "{"


def test_shift_figure_draws_each_network_once_over_its_seeds(tmp_path):
    """Runs of one network are its seeds: one line, their mean, and a band of their spread."""
    from nin.visualization import plot_shifts, shift_bands
    curve = lambda model, err: dict(model=model, shifts=[0, 1], error=err)  # noqa: E731
    curves = {"gap-0": curve("nin_cifar10", [10.0, 12.0]),
              "gap-1": curve("nin_cifar10", [12.0, 16.0]),
              "fc-0": curve("nin_cifar10_fc", [11.0, 15.0])}
    bands = shift_bands(curves)
    assert list(bands) == ["nin_cifar10 (mean of 2)", "nin_cifar10_fc"]
    shifts, mean, sd = bands["nin_cifar10 (mean of 2)"]
    assert shifts == [0, 1] and mean.tolist() == [11.0, 14.0]
    assert sd.round(4).tolist() == [1.4142, 2.8284] and bands["nin_cifar10_fc"][2] is None
    assert plot_shifts(curves, tmp_path / "s.png") == str(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0
