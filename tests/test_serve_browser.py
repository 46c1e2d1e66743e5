"""`nin serve` in a real browser: Debian's Chromium driven by Playwright. The page is started
on a free port with two shipped MNIST networks side by side; a real test digit is uploaded and
the prediction read from the page is checked against `nin predict`'s; the shift slider moves
the picture; a broken file gets a message and the server goes on; every request stays on
127.0.0.1. Skipped, with the reason, where Chromium, Gradio or Playwright is absent, except under
NIN_REQUIRE_BROWSER=1 (set by .ci/run, which installs them): there their absence fails."""
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update"]


def _need(what: str, ok: bool):
    if ok:
        return
    msg = f"{what} absent (apt-get install chromium; pip install -e '.[browser]')"
    if os.environ.get("NIN_REQUIRE_BROWSER") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _said(page, pattern: str) -> re.Match:
    """Wait until the status line matches `pattern`; return the match."""
    page.wait_for_function("p => new RegExp(p).test(document.querySelector('#status')"
                           ".innerText)", arg=pattern, timeout=60_000)
    return re.search(pattern, page.inner_text("#status"))


def test_the_page_predicts_moves_and_survives_a_broken_file(tmp_path, monkeypatch):
    _need("Chromium", CHROMIUM.exists())
    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
            _need(module, False)
    from playwright.sync_api import sync_playwright

    from nin.data import load_dataset
    from nin.evaluation import predict_images
    from nin.serve import serve, stop

    monkeypatch.chdir(tmp_path)  # nothing may be written here, or anywhere but its folder
    digit = tmp_path / "digit.png"
    Image.fromarray(load_dataset("mnist-sample", "test").images[0, 0].numpy()).save(digit)
    broken = tmp_path / "broken.png"
    broken.write_bytes(digit.read_bytes()[:100])
    before = sorted(os.listdir(tmp_path))

    port = _free_port()
    app, url = serve(["pretrained", "pretrained"], ["nin_mnist_bn", "nin_mnist"], port=port,
                     block=False)
    s0 = app.nin_served[0]
    want = predict_images(s0.model, s0.pre, [digit], s0.classes)[0]["top"][0]
    hosts = set()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
            page.goto(url)
            page.set_input_files("#upload input[type=file]", str(digit))
            m = _said(page, r"nin_mnist_bn: (\S+) ([\d.]+) %")
            assert m.group(1) == want["cls"]
            assert abs(float(m.group(2)) - 100 * want["prob"]) <= 0.051
            assert "nin_mnist:" in page.inner_text("#status")  # the second network beside it
            assert want["cls"] in page.inner_text("#top0")

            page.locator("#shift input[type=range]").fill("4")
            page.get_by_role("radio", name="up").check()
            _said(page, r"nin_mnist_bn: \S+ [\d.]+ %.*moved 4 px up")
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            if os.environ.get("NIN_SERVE_SCREENSHOT"):  # the README's picture
                page.screenshot(path=os.environ["NIN_SERVE_SCREENSHOT"], full_page=True)

            page.locator("#upload button[aria-label='Clear']").click()
            page.set_input_files("#upload input[type=file]", str(broken))
            _said(page, r"Cannot show this picture.*broken\.png")
            page.locator("#upload button[aria-label='Clear']").click()
            page.set_input_files("#upload input[type=file]", str(digit))
            _said(page, r"nin_mnist_bn: \S+ [\d.]+ %")  # the server went on
            browser.close()
        assert hosts == {f"127.0.0.1:{port}"}, hosts
        assert np.asarray(Image.open(tmp_path / "serve.png")).std() > 0
        folder = app.nin_folder
        assert any(folder.rglob("digit.png")), "uploads go to the server's own folder"
    finally:
        stop(app)
    assert not folder.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["serve.png"])
