"""Faults get a clear error and nothing already written is lost (docs/reliability.md)."""
import dataclasses
import io
import os
import random
import signal
import subprocess
import tarfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

import fakedata
from fakedata import small_train_cmd
import nin.training
from nin import checkpoint as ckpt
from nin.data import DataError, load_dataset
from nin.errors import ConfigError, NonFiniteLoss
from nin.evaluation import ImageError, load_image
from nin.models import build_model
from nin.preprocessing import Preprocess
from nin.config import resolve
from nin.training import train

QUIET = dict(log=lambda *_: None, progress=False)


# ---------------------------------------------------------------- data files
def _evil_archive(root, name, entry, kind=tarfile.REGTYPE):
    with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for f in fakedata.write_cifar10_binary(root / "src").keys():
            tar.add(root / "src" / f, arcname=f)
        info = tarfile.TarInfo(entry)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        data = b"owned"
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize("entry,kind,msg", [
    ("../../evil.sh", tarfile.REGTYPE, "points outside"),
    ("/tmp/evil.sh", tarfile.REGTYPE, "points outside"),
    ("cifar-10-batches-bin/link", tarfile.SYMTYPE, "link or device"),
])
def test_archive_entries_that_climb_out_are_refused(tmp_path, entry, kind, msg):
    _evil_archive(tmp_path, "x", entry, kind)
    with pytest.raises(DataError, match=msg):
        load_dataset("cifar10", "train", tmp_path, verify=False)
    assert not (tmp_path.parent / "evil.sh").exists()


def test_wrong_contents_of_every_format(tmp_path):
    # CIFAR-10 binary with a label out of range
    fakedata.write_cifar10_binary(tmp_path / "a")
    f = tmp_path / "a/cifar-10-batches-bin/data_batch_1.bin"
    raw = bytearray(f.read_bytes())
    raw[0] = 200
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="label 200 out of range"):
        load_dataset("cifar10", "train", tmp_path / "a", verify=False)
    # CIFAR-100 pickle whose data has the wrong shape
    fakedata.write_cifar100_python(tmp_path / "b")
    (tmp_path / "b/cifar-100-python/train").write_bytes(
        fakedata.cifar_pickle(np.zeros((5, 100), np.uint8), [1] * 5, "fine_labels"))
    with pytest.raises(DataError, match=r"cifar-100-python/train: data of shape \(5, 100\)"):
        load_dataset("cifar100", "train", tmp_path / "b", verify=False)
    # a pickle of the wrong thing altogether
    import pickle
    (tmp_path / "b/cifar-100-python/train").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match="without the b'fine_labels'"):
        load_dataset("cifar100", "train", tmp_path / "b", verify=False)
    # SVHN with X of the wrong shape
    import scipy.io
    (tmp_path / "c/svhn").mkdir(parents=True)
    scipy.io.savemat(tmp_path / "c/svhn/train_32x32.mat",
                     {"X": np.zeros((28, 28, 3, 4), np.uint8), "y": np.ones((4, 1), np.uint8)})
    for part in ("test", "extra"):
        (tmp_path / f"c/svhn/{part}_32x32.mat").write_bytes(
            (tmp_path / "c/svhn/train_32x32.mat").read_bytes())
    with pytest.raises(DataError, match=r"train_32x32.mat: X \(28, 28, 3, 4\)"):
        load_dataset("svhn", "train", tmp_path / "c", verify=False)
    # MNIST images and labels that do not pair up
    fakedata.write_mnist(tmp_path / "d", n_train=50, gz=False)
    (tmp_path / "d/mnist/train-labels-idx1-ubyte").write_bytes(
        fakedata.idx_bytes(np.zeros(49, np.uint8)))
    with pytest.raises(DataError, match="do not match"):
        load_dataset("mnist", "train", tmp_path / "d", verify=False)
    # an empty file
    (tmp_path / "d/mnist/train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match="bad idx magic"):
        load_dataset("mnist", "train", tmp_path / "d", verify=False)


def test_corrupt_archive_is_named(tmp_path, fake_md5):
    fakedata.write_cifar10_binary(tmp_path, archive=True)
    f = tmp_path / "cifar-10-binary.tar.gz"
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz: unreadable archive"):
        load_dataset("cifar10", "train", tmp_path, verify=False)


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_with_another_class_count(tmp_path):
    m = build_model("nin_cifar10")
    side = ckpt.save_checkpoint(tmp_path, 1, m, Preprocess("scale"), dict(config={}))
    meta = ckpt.read_sidecar(side)  # a Sidecar
    with pytest.raises(ckpt.CheckpointError, match="weights for 10 classes, model has 100"):
        ckpt.load_weights(meta, model=build_model("nin_cifar100"))


def test_a_fitted_preprocessing_is_stored_once_per_run(tmp_path):
    """A ZCA matrix (36 MiB for CIFAR-10) goes in a file of its own with the same bytes at every
    step, so git stores it once however many snapshots are committed; both files are hashed,
    the pair loads as one, and a package makes one file of it again."""
    from nin.hub import package
    m, images = build_model("nin_cifar10"), torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    pre = Preprocess("gcn_zca", 3, 8).fit(images)
    a, b = (ckpt.save_checkpoint(tmp_path, s, m, pre, dict(config={})) for s in (1, 2))
    files = ckpt.read_sidecar(b).files
    assert sorted(files) == ["preprocess", "weights"]
    pa, pb = (ckpt.read_sidecar(s).file("preprocess") for s in (a, b))
    assert pa != pb and pa.read_bytes() == pb.read_bytes()
    _, loaded, _ = ckpt.load_checkpoint(b)
    assert torch.equal(loaded.zca_matrix, pre.zca_matrix) and loaded.kind == "gcn_zca"
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded(x), pre(x))
    pb.write_bytes(pb.read_bytes()[:-16])
    with pytest.raises(ckpt.CheckpointError, match="preprocess.safetensors: sha256 does not"):
        ckpt.load_checkpoint(b)
    shipped = package(a, "nin_cifar10", out_dir=tmp_path / "ship")
    assert sorted(ckpt.read_sidecar(shipped).files) == ["weights"]  # one file again
    assert torch.equal(ckpt.load_checkpoint(shipped)[1].zca_matrix, pre.zca_matrix)


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    cfg = resolve(dict(recipe="paper", dataset="mnist-sample", subset=128, eval_subset=64,
                       batch_size=32,
                      epochs=2, init="kaiming", out=str(tmp_path / "r")))
    train(cfg, **QUIET)  # checkpoints at steps 4 and 8
    newest = ckpt.latest_checkpoint(tmp_path / "r")
    w = newest.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:-64])
    msgs = []
    r = train(resolve(dict(recipe="paper", dataset="mnist-sample", subset=128, eval_subset=64,
                           batch_size=32,
                          epochs=2, init="kaiming", out=str(tmp_path / "r"))), resume=True,
              log=msgs.append, progress=False)
    assert any("skipping a damaged checkpoint" in m and str(w) in m for m in msgs)
    assert r.finished and r.steps == 8


