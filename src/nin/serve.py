"""`nin serve`: the class maps in a browser (paper §4.7), one or more networks side by side.

A small local Gradio page: upload a picture or pick a test image by index, see each network's
top-5 classes and its per-class confidence maps with the top map's box, and slide the picture
(0-8 pixels, four directions, as `nin shifts`) to watch the maps follow it (§4.6).

Offline and local: Gradio's analytics are off, the page uses system fonts (no font CDN), the
server binds to 127.0.0.1 unless --host says otherwise, and uploads and drawn maps live in one
temporary folder that is removed at exit. A picture that cannot be read gets a message on the
page; the server goes on.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import ConfigError, NinError
from .evaluation import DIRECTIONS, shift_images
from .folder import load_image
from .hub import load_weights_arg
from .visualization import draw_maps

MAX_SHIFT = 8


@dataclass
class Served:
    """One network on the page: its weights, preprocessing, class names and test images."""
    label: str
    model: object
    pre: object
    side: object                  # checkpoint.Sidecar: what the weights say
    classes: list
    test: object = field(default=None, repr=False)  # its test split, read on first use

    @property
    def dataset(self) -> str:
        return self.side.dataset or "cifar10"


def load_served(weights: list[str], models: list[str] | None) -> list[Served]:
    """--weights W [W ...] with --model M [M ...]: each 'pretrained' takes the next --model."""
    names = list(models or [])
    out = []
    for w in weights:
        name = names.pop(0) if w == "pretrained" and names else None
        model, pre, side = load_weights_arg(w, name)
        label = f"{side.model} (pretrained)" if w == "pretrained" else f"{side.model} ({w})"
        out.append(Served(label, model.eval(), pre, side, side.class_names()))
    if names:
        raise ConfigError(f"--model {' '.join(names)}: no --weights pretrained left to take it")
    return out


def dataset_image(s: Served, index: int, data_dir) -> torch.Tensor:
    """Test image `index` of the network's own dataset, at its channels and size."""
    if s.test is None:
        from .data import load_for_weights
        s.test = load_for_weights(s.side, s.model, "test", None, data_dir)
    if not 0 <= index < len(s.test):
        raise ConfigError(f"index {index}: {s.dataset}/test has {len(s.test)} images "
                          f"(0 to {len(s.test) - 1})")
    return s.test.images[index]


def analyse(s: Served, image: torch.Tensor, shift: int, direction: str, folder: Path,
            topk: int = 5) -> tuple[dict, str, str]:
    """The top-k classes {name: probability}, one line of text and the maps' PNG, for a uint8
    image moved `shift` pixels in `direction` (zero fill, as `nin shifts`)."""
    ux, uy = DIRECTIONS[direction]
    x = shift_images(image, ux * shift, uy * shift)
    png = folder / f"maps-{uuid.uuid4().hex}.png"
    moved = f", moved {shift} px {direction}" if shift else ""
    r = draw_maps(s.model, s.pre, x, s.classes, png, topk, title=moved.lstrip(", "), ncols=3)
    scores = {s.classes[k]: p for k, p in r["top"]}  # one forward pass: the drawing's
    box = "no box (the top map is zero)" if r["box"] is None else f"box {r['box']}"
    line = f"{s.side.model}: {s.classes[r['pred']]} {100 * r['prob']:.1f} %, {box}{moved}"
    return scores, line, str(png)


def build_app(served: list[Served], data_dir, folder: Path):
    """The page: inputs on the left, one column per network."""
    import gradio as gr

    def run(upload, index, shift, direction):
        outs, lines = [], []
        for s in served:
            try:
                image = (load_image(upload, s.pre.in_chans, s.pre.input_size) if upload
                         else dataset_image(s, int(index), data_dir))
                scores, line, png = analyse(s, image, int(shift), direction, folder)
            except NinError as e:  # a bad picture or index: say so on the page, go on
                return [f"**Cannot show this picture.** {e}"] + [None, None] * len(served)
            outs += [scores, png]
            lines.append(line)
        return ["\n\n".join(lines)] + outs

    with gr.Blocks(title="nin: class confidence maps", analytics_enabled=False) as app:
        gr.Markdown("## Network In Network: what each class map sees\nUpload a picture, or "
                    "give the index of a test image; slide the picture to move it.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="picture (PNG, JPEG, ...)", type="filepath",
                                 elem_id="upload")
                index = gr.Number(value=0, precision=0, minimum=0, label="or test image index "
                                  "(when no picture is uploaded)", elem_id="index")
                shift = gr.Slider(0, MAX_SHIFT, value=0, step=1, label="shift (pixels)",
                                  elem_id="shift")
                direction = gr.Radio(list(DIRECTIONS), value="right", label="direction",
                                     elem_id="direction")
                show = gr.Button("show", variant="primary", elem_id="show")
                status = gr.Markdown(elem_id="status")
            outputs = [status]
            for i, s in enumerate(served):
                with gr.Column(scale=2):
                    gr.Markdown(f"**{s.label}**")
                    outputs += [gr.Label(num_top_classes=5, label="top 5", elem_id=f"top{i}"),
                                gr.Image(label="class maps", type="filepath",
                                         elem_id=f"maps{i}", buttons=["download", "fullscreen"])]
        inputs = [upload, index, shift, direction]
        show.click(run, inputs, outputs)
        for c in (upload, shift, direction):
            c.change(run, inputs, outputs)
    return app


def serve(weights: list[str], models: list[str] | None, host: str = "127.0.0.1",
          port: int | None = None, data_dir=None, block: bool = True):
    """Start the page; returns (app, url). Gradio reads its settings from the environment at
    import, so they are set first: no analytics, uploads under our temporary folder."""
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: use a port from 1 to 65535 (or leave it out for a "
                          "free one)")
    served = load_served(weights, models)
    folder = Path(tempfile.mkdtemp(prefix="nin-serve-"))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "uploads")
    try:
        import gradio as gr
    except ImportError:
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError("nin serve needs Gradio: pip install -e '.[serve]'") from None
    font = [gr.themes.Font("ui-sans-serif"), gr.themes.Font("system-ui"), "sans-serif"]
    mono = [gr.themes.Font("ui-monospace"), "monospace"]
    app = build_app(served, data_dir, folder)
    try:
        _, url, _ = app.launch(server_name=host, server_port=port, share=False,
                               prevent_thread_lock=True, quiet=not block, show_error=False,
                               theme=gr.themes.Default(font=font, font_mono=mono),
                               footer_links=[], ssr_mode=False, pwa=False, mcp_server=False)
    except OSError as e:  # the port is taken, or the host is not this machine's
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError(f"cannot serve on {host}:{port or 'a free port'}: the port is taken "
                          "or the address is not this machine's; choose another --port or "
                          "--host") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    app.nin_folder, app.nin_served = folder, served
    if block:
        print(f"nin serve: {', '.join(s.label for s in served)} at {url} (Ctrl-C stops it)")
        try:
            app.block_thread()
        finally:
            stop(app)
    return app, url


def stop(app):
    """Close the server and remove its temporary folder (uploads, drawn maps)."""
    app.close()
    shutil.rmtree(app.nin_folder, ignore_errors=True)
