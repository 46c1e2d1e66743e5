"""Network In Network models and the model registry.

mlpconv = a k×k conv followed by two 1×1 convs ("cccp"), ReLU after each. Three blocks; the first
two end in 3×3/2 pooling and dropout. The head is global average pooling over one map per class.
Widths follow ../shared/spec/paper.md.

Pooling follows cuda-convnet and Caffe: no padding, output size rounded up (ceil_mode), so
32 -> 16 -> 8 and 28 -> 14 -> 7, and the first window covers pixels 0-2. pytorchcv's NIN pads
by 1 and rounds down: the same sizes, but every window shifted by one pixel (and, for average
pooling, zeros averaged into the border). tests/test_models.py pins the first pooled value.

Dependencies run one way: this file knows nothing of checkpoints; nin.hub.create_model adds
pretrained weights on top of build_model.
"""
from __future__ import annotations

import contextlib
import fnmatch
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .paper import DATASETS, INITS

# Per dataset: (kernel, widths) of each block; None in block 3 stands for the class count.
BLOCKS = {
    "cifar10": [(5, (192, 160, 96)), (5, (192, 192, 192)), (3, (192, 192, None))],
    "cifar100": [(5, (192, 160, 96)), (5, (192, 192, 192)), (3, (192, 192, None))],
    "mnist": [(5, (96, 64, 48)), (5, (128, 96, 48)), (5, (128, 96, None))],
    "svhn": [(5, (128, 96, 64)), (5, (320, 256, 128)), (5, (384, 256, None))],
}
ARCHS = {ds: dict(in_chans=DATASETS[ds]["in_chans"], input_size=DATASETS[ds]["size"],
                  num_classes=DATASETS[ds]["classes"], blocks=b) for ds, b in BLOCKS.items()}
# The conventional CNN of the GAP ablation: the NIN body with each mlpconv cut to its k×k conv.
CNN_BLOCKS = [(5, (192,)), (5, (192,)), (3, (None,))]
# NIN with maxout 1×1 layers (2 pieces): the middle widths halved, so that the parameter count is
# NIN's to 0.02 %: the micro network is the only difference (maxout against an MLP).
MAXOUT_BLOCKS = [(5, (192, 80, 96)), (5, (192, 96, 192)), (3, (192, 98, None))]


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run the block with the model in eval mode, then put its train/eval mode back."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


