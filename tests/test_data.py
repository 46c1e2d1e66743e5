import gzip
import http.server
import io
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import fakedata
from nin import data
from nin.cli import main
from nin.data import DataError, load_dataset, safe_unpickle


def _check_order(ds, n):
    """The fake images carry their label in the first pixel: order and pairing survived."""
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert len(ds) == n
    assert torch.equal(ds.images[:, 0, 0, 0].long(), ds.labels * 20)


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_binary(tmp_path, fake_md5, archive):
    fake_md5("cifar10", fakedata.write_cifar10_binary(tmp_path, 20, archive=archive))
    train = load_dataset("cifar10", "train", tmp_path)
    test = load_dataset("cifar10", "test", tmp_path)
    _check_order(train, 100)
    _check_order(test, 20)
    assert train.images.shape == (100, 3, 32, 32) and train.classes[0] == "airplane"


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_python(tmp_path, fake_md5, archive):
    fake_md5("cifar10", fakedata.write_cifar10_python(tmp_path, 20, archive=archive))
    _check_order(load_dataset("cifar10", "train", tmp_path), 100)
    _check_order(load_dataset("cifar10", "test", tmp_path), 20)


def test_cifar10_binary_and_python_agree(tmp_path, fake_md5):
    a, b = tmp_path / "a", tmp_path / "b"
    fake_md5("cifar10", {**fakedata.write_cifar10_binary(a), **fakedata.write_cifar10_python(b)})
    x, y = load_dataset("cifar10", "train", a), load_dataset("cifar10", "train", b)
    assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


@pytest.mark.parametrize("archive", [False, True])
def test_cifar100_python(tmp_path, fake_md5, archive):
    fake_md5("cifar100", fakedata.write_cifar100_python(tmp_path, 200, 100, archive=archive))
    train = load_dataset("cifar100", "train", tmp_path)
    assert len(train) == 200 and train.labels.max() == 99 and train.classes[42] == "class42"
    assert len(load_dataset("cifar100", "test", tmp_path)) == 100


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, fake_md5, gz):
    fake_md5("mnist", fakedata.write_mnist(tmp_path, 120, 40, gz=gz))
    train = load_dataset("mnist", "train", tmp_path)
    assert train.images.shape == (120, 1, 28, 28)
    _check_order(train, 120)
    _check_order(load_dataset("mnist", "test", tmp_path), 40)


def test_svhn_mat_and_the_paper_split(tmp_path, fake_md5):
    fake_md5("svhn", fakedata.write_svhn(tmp_path))
    train = load_dataset("svhn", "train", tmp_path)
    _check_order(train, 4100)  # label 10 in the file is digit 0
    assert train.labels.min() == 0
    val = load_dataset("svhn", "val", tmp_path)
    assert len(val) == 6000 and torch.equal(val.labels.bincount(), torch.full((10,), 600))
    rest = load_dataset("svhn", "train-val", tmp_path)
    assert len(rest) == 4100 + 2100 - 6000
    assert len(load_dataset("svhn", "extra", tmp_path)) == 2100


def test_mat5_reader_matches_what_scipy_wrote():
    """Our MAT-file reader (SVHN) gives back what scipy.io.savemat wrote, compressed or not:
    MATLAB's shapes, column-major order, each array's class; other variables are skipped."""
    import scipy.io
    arrays = {"X": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), "y": np.eye(3)[:, :2],
              "s": "text", "c": np.array([1 + 2j])}
    for compressed in (False, True):
        buf = io.BytesIO()
        scipy.io.savemat(buf, arrays, do_compression=compressed)
        got = data.read_mat5(buf.getvalue(), "f")
        assert sorted(got) == ["X", "y"]  # the string and the complex array are not numeric reals
        for k in got:
            assert got[k].dtype == arrays[k].dtype and np.array_equal(got[k], arrays[k])
    with pytest.raises(DataError, match="f: not a MATLAB 5 MAT-file"):
        data.read_mat5(b"MATLAB 7.3 MAT-file" + bytes(200), "f")


def test_svhn_val_index_takes_400_and_200_per_class():
    yt, ye = np.arange(5000) % 10, np.arange(3000) % 10
    it, ie = data.svhn_val_index(yt, ye)
    assert len(it) == 4000 and len(ie) == 2000
    assert (np.bincount(yt[it]) == 400).all() and (np.bincount(ye[ie]) == 200).all()


