"""The one result type: written by training, read back by every reader, older files included."""
import json

import pytest

from nin.config import config_from_dict
from nin.results import RunResult, collect


def _cfg(**settings):
    return config_from_dict(settings)
from nin.sweep import summarize


def _result(seed, error, history=(), **kw):
    return RunResult(config=_cfg(model="nin_mnist_bn", dataset="mnist", recipe="modern",
                                 seed=seed, out=f"runs/s{seed}", translate=2, flip=False,
                                 tta=False), finished=True, steps=10, history=list(history),
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


def test_threads_are_those_of_every_piece_of_a_resumed_run():
    """Epochs record their threads: a run resumed on 1 thread after 2 says both; epochs from
    before that was recorded count as the last piece's (env), as they did."""
    pieces = _result(0, 1.0, history=[dict(epoch=1, threads=2), dict(epoch=2, threads=1)])
    assert pieces.row()["threads"] == [1, 2]
    older = _result(1, 2.0, history=[dict(epoch=1), dict(epoch=2, threads=1)])
    assert older.threads == [1, 2] and _result(2, 3.0).threads == [2]
    [row] = summarize([pieces, older])
    assert row["threads"] == [1, 2]
    from nin.tables import cell
    assert "(1/2 threads)" in cell(dict(row, wall_s=[60.0], epochs=[2]))


def test_an_ablation_line_shows_test_and_training_error_and_parameters():
    from nin.tables import ablation_line
    runs = [RunResult(config=_cfg(model="nin_cifar10_fc", dataset="cifar10", recipe="paper",
                                  seed=s, translate=0, flip=False, epochs=30),
                      finished=True, steps=1, params=1_000_000, epochs_run=30, wall_s=3600.0,
                      history=[dict(epoch=30, train_acc=acc)], final=dict(n=10000, error=err),
                      env=dict(threads=2)) for s, acc, err in ((0, 0.99, 12.0), (1, 0.97, 13.0))]
    [row] = summarize(runs)
    line = ablation_line("mlpconv + FC", "11.59", row)
    assert line.startswith("| mlpconv + FC | 11.59 | 12.50 ± 0.71 (n=2), no TTA; 30 epochs in fp32")
    assert line.endswith("| 2.00 | 1,000,000 |")  # training error 1 % and 3 %: mean 2
    assert ablation_line("x", "1", None) == "| x | 1 | not run | | |"


def test_claim_lines_give_welch_intervals_and_say_holds_only_when_zero_is_outside():
    """Each claim: the difference of the means with its 95 % Welch t-interval (each side's own
    spread; the degrees of freedom stated); "holds" only when the interval excludes zero on the
    paper's side, "reversed" on the other, "not resolved" when it straddles zero or a network
    has one seed. The interval is checked against scipy's Welch test."""
    import math

    from scipy import stats

    from nin.tables import claim_lines, welch_interval
    row = lambda mean, n, std: dict(mean=mean, n=n, std=std)  # noqa: E731
    lines = claim_lines({"nin_cifar10": row(12.0, 3, 0.2), "nin_cifar10_fc": row(13.0, 3, 0.3),
                         "nin_cifar10_fc_dropout": row(12.1, 3, 0.2),
                         "cnn_cifar10_gap": row(20.0, 3, 0.4), "cnn_cifar10_fc": row(19.0, 2, 0.1),
                         "nin_cifar10_nodropout": row(14.0, 1, 0.0)})
    lo, hi, df = welch_interval(12.0, 0.2, 3, 13.0, 0.3, 3)
    va, vb = 0.2 ** 2 / 3, 0.3 ** 2 / 3
    want_df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    half = stats.t.ppf(0.975, want_df) * math.sqrt(va + vb)
    assert (lo, hi, df) == pytest.approx((1 - half, 1 + half, want_df), rel=1e-6)
    assert f"[{lo:+.2f}, {hi:+.2f}] (Welch, {df:.1f} degrees of freedom; 3 and 3 seeds): " \
           "holds." in lines[0]
    assert "ours by +0.10 points" in lines[1] and lines[1].endswith("not resolved.")
    assert "ours by +8.00 points" in lines[2] and lines[2].endswith("holds.")
    assert "ours by -1.00 points" in lines[3] and lines[3].endswith("reversed.")
    assert lines[4].endswith("not run.")
    assert "(3 and 1 seed), not resolved: an interval needs two seeds" in lines[5]
    assert "(paper: no figure): not run." in lines[6]


def test_a_cell_of_several_networks_names_each_and_the_missing_one(tmp_path):
    """The augmented CIFAR-10 row's modern column holds nin_cifar10_bn and the paper's network:
    each line is named by its network, and one not run says so."""
    from nin.tables import modern_cell
    r = RunResult(config=_cfg(model="nin_cifar10_bn", dataset="cifar10", recipe="modern", seed=0,
                              translate=4, flip=True, tta=False, epochs=45),
                  finished=True, steps=1, history=[], final=dict(n=10000, error=8.5),
                  env=dict(threads=2), wall_s=60.0)
    rows = summarize([r])
    both = modern_cell(rows, tmp_path, "cifar10", ("nin_cifar10_bn", "nin_cifar10"))
    first, second = both.split("<br>")
    assert first.startswith("nin_cifar10_bn: 8.50 (1 seed), no TTA") and \
        second == "nin_cifar10: not run"
    assert modern_cell(rows, tmp_path, "cifar10", "nin_cifar10_bn").startswith("8.50 (1 seed)")


def test_the_translation_claim_compares_the_rise_of_error_with_shift():
    """(d): the mean rise over shifts 1..N, GAP's against FC's; a pair not measured says so."""
    from nin.tables import shift_claim_lines
    curve = lambda model, err: dict(model=model, shifts=[0, 1, 2], error=err)  # noqa: E731
    lines = shift_claim_lines({"a": curve("nin_cifar10", [10.0, 11.0, 13.0]),
                               "b": curve("nin_cifar10_fc", [12.0, 14.0, 18.0]),
                               "c": curve("cnn_cifar10_gap", [20.0, 26.0, 30.0]),
                               "d": curve("cnn_cifar10_fc", [20.0, 21.0, 23.0])})
    assert "rises by 2.00 points on average with GAP and 4.00 with FC: GAP is the more robust " \
           "by 2.00 points" in lines[0]
    assert lines[1].endswith("not run.")
    assert "rises by 8.00 points on average with GAP and 2.00 with FC: FC is the more robust " \
           "by 6.00" in lines[2]
    assert lines[0].endswith("(1 and 1 seed): not resolved: an interval needs two seeds of each.")
    # two seeds each: the rises' Welch interval decides
    seeds = shift_claim_lines({
        "a0": curve("nin_cifar10", [10.0, 11.0, 13.0]),
        "a1": curve("nin_cifar10", [9.0, 10.5, 12.5]),
        "b0": curve("nin_cifar10_fc", [12.0, 16.0, 20.0]),
        "b1": curve("nin_cifar10_fc", [12.0, 16.5, 20.5])})
    assert "rises by 2.25 points on average with GAP and 6.25 with FC: GAP is the more robust " \
           "by 4.00 points, 95 % interval [+2.48, +5.52] (Welch, 2.0 degrees of freedom; 2 and " \
           "2 seeds): holds." in seeds[0]
    assert seeds[1].endswith("not run.")
