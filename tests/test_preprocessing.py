import pytest
import torch

from nin.preprocessing import Preprocess, augment, gcn, lcn


def _correlated_images(n=3000, c=3, s=6, seed=0):
    """Smooth, correlated uint8 images: a hard case for whitening."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, s, s, generator=g)
    x = 0.6 * base + 0.4 * torch.rand(n, c, s, s, generator=g)
    x = x + torch.linspace(0, 0.3, s)[None, None, None]
    return (x / x.amax() * 255).round().to(torch.uint8)


def test_gcn_gives_zero_mean_and_norm_55():
    x = _correlated_images(50).float()
    z = gcn(x).flatten(1)
    torch.testing.assert_close(z.mean(1), torch.zeros(50), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.norm(dim=1), torch.full((50,), 55.0), atol=1e-3, rtol=0)
    flat = torch.full((1, 3, 4, 4), 7.0)  # a constant image has no contrast: left at zero
    assert torch.isfinite(gcn(flat)).all() and gcn(flat).abs().max() == 0


def test_zca_whitens_the_training_data():
    x = _correlated_images()
    pre = Preprocess("gcn_zca", 3, 6, zca_bias=1e-6).fit(x)
    z = pre(x).flatten(1).double()
    cov = (z - z.mean(0)).T @ (z - z.mean(0)) / len(z)
    d = cov.shape[0]
    # GCN removes one direction (each image's mean), so the rank is d - 1: identity elsewhere.
    evals = torch.linalg.eigvalsh(cov)
    assert evals[0].abs() < 1e-3
    torch.testing.assert_close(evals[1:], torch.ones(d - 1, dtype=torch.float64), atol=2e-3,
                               rtol=0)
    before = gcn(x.float()).flatten(1).double()
    c0 = torch.corrcoef(before.T).fill_diagonal_(0).abs().max()
    assert c0 > 0.5  # the input really was correlated
    # ZCA (unlike PCA whitening) stays close to the input: the matrix is symmetric
    torch.testing.assert_close(pre.zca_matrix, pre.zca_matrix.T, atol=1e-3, rtol=1e-3)


def test_zca_default_bias_whitens_the_strong_directions():
    x = _correlated_images()
    pre = Preprocess("gcn_zca", 3, 6).fit(x)  # pylearn2's filter_bias 0.1
    z = pre(x).flatten(1).double()
    evals = torch.linalg.eigvalsh((z - z.mean(0)).T @ (z - z.mean(0)) / len(z))
    big = gcn(x.float()).flatten(1).double()
    raw = torch.linalg.eigvalsh((big - big.mean(0)).T @ (big - big.mean(0)) / len(big))
    strong = raw > 10  # where eigenvalue >> bias, whitened variance is ~ 1
    assert strong.sum() > 0
    assert ((evals[strong] - 1).abs() < 0.02).all()


def test_zca_state_round_trips():
    x = _correlated_images(500)
    pre = Preprocess("gcn_zca", 3, 6).fit(x)
    again = Preprocess(**pre.config())
    again.load_state_dict(pre.state_dict())
    torch.testing.assert_close(again(x[:10]), pre(x[:10]))


def test_standardize_and_scale():
    x = _correlated_images(2000)
    z = Preprocess("standardize", 3, 6).fit(x)(x)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)
    s = Preprocess("scale", 3, 6)(x)
    assert s.min() >= 0 and s.max() <= 1


def test_lcn_normalizes_locally():
    x = _correlated_images(20, s=16)
    z = Preprocess("lcn", 3, 16)(x)
    assert z.shape == x.shape and torch.isfinite(z).all()
    # the centre of each map has (near) zero local mean: its Gaussian-weighted mean is removed
    assert z[:, :, 4:12, 4:12].mean().abs() < 0.1
    # contrast normalization: the same output for the image at a third of the contrast
    k = Preprocess("lcn", 3, 16).kernel
    torch.testing.assert_close(lcn(x.float() / 3, k), lcn(x.float(), k), atol=1e-4, rtol=1e-4)


def test_augment_keeps_shapes_and_content():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    labels = torch.arange(64)
    y = augment(x, translate=2, flip=True, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype
    # every output is its own input shifted (and maybe mirrored): labels stay with their images
    for i in range(64):
        found = False
        for src in (x[i], x[i].flip(2)):
            p = torch.nn.functional.pad(src, (2, 2, 2, 2))
            for dy in range(5):
                for dx in range(5):
                    if torch.equal(p[:, dy:dy + 8, dx:dx + 8], y[i]):
                        found = True
        assert found, f"image {i} (label {labels[i]}) is not a shift/flip of its input"
    assert not torch.equal(y, x)


def test_flip_alone_and_no_op():
    x = torch.randn(200, 1, 4, 4)
    y = augment(x, flip=True, generator=torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(a, b.flip(2)) for a, b in zip(y, x)])
    same = torch.tensor([torch.equal(a, b) for a, b in zip(y, x)])
    assert (flipped | same).all() and 60 < flipped.sum() < 140
    assert torch.equal(augment(x), x)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown preprocessing"):
        Preprocess("whiten")


def test_augment_crop_is_a_window_of_the_padded_image():
    # progressive resizing: each crop must be a contiguous size x size window of the image
    # padded by `translate`, at a position drawn per image
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    g = torch.Generator().manual_seed(0)
    out = augment(x, translate=2, size=5, generator=g)
    assert out.shape == (2, 3, 5, 5)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        hits = [(dy, dx) for dy in range(8) for dx in range(8)
                if torch.equal(xp[i, :, dy:dy + 5, dx:dx + 5], out[i])]
        assert len(hits) == 1


def test_augment_full_size_draws_unchanged():
    # size == the image side must draw exactly as plain translation did (resumable runs)
    x = torch.randn(4, 1, 6, 6)
    a = augment(x, translate=2, generator=torch.Generator().manual_seed(3))
    b = augment(x, translate=2, generator=torch.Generator().manual_seed(3), size=6)
    assert torch.equal(a, b)


def test_crop_settings_are_checked():
    from nin.config import resolve
    from nin.errors import ConfigError
    with pytest.raises(ConfigError, match="crop-size"):
        resolve(dict(recipe="modern", dataset="cifar10", crop_epochs=3))
    with pytest.raises(ConfigError, match="32x32"):
        resolve(dict(recipe="modern", dataset="cifar10", crop_size=40, crop_epochs=3))
