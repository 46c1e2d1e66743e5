"""The one result type: written by training, read back by every reader, older files included."""
import json

from nin.results import RunResult, collect
from nin.sweep import summarize


def _result(seed, error, **kw):
    return RunResult(config=dict(model="nin_mnist_bn", dataset="mnist", recipe="modern",
                                 seed=seed, out=f"runs/s{seed}", translate=2, flip=False,
                                 tta=False), finished=True, steps=10, history=[],
                     final=dict(n=100, error=error), env=dict(threads=2), wall_s=60.0, **kw)


def test_a_result_round_trips_and_older_files_read(tmp_path):
    r = _result(0, 1.5, precision="bf16")
    (tmp_path / "a").mkdir()
    r.write(tmp_path / "a")
    back = RunResult.read(tmp_path / "a/result.json")
    assert back.to_dict() == r.to_dict() and back.folder == tmp_path / "a"
    assert "path" not in json.loads((tmp_path / "a/result.json").read_text())
    # before precision had its own key (CUDA with amp: bf16), and a stop's "step"
    old = dict(config=dict(amp=True), step=7, env=dict(device="cuda:0", precision=None),
               history=[dict(epoch=1)], unknown_later_key=1)
    o = RunResult.from_dict(old)
    assert (o.precision, o.steps, o.finished, o.history) == ("bf16", 7, False, [dict(epoch=1)])
    assert RunResult.from_dict(dict(config={}, env=dict(device="cpu"))).precision == "fp32"


def test_seeds_are_grouped_from_the_result_rows(tmp_path):
    for seed, err in ((0, 1.0), (1, 2.0)):
        (tmp_path / f"s{seed}").mkdir()
        _result(seed, err, precision="bf16").write(tmp_path / f"s{seed}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/result.json").write_text('{"config": ')  # cut off: skipped
    found = collect(tmp_path)
    assert [r.row()["seed"] for r in found] == [0, 1]
    [row] = summarize(found)
    assert (row["n"], row["mean"], row["seeds"], row["precision"]) == (2, 1.5, [0, 1], "bf16")
