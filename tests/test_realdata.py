"""Tests on the real datasets ($NIN_DATA_DIR: ../shared/data unpacked). Without NIN_DATA_DIR
they skip with that reason (conftest.py); with it set, missing files fail: CI unpacks the data,
so a missing file there means a broken pipeline."""
import pytest
import torch

from nin.cli import main
from nin.config import resolve
from nin.data import load_dataset, verify_files
from nin.hub import shipped
from nin.training import train

pytestmark = pytest.mark.realdata


def test_mnist_counts_and_class_balance(real_data_dir):
    assert verify_files("mnist", real_data_dir)[0]
    train_ds = load_dataset("mnist", "train", real_data_dir)
    test_ds = load_dataset("mnist", "test", real_data_dir)
    assert train_ds.images.shape == (60000, 1, 28, 28) and len(test_ds) == 10000
    assert train_ds.labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                   6265, 5851, 5949]
    assert test_ds.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                  974, 1009]
    assert len(load_dataset("mnist", "val", real_data_dir)) == 10000


def test_cifar10_counts_balance_and_statistics(real_data_dir):
    assert verify_files("cifar10", real_data_dir)[0]
    train_ds = load_dataset("cifar10", "train", real_data_dir)
    test_ds = load_dataset("cifar10", "test", real_data_dir)
    assert train_ds.images.shape == (50000, 3, 32, 32) and len(test_ds) == 10000
    assert (train_ds.labels.bincount() == 5000).all()
    assert (test_ds.labels.bincount() == 1000).all()
    x = train_ds.images.float()
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.tensor([125.31, 122.95, 113.87]),
                               atol=0.01, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.tensor([62.99, 62.09, 66.70]),
                               atol=0.01, rtol=0)
    # the official order: the first labels of data_batch_1 and of the test batch
    assert train_ds.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test_ds.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_short_cpu_training_on_real_mnist_beats_chance(real_data_dir, tmp_path, capsys):
    cfg = resolve(dict(recipe="modern", dataset="mnist", data_dir=str(real_data_dir), epochs=1,
                       subset=3000,
                      eval_subset=1000, batch_size=64, lr=0.1, warmup_epochs=0.25,
                      out=str(tmp_path / "run")))
    r = train(cfg, log=lambda *_: None, progress=False)
    assert r.final["n"] == 1000
    assert r.final["error"] < 50.0, r.final  # chance is 90 % error
    assert main(["eval", "--weights", str(tmp_path / "run"), "--data-dir", str(real_data_dir),
                 "--json"]) == 0
    assert '"n": 10000' in capsys.readouterr().out


# Every network whose weights ship in src/nin/weights (read from the package, so a new one is
# scored too); the four named must stay among them.
SHIPPED = shipped()
assert {"nin_mnist", "nin_mnist_bn", "nin_cifar10_bn", "nin_cifar10"} <= set(SHIPPED), SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_state_their_error_on_the_real_test_set(name, real_data_dir, capsys):
    """`nin eval --weights pretrained --model NAME` on the real test set gives the error the
    training run recorded, to 0.05 points."""
    import json

    from nin.hub import load_pretrained
    _, _, side = load_pretrained(name)
    stated = side.result["final"]
    # no --tta: eval evaluates as the run did (flip TTA for the modern CIFAR recipe)
    args = ["eval", "--weights", "pretrained", "--model", name, "--data-dir",
            str(real_data_dir), "--json"]
    capsys.readouterr()
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n"] == stated["n"] == 10000 and got["tta"] == side.config["tta"]
    assert abs(got["error"] - stated["error"]) <= 0.05, (got["error"], stated["error"])