class Dropout(nn.Dropout):
    """nn.Dropout, with a cheaper mask when `bits` is on: 16 random bits per element (one int64
    draw per 4 elements; 15 used, as int64 draws leave the sign bit 0) compared with the keep
    rate. torch's bernoulli_ mask costs 13 % of a bf16 CPU training step (profile_cpu.py); this
    one is cheaper (`benchmarks/train_throughput.py --dropout torch bits` times both). The same
    distribution, p rounded to 1/32768, but another use of the RNG: training turns it on for new
    runs where device.dropout_masks says so, and a checkpoint keeps the masks it ran with.
    """

    bits = False

    def forward(self, x):  # (N, C, H, W) -> same
        if not (self.bits and self.training and 0 < self.p < 1):
            return super().forward(x)
        keep = max(1, round((1 - self.p) * 32768))
        if not (x.is_contiguous() or x.dim() == 4 and
                x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()
        n = x.numel()
        r = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
        r = r.view(torch.int16)[:n].as_strided(x.shape, x.stride())  # x's memory layout
        mask = (r.bitwise_and(0x7FFF) < keep).to(x.dtype).mul_(32768 / keep)
        return x * mask


def set_dropout_bits(model: nn.Module, on: bool):
    """Switch every nin Dropout of the model to the random-bits mask (or back)."""
    for m in model.modules():
        if isinstance(m, Dropout):
            m.bits = on


class Maxout(nn.Module):
    """The max over `pieces` consecutive channels or features: (N, C*pieces, ...) -> (N, C, ...),
    for conv maps and for a linear layer's outputs alike."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x):
        return x.unflatten(1, (-1, self.pieces)).amax(2)


class MLPConv(nn.Sequential):
    """A k×k conv then 1×1 convs, each followed by (batch norm and) ReLU. With pieces > 1 the
    1×1 layers are maxout units instead (each the max of `pieces` linear maps, no ReLU), except
    the class layer (class_layer: this block ends the network)."""

    def __init__(self, in_chans: int, widths, kernel: int, bn: bool = False, pieces: int = 1,
                 class_layer: bool = False):
        layers = []
        for i, w in enumerate(widths):
            k = kernel if i == 0 else 1
            maxout = pieces > 1 and i > 0 and not (class_layer and i == len(widths) - 1)
            out = w * pieces if maxout else w
            layers.append(nn.Conv2d(in_chans, out, k, padding=k // 2, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(out))
            layers.append(Maxout(pieces) if maxout else nn.ReLU(inplace=True))
            in_chans = w
        super().__init__(*layers)


class NIN(nn.Module):
    """Three mlpconv blocks and a head.

    head: "gap" (global average pooling of one map per class, the paper's), "fc" (flatten the last
    block's maps into a linear layer), "fc_dropout" (the same with dropout 0.5 before it).
    """

    def __init__(self, blocks, in_chans=3, num_classes=10, input_size=32, pool2="max",
                 drop_rate=0.5, head="gap", bn=False, init="paper", init_std=0.05, pieces=1):
        super().__init__()
        # What rebuilds this network from a checkpoint, also when it was built directly.
        self.arch = dict(blocks=[[k, list(w)] for k, w in blocks], in_chans=in_chans,
                         num_classes=num_classes, input_size=input_size, pool2=pool2,
                         drop_rate=drop_rate, head=head, bn=bn, init_std=init_std,
                         **({"pieces": pieces} if pieces > 1 else {}))
        self.name = None  # the registry name, set by build_model
        if head not in ("gap", "fc", "fc_dropout"):
            raise ConfigError(f"unknown head {head!r}: use gap, fc or fc_dropout")
        self.head_type, self.num_classes, self.init_std = head, num_classes, init_std
        self.in_chans, self.input_size = in_chans, input_size
        feats, c, size = [], in_chans, input_size
        for i, (k, widths) in enumerate(blocks):
            widths = tuple(num_classes if w is None else w for w in widths)
            feats.append(MLPConv(c, widths, k, bn=bn, pieces=pieces,
                                 class_layer=i == len(blocks) - 1 and head == "gap"))
            c = widths[-1]
            if i < len(blocks) - 1:
                # ceil_mode rounds up like cuda-convnet/Caffe: 32 -> 16 -> 8, 28 -> 14 -> 7.
                pool = nn.AvgPool2d(3, 2, ceil_mode=True) if (i == 1 and pool2 == "avg") \
                    else nn.MaxPool2d(3, 2, ceil_mode=True)
                feats.append(pool)
                size = math.ceil((size - 3) / 2) + 1
                if drop_rate > 0:
                    feats.append(Dropout(drop_rate))
        self.features = nn.Sequential(*feats)
        if head == "gap":
            self.classifier = None
        else:
            fc = [nn.Flatten()] + ([Dropout(0.5)] if head == "fc_dropout" else [])
            self.classifier = nn.Sequential(*fc, nn.Linear(c * size * size, num_classes))
        self.reset_parameters(init)

    def last_layer(self) -> nn.Module:
        """The layer the paper trains at 0.1x the learning rate (the classifier)."""
        mods = self.classifier if self.classifier is not None else self.features
        return [m for m in mods.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]

    def reset_parameters(self, init: str = "paper"):
        """paper: Gaussian(0, init_std) weights and zero biases, as the authors' files.
        kaiming: He-normal weights and zero biases.
        kaiming_zero: He-normal, but the class layer starts at weights 0 and bias 1: every class
        map alive everywhere and the prediction uniform. Without batch norm, He init starts at a
        loss near 5 and the first steps silence every class map (results/cpu/ablation-start-probes).
        """
        if init not in INITS:
            raise ConfigError(f"unknown init {init!r}: use one of {', '.join(INITS)}")
        stds = self.init_std if isinstance(self.init_std, (list, tuple)) else None
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for i, m in enumerate(layers):
            if init == "paper":
                std = stds[i] if stds is not None and i < len(stds) else \
                    (stds[-1] if stds is not None else self.init_std)
                nn.init.normal_(m.weight, 0.0, std)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if init == "kaiming_zero":
            last = self.last_layer()
            nn.init.zeros_(last.weight)
            if last.bias is not None:  # a constant bias leaves the softmax unchanged
                nn.init.ones_(last.bias)

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The per-class confidence maps (N, classes, H, W) that GAP averages."""
        if self.classifier is not None:
            raise ConfigError(f"a model with a {self.head_type} head has no class maps; "
                               "use a GAP model (e.g. nin_cifar10)")
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        if self.classifier is None:
            return y.mean((2, 3))
        return self.classifier(y)


class MaxoutNet(nn.Module):
    """Maxout Networks' CIFAR-10 network (Goodfellow et al. 2013; pylearn2's
    scripts/papers/maxout/cifar10.yaml): three maxout conv layers (96, 192, 192 units of 2 pieces;
    8x8, 8x8, 5x5 kernels padded 4, 3, 3; max pooling 4/2, 4/2, 2/2), a maxout fully connected
    layer (500 units of 5 pieces) and a linear classifier; dropout 0.2 on the input, 0.5 before
    every later layer. The paper's 11.68 % is NIN's point of comparison (no augmentation)."""
    head_type = "fc"

    def __init__(self, in_chans=3, num_classes=10, input_size=32, drop_rate=0.5,
                 init="paper", init_std=0.005):
        super().__init__()
        self.arch = dict(in_chans=in_chans, num_classes=num_classes, input_size=input_size,
                         drop_rate=drop_rate, init_std=init_std)
        self.name, self.num_classes, self.init_std = None, num_classes, init_std
        self.in_chans, self.input_size = in_chans, input_size
        layers, c, size = [Dropout(0.2)] if drop_rate > 0 else [], in_chans, input_size
        for units, k, pad, pool in ((96, 8, 4, 4), (192, 8, 3, 4), (192, 5, 3, 2)):
            if c != in_chans and drop_rate > 0:
                layers.append(Dropout(drop_rate))
            layers += [nn.Conv2d(c, 2 * units, k, padding=pad), Maxout(2),
                       nn.MaxPool2d(pool, 2, ceil_mode=True)]
            size = math.ceil((size + 2 * pad - k + 1 - pool) / 2) + 1
            c = units
        self.features = nn.Sequential(*layers)
        drop = [Dropout(drop_rate)] if drop_rate > 0 else []
        self.classifier = nn.Sequential(nn.Flatten(), *drop, nn.Linear(c * size * size, 500 * 5),
                                        Maxout(5), *drop, nn.Linear(500, num_classes))
        self.reset_parameters(init)

    def last_layer(self) -> nn.Module:
        return self.classifier[-1]

    def reset_parameters(self, init: str = "paper"):
        """paper: uniform in +-init_std (pylearn2's irange .005), zero biases; kaiming*: He
        init (kaiming_zero also zeroes the classifier, bias 1)."""
        if init not in INITS:
            raise ConfigError(f"unknown init {init!r}: use one of {', '.join(INITS)}")
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "paper":
                    nn.init.uniform_(m.weight, -self.init_std, self.init_std)
                else:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if init == "kaiming_zero":
            nn.init.zeros_(self.last_layer().weight)
            nn.init.ones_(self.last_layer().bias)

    def forward_maps(self, x):
        raise ConfigError("maxout_cifar10 has a fully connected head and no class maps; "
                          "use a GAP model (e.g. nin_cifar10_maxout)")

    def forward(self, x):
        return self.classifier(self.features(x))


WHITEN_EPS = 5e-4  # airbench's, on inputs standardized per channel as ours are


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def whiten_rows(conv: nn.Conv2d) -> int:
    """How many of the conv's filters patch whitening fills: two per patch dimension."""
    return min(conv.out_channels, 2 * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1])


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor) -> int:
    """Patch-whitening init (airbench): the first conv's filters start as the eigenvectors of
    the (uncentred) covariance of its input patches, each scaled by 1/sqrt(eigenvalue + eps),
    as a positive and a negative filter, largest eigenvalue first; the filters beyond that keep
    their init. The conv then maps patches to decorrelated, unit-variance responses, which is
    what the rest of the network would otherwise spend its first epochs learning.
    `images`: preprocessed training images (N, C, H, W). Returns the filters filled."""
    conv = first_conv(model)
    k, d = conv.kernel_size[0], conv.in_channels * conv.kernel_size[0] ** 2
    cov, count = torch.zeros(d, d, dtype=torch.float64, device=images.device), 0
    for chunk in images.split(500):  # patches at stride 2: 196 per CIFAR image, 75 values each
        p = F.unfold(chunk.float(), k, stride=2).transpose(1, 2).reshape(-1, d).double()
        cov += p.T @ p
        count += len(p)
    eigval, eigvec = torch.linalg.eigh(cov / count)  # ascending
    scaled = (eigvec.T.flip(0) / (eigval.flip(0) + WHITEN_EPS).sqrt()[:, None]).float()
    n = whiten_rows(conv)
    filters = torch.cat([scaled, -scaled])[:n].reshape(n, conv.in_channels, k, k)
    conv.weight[:n] = filters.to(conv.weight)
    if conv.bias is not None:
        conv.bias[:n] = 0
    return n


