import pytest
import torch

import nin
from nin.models import ARCHS, count_params, build_model, list_models, model_info
from nin.config import resolve
from nin.training import param_groups

PAPER_PARAMS = {"nin_cifar10": 966_986, "nin_cifar100": 984_356, "nin_mnist": 349_674,
                "nin_svhn": 1_986_026}


@pytest.mark.parametrize("name,params", PAPER_PARAMS.items())
def test_paper_parameter_counts(name, params):
    assert count_params(nin.create_model(name)) == params


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_and_has_the_right_output(name):
    arch = ARCHS[model_info(name)["dataset"]]
    m = build_model(name).eval()
    x = torch.randn(3, arch["in_chans"], arch["input_size"], arch["input_size"])
    y = m(x)
    assert y.shape == (3, arch["num_classes"])
    assert torch.isfinite(y).all()


def test_list_models_and_unknown_name():
    names = nin.list_models()
    for n in ["nin_cifar10", "nin_cifar100", "nin_mnist", "nin_svhn", "nin_cifar10_caffe",
              "nin_cifar10_fc", "nin_cifar10_fc_dropout", "nin_cifar10_nodropout",
              "cnn_cifar10_gap", "cnn_cifar10_fc", "cnn_cifar10_fc_dropout", "nin_cifar10_bn"]:
        assert n in names
    assert nin.list_models("cnn_*") == ["cnn_cifar10_fc", "cnn_cifar10_fc_dropout",
                                        "cnn_cifar10_gap"]
    with pytest.raises(ValueError, match="unknown model"):
        nin.create_model("nin_imagenet")


def test_confidence_maps_are_what_gap_averages():
    m = build_model("nin_cifar10").eval()
    x = torch.randn(2, 3, 32, 32)
    maps = m.forward_maps(x)
    assert maps.shape == (2, 10, 8, 8)  # 32 -> 16 -> 8 with pooling rounded up
    torch.testing.assert_close(maps.mean((2, 3)), m(x))
    assert build_model("nin_mnist").forward_maps(torch.randn(1, 1, 28, 28)).shape[-1] == 7
    with pytest.raises(ValueError, match="no class maps"):
        build_model("nin_cifar10_fc").forward_maps(x)


def test_variants_differ_where_the_spec_says():
    caffe = build_model("nin_cifar10_caffe")
    assert isinstance(caffe.features[1], torch.nn.MaxPool2d)
    assert isinstance(caffe.features[4], torch.nn.AvgPool2d)
    assert not any(isinstance(m, torch.nn.Dropout) for m in
                   build_model("nin_cifar10_nodropout").modules())
    fc = build_model("nin_cifar10_fc_dropout")
    assert isinstance(fc.classifier[1], torch.nn.Dropout) and fc.head_type == "fc_dropout"
    cnn = build_model("cnn_cifar10_gap")
    assert sum(isinstance(m, torch.nn.Conv2d) for m in cnn.modules()) == 3
    assert build_model("nin_cifar10", num_classes=7)(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_paper_init_and_cifar100_stds():
    torch.manual_seed(0)
    w = build_model("nin_cifar10").features[0][0].weight
    assert abs(w.std().item() - 0.05) < 0.003
    convs = [m for m in build_model("nin_cifar100").modules() if isinstance(m, torch.nn.Conv2d)]
    assert abs(convs[0].weight.std().item() - 0.001) < 1e-4
    assert abs(convs[1].weight.std().item() - 0.01) < 1e-3
    assert abs(convs[3].weight.std().item() - 0.05) < 3e-3


def test_paper_learning_rate_multipliers():
    m = build_model("nin_cifar10")
    groups = param_groups(m, resolve(dict(recipe="paper", dataset="cifar10")))
    by_param = {id(p): (g["lr_mult"], g["weight_decay"]) for g in groups for p in g["params"]}
    last = m.last_layer()
    assert by_param[id(last.weight)] == (0.1, 1e-4)
    assert by_param[id(last.bias)] == pytest.approx((0.2, 0.0))
    first = m.features[0][0]
    assert by_param[id(first.weight)] == (1.0, 1e-4)
    assert by_param[id(first.bias)] == (2.0, 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))