def test_cifar_val_split_is_last_10000(tmp_path, fake_md5):
    fake_md5("cifar10", fakedata.write_cifar10_binary(tmp_path, 2500))
    train = load_dataset("cifar10", "train", tmp_path)
    val = load_dataset("cifar10", "val", tmp_path)
    rest = load_dataset("cifar10", "train-val", tmp_path)
    assert len(val) == 10000 and len(rest) == 2500
    assert torch.equal(torch.cat([rest.images, val.images]), train.images)


def test_embedded_sample_loads_with_checked_md5():
    ds = load_dataset("mnist-sample", "train")
    assert len(ds) == 10000 and len(load_dataset("mnist-sample", "test")) == 2000
    assert data.verify_files("mnist-sample")[0]


# ---------------------------------------------------------------- bad input
def test_md5_mismatch_names_the_file_and_the_sum(tmp_path, fake_md5):
    sums = fakedata.write_cifar10_binary(tmp_path)
    fake_md5("cifar10", sums)
    f = tmp_path / "cifar-10-batches-bin/data_batch_3.bin"
    raw = bytearray(f.read_bytes())
    raw[100] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", "train", tmp_path)
    msg = str(e.value)
    assert str(f) in msg and sums["cifar-10-batches-bin/data_batch_3.bin"] in msg
    assert "nin data download cifar10" in msg