@torch.no_grad()
def dirac_init(model: NIN) -> int:
    """Identity init (airbench's dirac): in every conv but the first (it sees the image) and the
    class layer, the first min(out, in) filters start as the identity on their input channels
    (1 at the centre of the kernel, 0 elsewhere), so each layer starts by passing its input on;
    the other filters keep their init. Returns the convs set."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    last = model.last_layer()
    done = 0
    for conv in convs[1:]:
        if conv is last:
            continue
        w = conv.weight
        nn.init.dirac_(w[:w.size(1)])
        if conv.bias is not None:
            conv.bias[:w.size(1)] = 0
        done += 1
    return done


def freeze_rows(param: nn.Parameter, n: int):
    """Keep the first n rows (filters) of param at their values: their gradient is zeroed, so
    momentum never moves them (weight decay must be off for param: training.param_groups)."""
    param.register_hook(lambda g: g.index_fill(0, torch.arange(n, device=g.device), 0))


# ---------------------------------------------------------------- registry
# One builder per network, registered by name (as timm's register_model): `grep -n "def
# nin_svhn_bn" src/` finds its definition. Each builder returns a fresh network; kwargs override
# its settings (drop_rate, init, num_classes, input_size ...). Pretrained weights: nin.hub.
_REGISTRY: dict[str, dict] = {}


def register_model(dataset: str):
    """Decorator: register a builder under its function name, for the dataset whose images it
    takes. A name registered twice is refused."""
    def register(fn):
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[fn.__name__] = dict(dataset=dataset, doc=doc, fn=fn)
        return fn
    return register


def _nin(dataset: str, **kw) -> NIN:
    """The paper's architecture for `dataset` (BLOCKS, its image size and class count), with the
    builder's settings, then the caller's, on top."""
    arch = ARCHS[dataset]
    cfg = dict(blocks=arch["blocks"], in_chans=arch["in_chans"], input_size=arch["input_size"],
               num_classes=arch["num_classes"])
    cfg.update({k: v for k, v in kw.items() if v is not None or k != "num_classes"})
    return NIN(**cfg)


# The authors' CIFAR-100 file: Gaussian std 0.001 for conv1, 0.01 for cccp1-2, 0.05 elsewhere.
CIFAR100_INIT_STD = [0.001, 0.01, 0.01, 0.05]


@register_model("cifar10")
def nin_cifar10(**kw) -> NIN:
    """NIN for CIFAR-10, the paper's network (966,986 parameters)"""
    return _nin("cifar10", **kw)


