"""The fast path (torch.compile; on CUDA also bf16, channels_last, fused SGD) must compute what
the plain path computes: compared here on the CPU at fp32."""
import pytest
import torch

from nin import checkpoint as ckpt
from nin.models import build_model
from nin.config import resolve
from nin.training import compile_or_eager, train


def test_compiled_step_matches_eager_at_fp32(monkeypatch):
    """One step of the batch-norm network, channels_last: same loss, same gradients."""
    import copy

    import torch._inductor.config
    # Inductor draws dropout masks with its own generator; fallback_random makes it use eager's.
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True, raising=False)
    torch.manual_seed(0)
    base = build_model("nin_mnist_bn", init="kaiming").to(memory_format=torch.channels_last)
    x = torch.randn(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    grads, losses = [], []
    for comp in (False, True):
        model = copy.deepcopy(base)
        net = compile_or_eager(model, lambda m: pytest.fail(m)) if comp else model
        torch.manual_seed(1)
        loss = torch.nn.functional.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        losses.append(loss.item())
        grads.append({k: p.grad for k, p in model.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for k, g in grads[0].items():
        # Relative to the gradient's norm: batch norm's backward subtracts means, so float
        # reordering shows at ~1e-3 there; a wrong gradient would be off by order one.
        rel = ((grads[1][k] - g).norm() / g.norm()).item()
        assert rel < 1e-2, (k, rel)


def test_compiled_training_run_matches_eager_at_fp32(tmp_path, monkeypatch):
    """Whole runs through the trainer (paper network, augmentation, dropout, SGD): the
    weights after a few steps agree to float rounding."""
    import torch._inductor.config
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True, raising=False)
    msgs = []
    runs = {}
    for name, comp in (("eager", False), ("compiled", True)):
        cfg = resolve(dict(recipe="paper", dataset="mnist-sample", subset=96, eval_subset=64,
                           batch_size=32,
                          epochs=1, max_steps=3, compile=comp, init="kaiming", translate=2,
                          amp=False, out=str(tmp_path / name)))
        train(cfg, log=msgs.append, progress=False)
        runs[name] = ckpt.load_checkpoint(tmp_path / name)[0].state_dict()
    assert not any("running eager" in m for m in msgs), msgs  # it really compiled
    moved = False
    for k, v in runs["eager"].items():
        torch.testing.assert_close(runs["compiled"][k], v, atol=1e-4, rtol=1e-4, msg=k)
    torch.manual_seed(0)
    start = build_model("nin_mnist", init="kaiming").state_dict()
    moved = any(not torch.allclose(start[k], v) for k, v in runs["eager"].items())
    assert moved


def test_compile_failure_falls_back_to_eager(monkeypatch):
    msgs = []

    def broken_compile(net):
        def run(x):
            raise RuntimeError("backend exploded")  # as a missing compiler fails at first call
        return run
    monkeypatch.setattr(torch, "compile", broken_compile)
    net = torch.nn.Linear(2, 2)
    f = compile_or_eager(net, msgs.append)
    x = torch.ones(1, 2)
    torch.testing.assert_close(f(x), net(x))
    assert any("backend exploded" in m and "running eager" in m for m in msgs)
    torch.testing.assert_close(f(x), net(x))  # and stays eager
