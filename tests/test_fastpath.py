"""The fast path (torch.compile; on CUDA also bf16, channels_last, fused SGD) must compute what
the plain path computes: compared here on the CPU at fp32."""
import torch

from nin import checkpoint as ckpt
from nin.training import compile_or_eager, make_config, train


def test_compiled_training_matches_eager_at_fp32(tmp_path, monkeypatch):
    # Inductor draws dropout masks with its own generator; fallback_random makes it use eager's,
    # so that the two paths see the same masks and must agree to float rounding.
    import torch._inductor.config
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    msgs = []
    runs = {}
    for name, comp in (("eager", False), ("compiled", True)):
        cfg = make_config("modern", "mnist-sample", subset=96, eval_subset=64, batch_size=32,
                          epochs=1, max_steps=3, compile=comp, out=str(tmp_path / name))
        train(cfg, log=msgs.append, progress=False)
        runs[name] = ckpt.load_checkpoint(tmp_path / name)[0].state_dict()
    assert not any("running eager" in m for m in msgs), msgs  # it really compiled
    for k, v in runs["eager"].items():
        # float reordering, amplified by batch norm over 3 steps: ~5e-4 at most; a wrong
        # gradient or update would move weights by lr x grad, orders of magnitude more
        torch.testing.assert_close(runs["compiled"][k], v, atol=1e-3, rtol=1e-3, msg=k)


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