@register_model("cifar10")
def nin_cifar10_bn(**kw) -> NIN:
    """NIN for CIFAR-10 with batch norm after each conv (modern recipe)"""
    return _nin("cifar10", **{"bn": True, **kw})


@register_model("cifar100")
def nin_cifar100(**kw) -> NIN:
    """NIN for CIFAR-100, the paper's network, with the authors' init stds"""
    return _nin("cifar100", **{"init_std": CIFAR100_INIT_STD, **kw})


@register_model("cifar100")
def nin_cifar100_bn(**kw) -> NIN:
    """NIN for CIFAR-100 with batch norm after each conv (modern recipe)"""
    return _nin("cifar100", **{"bn": True, "init_std": CIFAR100_INIT_STD, **kw})


@register_model("mnist")
def nin_mnist(**kw) -> NIN:
    """NIN for MNIST, the paper's network"""
    return _nin("mnist", **kw)


@register_model("mnist")
def nin_mnist_bn(**kw) -> NIN:
    """NIN for MNIST with batch norm after each conv (modern recipe)"""
    return _nin("mnist", **{"bn": True, **kw})


@register_model("svhn")
def nin_svhn(**kw) -> NIN:
    """NIN for SVHN, the paper's network"""
    return _nin("svhn", **kw)


@register_model("svhn")
def nin_svhn_bn(**kw) -> NIN:
    """NIN for SVHN with batch norm after each conv (modern recipe)"""
    return _nin("svhn", **{"bn": True, **kw})


