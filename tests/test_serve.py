"""nin serve's parts without a browser: which weights go on the page, what a picture shows,
and the errors a user can fix. The page itself: tests/test_serve_browser.py."""
import numpy as np
import pytest
from PIL import Image

from nin.cli import main
from nin.data import load_dataset
from nin.errors import CheckpointError, ConfigError, ImageError
from nin.evaluation import predict_images, shift_images
from nin.folder import load_image
from nin.serve import analyse, dataset_image, load_served
from nin.visualization import class_maps


@pytest.fixture(scope="module")
def mnist_pair():
    return load_served(["pretrained", "pretrained"], ["nin_mnist_bn", "nin_mnist"])


def test_each_pretrained_takes_the_next_model(mnist_pair):
    assert [s.side.model for s in mnist_pair] == ["nin_mnist_bn", "nin_mnist"]
    assert mnist_pair[0].classes == [str(i) for i in range(10)]
    with pytest.raises(ConfigError, match="nin_mnist"):
        load_served(["pretrained"], ["nin_mnist_bn", "nin_mnist"])
    with pytest.raises(CheckpointError, match="--model"):
        load_served(["pretrained"], None)


def test_what_a_picture_shows_is_what_predict_says(mnist_pair, tmp_path):
    """The top class and probability on the page are `nin predict`'s for the same file, the
    maps PNG is written in the server's folder, and a shift moves the picture before scoring."""
    ds = load_dataset("mnist-sample", "test")
    png = tmp_path / "digit.png"
    Image.fromarray(ds.images[3, 0].numpy()).save(png)
    s = mnist_pair[0]
    image = load_image(png, s.pre.in_chans, s.pre.input_size)
    scores, line, maps = analyse(s, image, 0, "right", tmp_path)
    want = predict_images(s.model, s.pre, [png], s.classes)[0]["top"]
    assert list(scores) == [t["cls"] for t in want]
    assert np.allclose(list(scores.values()), [t["prob"] for t in want], atol=1e-5)
    assert line.startswith(f"nin_mnist_bn: {want[0]['cls']} {100 * want[0]['prob']:.1f} %")
    assert Image.open(maps).size[0] > 100 and str(tmp_path) in maps

    moved, line4, _ = analyse(s, image, 4, "up", tmp_path)
    p = class_maps(s.model, s.pre, shift_images(image, 0, -4)[None])[0][0]
    assert "moved" not in line and "moved 4 px up" in line4
    assert np.isclose(moved[s.classes[int(p.argmax())]], float(p.max()), atol=1e-6)


def test_bad_index_and_bad_picture_are_clear_errors(mnist_pair, tmp_path):
    s = mnist_pair[0]
    with pytest.raises(ConfigError, match="mnist/test has"):
        s.test = load_dataset("mnist-sample", "test")  # the embedded sample stands in
        dataset_image(s, 10 ** 6, None)
    assert dataset_image(s, 2, None).shape == (1, 28, 28)
    bad = tmp_path / "half.png"
    noise = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
    Image.fromarray(noise).save(bad)
    bad.write_bytes(bad.read_bytes()[:800])
    with pytest.raises(ImageError, match="half.png"):
        load_image(bad, 1, 28)


def test_serve_without_weights_is_one_line(capsys):
    assert main(["serve", "--weights", "pretrained", "--model", "no_such_net"]) != 0
    assert "no pretrained weights for no_such_net" in capsys.readouterr().err


def test_a_bad_or_taken_port_is_one_line(capsys):
    """Out of range: refused before anything loads. Taken: Gradio's own OSError becomes one line."""
    import socket
    assert main(["serve", "--port", "99999", "--weights", "pretrained"]) == 2
    assert "--port 99999: use a port from 1 to 65535" in capsys.readouterr().err
    pytest.importorskip("gradio")  # installed with nin[serve], as CI does
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port), "--weights", "pretrained",
                     "--model", "nin_mnist_bn"]) == 2
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}: the port is taken" in err
    assert "Traceback" not in err