def test_truncated_files_get_a_clear_error_even_unverified(tmp_path, fake_md5):
    fake_md5("cifar10", fakedata.write_cifar10_binary(tmp_path / "c"))
    f = tmp_path / "c/cifar-10-batches-bin/data_batch_1.bin"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match="not a whole number of 3,073-byte records"):
        load_dataset("cifar10", "train", tmp_path / "c", verify=False)

    fake_md5("mnist", fakedata.write_mnist(tmp_path / "m", gz=True))
    g = tmp_path / "m/mnist/train-images-idx3-ubyte.gz"
    g.write_bytes(g.read_bytes()[: len(g.read_bytes()) // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not a complete gzip"):
        load_dataset("mnist", "train", tmp_path / "m", verify=False)

    fakedata.write_mnist(tmp_path / "p", gz=False)
    h = tmp_path / "p/mnist/train-images-idx3-ubyte"
    h.write_bytes(h.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("mnist", "train", tmp_path / "p", verify=False)
    h.write_bytes(b"\x00\x00\x0d\x03" + h.read_bytes()[4:])
    with pytest.raises(DataError, match="bad idx magic"):
        load_dataset("mnist", "train", tmp_path / "p", verify=False)


def test_corrupt_svhn_and_pickle(tmp_path, fake_md5):
    fakedata.write_svhn(tmp_path, {"train": 20, "test": 5, "extra": 5})
    f = tmp_path / "svhn/train_32x32.mat"
    raw = bytearray(f.read_bytes())
    raw[200:240] = bytes(range(40))  # garble the middle of the compressed stream
    f.write_bytes(raw)
    with pytest.raises(DataError, match="train_32x32.mat: a compressed array is corrupt"):
        load_dataset("svhn", "train", tmp_path, verify=False)
    t = tmp_path / "svhn/test_32x32.mat"
    t.write_bytes(t.read_bytes()[:300])
    with pytest.raises(DataError, match="test_32x32.mat: an element at byte 128 claims"):
        load_dataset("svhn", "test", tmp_path, verify=False)
    fakedata.write_cifar10_python(tmp_path)
    p = tmp_path / "cifar-10-batches-py/data_batch_1"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_1: not a readable CIFAR pickle"):
        load_dataset("cifar10", "train", tmp_path, verify=False)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    payload = pickle.dumps({b"data": evil}, protocol=2)
    with pytest.raises(DataError, match="refused"):
        safe_unpickle(payload, "evil.pkl")
    assert not marker.exists()
    # and the same through the loader, in the place of a real batch
    fakedata.write_cifar10_python(tmp_path)
    (tmp_path / "cifar-10-batches-py/data_batch_2").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_2: the pickle asks for .*system"):
        load_dataset("cifar10", "train", tmp_path, verify=False)
    assert not marker.exists()


def test_restricted_unpickler_still_reads_data():
    x = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    d = safe_unpickle(fakedata.cifar_pickle(x, [1, 2], "labels"))
    assert np.array_equal(d[b"data"], x) and d[b"labels"] == [1, 2]


def test_missing_dataset_says_which_files_to_put_where(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", "train", tmp_path)
    msg = str(e.value)
    assert "cifar-10-batches-bin" in msg and "cifar-10-python.tar.gz" in msg
    assert "nin data download cifar10" in msg and "NIN_DATA_DIR" in msg


def test_incomplete_folder_names_missing_files(tmp_path, fake_md5):
    fake_md5("mnist", fakedata.write_mnist(tmp_path))
    (tmp_path / "mnist/t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", "test", tmp_path)


def test_unknown_split_and_dataset(tmp_path):
    with pytest.raises(DataError, match="no split 'extra'"):
        load_dataset("cifar10", "extra", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", "train", tmp_path)


def test_data_verify_cli(tmp_path, fake_md5, capsys):
    sums = fakedata.write_mnist(tmp_path)
    fake_md5("mnist", sums)
    assert main(["data", "verify", "mnist", "--data-dir", str(tmp_path)]) == 0
    bad = tmp_path / "mnist/train-labels-idx1-ubyte.gz"
    bad.write_bytes(b"garbage")
    (tmp_path / "mnist/t10k-labels-idx1-ubyte.gz").unlink()
    capsys.readouterr()
    assert main(["data", "verify", "mnist", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"bad md5: {bad}" in err
    assert "missing: " + str(tmp_path / "mnist/t10k-labels-idx1-ubyte.gz") in err
    assert main(["data", "verify", "svhn", "--data-dir", str(tmp_path)]) == 1


# ---------------------------------------------------------------- download
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files with Range support; `cut` bytes: the first reply stops early."""
    cut = None

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        body = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
        part = body[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if type(self).cut is not None:
            part, type(self).cut = part[:type(self).cut], None
            self.wfile.write(part)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)


@pytest.fixture
def server(tmp_path):
    src = tmp_path / "served"
    src.mkdir()
    handler = type("H", (_Handler,), {"cut": None})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(src), **k))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield src, f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()


def test_download_checks_md5_and_resumes(tmp_path, server, fake_md5):
    src, url, handler = server
    sums = fakedata.write_mnist(src)
    fake_md5("mnist", sums)
    urls = {rel: [url + rel] for rel in sums}
    dest = tmp_path / "data"
    # the first file's transfer is cut halfway: the download fails and leaves only a .part
    handler.cut = 2000
    with pytest.raises(DataError, match="could not download"):
        data.download("mnist", dest, urls)
    assert not (dest / "mnist/train-images-idx3-ubyte.gz").exists()
    assert (dest / "mnist/train-images-idx3-ubyte.gz.part").stat().st_size == 2000
    # run again: resumed with a Range request, checked, renamed into place
    got = data.download("mnist", dest, urls)
    assert len(got) == 4 and data.verify_files("mnist", dest)[0]
    assert not list(dest.glob("mnist/*.part"))
    assert len(load_dataset("mnist", "train", dest)) == 120


def test_download_with_wrong_md5_is_not_kept(tmp_path, server, fake_md5):
    src, url, _ = server
    sums = fakedata.write_mnist(src)
    fake_md5("mnist", {k: "0" * 32 for k in sums})
    with pytest.raises(DataError, match="expected 0000"):
        data.download("mnist", tmp_path, {rel: [url + rel] for rel in sums})
    assert not list(tmp_path.glob("mnist/*"))


def test_download_offline_says_what_to_do(tmp_path):
    urls = {rel: ["http://127.0.0.1:9/nothing"] for rel, _ in data.DOWNLOADS["cifar10"]}
    with pytest.raises(DataError, match="Offline\\? Copy the official file to"):
        data.download("cifar10", tmp_path, urls)


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("NIN_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("NIN_DATA_DIR")
    assert data.data_dir().name == "data"


def test_gzip_of_sample_is_official_idx():
    raw = gzip.decompress((data.SAMPLE_DIR / "mnist/train-labels-idx1-ubyte.gz").read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x01" and int.from_bytes(raw[4:8], "big") == 10000