def test_pooling_windows_start_at_pixel_0_like_cuda_convnet():
    """3x3/2 pooling without padding, rounded up: on a ramp x[i, j] = 32 i + j the first max
    window covers rows and columns 0-2, so it holds 32*2 + 2 = 66. pytorchcv's padding=1 gives
    33 (the window shifted by one pixel) with the same 16x16 output size."""
    ramp = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32)
    pool = next(m for m in build_model("nin_cifar10").features
                if isinstance(m, torch.nn.MaxPool2d))
    out = pool(ramp)
    assert out.shape[-2:] == (16, 16) and out[0, 0, 0, 0] == 66
    assert out[0, 0, -1, -1] == 32 * 31 + 31  # the last window is cut at the border
    assert torch.nn.MaxPool2d(3, 2, padding=1)(ramp)[0, 0, 0, 0] == 33
    avg = [m for m in build_model("nin_cifar10_caffe").features
           if isinstance(m, torch.nn.AvgPool2d)][0]
    assert avg(ramp)[0, 0, 0, 0] == 33  # the mean of rows 0-2 x columns 0-2, no zeros in it


def test_registry_builders_are_named_functions_and_names_are_unique():
    import nin.models as m
    for name in m.list_models():
        assert getattr(m, name) is m.model_info(name)["fn"]  # `def NAME` in models.py
    with pytest.raises(ValueError, match="registered twice"):
        m.register_model("cifar10")(m.nin_cifar10)
    # a recipe's drop_rate does not put dropout back into the no-dropout ablation
    net = m.build_model("nin_cifar10_nodropout", drop_rate=0.5)
    assert not any(isinstance(x, torch.nn.Dropout) for x in net.modules())
    assert m.build_model("nin_cifar100").init_std == m.CIFAR100_INIT_STD


def test_the_random_bits_dropout_mask_is_dropout():
    """models.Dropout with bits on: the keep rate and the 1/keep scale of dropout, the input's
    memory layout kept, the gradient through the same mask, identity in eval mode, and a mask
    that follows torch's seed (so a resumed run redraws it)."""
    from nin.models import Dropout
    d = Dropout(0.3)
    d.bits = True
    x = torch.ones(8, 64, 16, 16).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    torch.manual_seed(0)
    y = d(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.7) < 0.005 and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7), rtol=1e-4)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * mask)/dx = mask
    torch.manual_seed(0)
    assert torch.equal(d(x), y)
    for p in (0.5, 0.9):  # other rates, a 2-D input (the fc head's)
        d.p = p
        z = d(torch.ones(512, 1000))
        assert abs((z != 0).float().mean().item() - (1 - p)) < 0.005
        assert abs(z.mean().item() - 1) < 0.02
    d.eval()
    assert torch.equal(d(x), x)


def test_shift_tta_is_half_the_image_and_a_quarter_each_shift():
    """tta_shift=1: 1/2 the (flip-averaged) unmoved image, 1/4 each of it moved 1 px up-left and
    down-right with reflected borders; 0 leaves the plain prediction."""
    import torch.nn.functional as F

    from nin.evaluation import predict_logits
    from nin.preprocessing import Preprocess
    torch.manual_seed(0)
    # He init without batch norm: confident predictions, so that the views differ
    model, pre = build_model("nin_mnist", init="kaiming").eval(), Preprocess("scale", 1, 28)
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    x = pre(images)
    def probs(v):  # noqa: E306
        return (F.softmax(model(v), 1) + F.softmax(model(v.flip(3)), 1)) / 2
    pad = F.pad(x, (1,) * 4, mode="reflect")
    want = probs(x) / 2 + (probs(pad[..., :28, :28]) + probs(pad[..., 2:, 2:])) / 4
    got = predict_logits(model, pre, images, tta=True, tta_shift=1, precision="fp32").exp()
    assert torch.allclose(got, want, atol=1e-5)
    plain = predict_logits(model, pre, images, precision="fp32").exp()
    assert torch.allclose(plain, F.softmax(model(x), 1), atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)