def test_checkpoints_never_unpickle(tmp_path, monkeypatch):
    """Saving, loading and resuming a run work with every unpickling entry point broken."""
    import pickle

    def refuse(*a, **k):
        raise AssertionError("a checkpoint was unpickled")
    cfg = resolve(dict(recipe="paper", dataset="mnist-sample", subset=64, eval_subset=32,
                       batch_size=32,
                      epochs=2, init="kaiming", out=str(tmp_path / "r")))
    train(dataclasses.replace(cfg, max_steps=1), **QUIET)
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert train(cfg, resume=True, **QUIET).finished
    model, pre, side = ckpt.load_checkpoint(tmp_path / "r")
    assert side.step == 4 and pre.kind == "scale"


# ---------------------------------------------------------------- training faults
def _kill_after_next_checkpoint(p, folder, seen: set, delay: float) -> bool:
    """SIGKILL p `delay` seconds after a checkpoint not in `seen` appears; False if p ended."""
    while p.poll() is None:
        new = {c.name for c in folder.glob("checkpoints/step-*.json")} - seen
        if new:
            seen |= new
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.01)
    return False


def test_sigkill_after_checkpoints_then_resume_equals_uninterrupted(tmp_path):
    """Killed three times, each a random moment after a new checkpoint appears (inside the
    writer, between steps, mid-step), then resumed to the end: the same weights."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(small_train_cmd(tmp_path / "full", "--translate", "2"), check=True,
                   capture_output=True, env=env, timeout=300)
    rng, seen, kills = random.Random(0), set(), 0
    cut = tmp_path / "cut"
    for _ in range(10):
        p = subprocess.Popen(small_train_cmd(cut, "--translate", "2", "--resume"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if kills < 3 and _kill_after_next_checkpoint(p, cut, seen, rng.uniform(0.0, 0.4)):
            kills += 1
            continue
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()
        break
    assert kills == 3 and (cut / "result.json").exists()
    a = ckpt.load_checkpoint(tmp_path / "full")[0].state_dict()
    b = ckpt.load_checkpoint(cut)[0].state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = nin.training.train_step
    calls = {"n": 0}

    def poisoned(net, opt, x, y, amp, ls=0.0):
        calls["n"] += 1
        loss, logits = real_step(net, opt, x, y, amp, ls)
        return (loss * float("nan") if calls["n"] > 6 else loss), logits
    monkeypatch.setattr(nin.training, "train_step", poisoned)
    cfg = resolve(dict(recipe="paper", dataset="mnist-sample", subset=128, eval_subset=64,
                       batch_size=32,
                      epochs=3, init="kaiming", amp=True, out=str(tmp_path / "nan")))  # bf16
    with pytest.raises(NonFiniteLoss, match="non-finite by step 8.*last good checkpoint"):
        train(cfg, **QUIET)
    side = ckpt.latest_checkpoint(tmp_path / "nan")
    assert side.name == "step-00000004.json"
    model = ckpt.load_checkpoint(side)[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    monkeypatch.setattr(nin.training, "load_dataset", lambda *a: pytest.fail("data was read"))
    with pytest.raises(ConfigError, match="1 MiB free, but the run's checkpoints need about"):
        train(resolve(dict(recipe="paper", dataset="cifar10", out=str(tmp_path / "x"))), **QUIET)


# ---------------------------------------------------------------- images
@pytest.mark.parametrize("mode", ["CMYK", "I;16", "I", "F", "LA", "1"])
def test_odd_image_modes_are_handled(tmp_path, mode):
    arr = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert("L" if mode in ("I;16", "I", "F", "LA", "1") else "RGB")
    im = im.convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("I", "F", "CMYK", "I;16") else "x.png")
    im.save(path)
    for chans in (1, 3):
        x = load_image(path, chans, 32)
        assert x.shape == (chans, 32, 32) and x.dtype == torch.uint8


def test_empty_and_bomb_images_are_refused(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg: not an image"):
        load_image(tmp_path / "empty.jpg", 3, 32)
    big = Image.new("L", (9000, 8000))  # 72 M pixels: refused before it is decoded
    big.save(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match="bomb.png: 9000×8000 pixels is more than"):
        load_image(tmp_path / "bomb.png", 3, 32)