@register_model("cifar10")
def nin_cifar10_caffe(**kw) -> NIN:
    """Caffe Model Zoo NIN: average pooling after block 2"""
    return _nin("cifar10", **{"pool2": "avg", **kw})


@register_model("cifar10")
def nin_cifar10_fc(**kw) -> NIN:
    """ablation (Table 5): mlpconv body, fully connected head"""
    return _nin("cifar10", **{"head": "fc", **kw})


@register_model("cifar10")
def nin_cifar10_fc_dropout(**kw) -> NIN:
    """ablation (Table 5): mlpconv body, fully connected head with dropout"""
    return _nin("cifar10", **{"head": "fc_dropout", **kw})


@register_model("cifar10")
def nin_cifar10_nodropout(**kw) -> NIN:
    """ablation: NIN without dropout between blocks"""
    # its defining setting wins over a recipe's drop_rate (which every run passes)
    return _nin("cifar10", **{**kw, "drop_rate": 0.0})


@register_model("cifar10")
def nin_cifar10_maxout(**kw) -> NIN:
    """claims: NIN's shape with maxout 1x1 layers (2 pieces), at NIN's parameter count"""
    return _nin("cifar10", **{"blocks": MAXOUT_BLOCKS, "pieces": 2, **kw})


@register_model("cifar10")
def maxout_cifar10(num_classes=None, **kw) -> MaxoutNet:
    """claims: Maxout Networks' CIFAR-10 network (Goodfellow et al. 2013), fully connected head"""
    return MaxoutNet(**({"num_classes": num_classes} if num_classes else {}), **kw)


@register_model("cifar10")
def cnn_cifar10_gap(**kw) -> NIN:
    """ablation: conventional CNN (three convs) with a gap head"""
    return _nin("cifar10", **{"blocks": CNN_BLOCKS, "head": "gap", **kw})


@register_model("cifar10")
def cnn_cifar10_fc(**kw) -> NIN:
    """ablation: conventional CNN (three convs) with a fc head"""
    return _nin("cifar10", **{"blocks": CNN_BLOCKS, "head": "fc", **kw})


@register_model("cifar10")
def cnn_cifar10_fc_dropout(**kw) -> NIN:
    """ablation: conventional CNN (three convs) with a fc_dropout head"""
    return _nin("cifar10", **{"blocks": CNN_BLOCKS, "head": "fc_dropout", **kw})


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> dict:
    """{dataset, doc, fn} of a registered network."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name]


def build_model(name: str, num_classes: int | None = None, **kwargs) -> NIN:
    """Build a registered network with fresh weights. kwargs override the architecture's
    settings (drop_rate, init, bn, head, pool2...). For shipped weights: nin.create_model."""
    model = model_info(name)["fn"](num_classes=num_classes, **kwargs)
    model.name = name
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, in_chans: int | None = None, size: int | None = None) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and linear layers
    (pooling, ReLU and batch norm are a rounding error). nin_cifar10: ~222 M."""
    in_chans = in_chans or model.in_chans
    size = size or model.input_size
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += out[0].numel() * k
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with eval_mode(model), torch.no_grad():
        p = next(model.parameters())
        model(torch.zeros(1, in_chans, size, size, device=p.device, dtype=p.dtype))
    for h in handles:
        h.remove()
    return total