def test_patch_whitening_decorrelates_the_first_convs_responses():
    """On correlated images (smoothed noise, unequal channel scales), the whitened filters'
    responses to the patches have a covariance near the identity: decorrelated, unit variance
    wherever an eigenvalue is well above eps. Filters n/2.. are the negatives of the first."""
    import torch.nn.functional as F
    from nin.models import first_conv, whiten_first_conv
    g = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.randn(400, 3, 36, 36, generator=g), 5, 1) * torch.tensor([1., 2, .5])[:, None, None]
    model = build_model("nin_cifar10_bn")
    n = whiten_first_conv(model, x)
    w = first_conv(model).weight.detach()
    assert n == 150 and torch.equal(w[75:150], -w[:75])
    patches = F.unfold(x, 5, stride=2).transpose(1, 2).reshape(-1, 75)
    out = patches @ w[:75].reshape(75, 75).T
    cov = out.T @ out / len(out)
    big = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0) > 100 * 5e-4
    assert torch.allclose(cov[big][:, big], torch.eye(int(big.sum())), atol=0.02)


def test_maxout_nin_has_nins_parameters_and_maxout_units(tmp_path):
    """nin_cifar10_maxout differs from nin_cifar10 in its micro network alone: the same
    parameter count to 0.02 %, the class maps through GAP, and its 1x1 layers the max of two
    linear maps (no ReLU: a maxout unit may be negative). It survives a checkpoint."""
    from nin import checkpoint as ckpt
    from nin.models import Maxout
    from nin.preprocessing import Preprocess
    m = build_model("nin_cifar10_maxout", init="kaiming")
    assert abs(count_params(m) / count_params(build_model("nin_cifar10")) - 1) < 2e-4
    assert sum(isinstance(x, Maxout) for x in m.modules()) == 5  # all 1x1 but the class layer
    x = torch.randn(4, 6, 3, 3)
    assert torch.equal(Maxout(2)(x), torch.maximum(x[:, 0::2], x[:, 1::2]))
    m.eval()
    maps = m.forward_maps(torch.randn(2, 3, 32, 32))
    assert maps.shape == (2, 10, 8, 8) and (maps >= 0).all()  # the class layer keeps its ReLU
    side = ckpt.save_checkpoint(tmp_path, 1, m, Preprocess("standardize", 3, 32), {})
    back = ckpt.load_checkpoint(side)[0]
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(back(x), m(x))


def test_goodfellows_maxout_network_has_the_pylearn2_shapes(tmp_path):
    """maxout_cifar10: 96/192/192 conv units of 2 pieces (8x8 pad 4, 8x8 pad 3, 5x5 pad 3),
    max pooling 4/2, 4/2, 2/2 (cuda-convnet's rounding: 33 -> 16, 15 -> 7, 9 -> 5), 500 FC
    units of 5 pieces, 10 classes: every parameter counted from those sizes."""
    from nin import checkpoint as ckpt
    from nin.errors import ConfigError
    from nin.preprocessing import Preprocess
    m = build_model("maxout_cifar10")
    want = (3 * 64 * 192 + 192) + (96 * 64 * 384 + 384) + (192 * 25 * 384 + 384) \
        + (192 * 5 * 5 * 2500 + 2500) + (500 * 10 + 10)
    assert count_params(m) == want and m.head_type == "fc"
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert m.last_layer().out_features == 10
    with pytest.raises(ConfigError, match="no class maps"):
        m.forward_maps(torch.randn(1, 3, 32, 32))
    m.eval()
    side = ckpt.save_checkpoint(tmp_path, 1, m, Preprocess("standardize", 3, 32), {})
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(ckpt.load_checkpoint(side)[0](x), m(x))


def test_identity_init_passes_each_layer_input_on():
    """--dirac: every conv but the first and the class layer starts with its first min(out, in)
    filters as the identity; a 1x1 192 -> 192 layer then maps its input to itself, and the
    rest of the filters keep their random init."""
    import torch

    from nin.models import build_model, dirac_init
    model = build_model("nin_cifar10_bn", init="kaiming")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    first, last = convs[0].weight.clone(), model.last_layer().weight.clone()
    assert dirac_init(model) == len(convs) - 2
    assert torch.equal(convs[0].weight, first) and torch.equal(model.last_layer().weight, last)
    square = next(c for c in convs[1:]
                  if c.in_channels == c.out_channels and c.kernel_size == (1, 1))
    x = torch.randn(2, square.in_channels, 4, 4)
    assert torch.equal(square(x), x)
    wide = next(c for c in convs[1:] if c.out_channels > c.in_channels)  # 5x5 96 -> 192
    k = wide.kernel_size[0] // 2
    n = wide.in_channels
    assert torch.equal(wide.weight[:n, :, k, k], torch.eye(n))
    assert wide.weight[:n].abs().sum() == n and wide.weight[n:].abs().sum() > 0
