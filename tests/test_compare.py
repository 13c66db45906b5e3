"""The compare tool: records, the command line, its JSON and its plot."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import torch_conv

import gemmconv
from gemmconv.strategies.measure import DISTURBED, Measurement, Settings, measure_settled
from gemmconv.tools.cli import build_parser, layer_option_error, main, shape_layer


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    return gemmconv.compare(x, w, None, padding=1, repeat=3, warmup_s=0.05)


def test_one_record_per_strategy(records):
    assert [r.strategy for r in records] == gemmconv.list_strategies()
    refused = {r.strategy: r for r in records if r.status == "refused"}
    assert set(refused) == {"1x1"} and refused["1x1"].reason == "needs a 1x1 kernel, got 3x3"
    assert sum(r.winner for r in records) == 1
    winner = next(r for r in records if r.winner)
    assert winner.strategy != "auto"
    assert winner.median_s == min(r.median_s for r in records if r.status == "ok" and r.strategy != "auto")


def test_measurements_are_plausible(records):
    ok = {r.strategy: r for r in records if r.status == "ok"}
    for r in ok.values():
        assert r.median_s > 0 and len(r.times_s) == 3 and r.min_s <= r.q1_s <= r.median_s <= r.q3_s <= r.max_s
        assert r.iqr_s == pytest.approx(r.q3_s - r.q1_s) and r.rel_iqr == pytest.approx(r.iqr_s / r.median_s)
        assert r.warmup_calls >= 1 and 1 <= r.attempts <= 3 and r.disturbed == (r.rel_iqr > DISTURBED)
        assert r.gflops == pytest.approx(r.flops / r.median_s / 1e9)
        assert r.flops == 2 * 2 * 8 * 16 * 16 * 8 * 9
    assert ok["im2col"].rel_error < 1e-5 and ok["direct"].rel_error < 1e-5
    assert 0 < ok["winograd"].rel_error < 1e-4
    # im2col holds its column matrix: C·R·S × OH·OW per image, float32
    assert ok["im2col"].workspace_bytes >= 2 * 8 * 9 * 16 * 16 * 4
    assert ok["direct"].workspace_bytes < ok["im2col"].workspace_bytes / 10
    assert ok["auto"].chosen == gemmconv.choose_strategy(np.zeros((2, 8, 16, 16), np.float32),
                                                         np.zeros((8, 8, 3, 3), np.float32), padding=1)


def test_compare_validates_like_conv2d():
    x, w = np.ones((1, 2, 5, 5)), np.ones((1, 2, 3, 3))
    with pytest.raises(ValueError, match="unknown strategy='fourier'"):
        gemmconv.compare(x, w, strategies=["fourier"])
    with pytest.raises(ValueError, match="stride must be >= 1"):
        gemmconv.compare(x, w, stride=0)
    with pytest.raises(ValueError, match="repeat must be an int >= 1"):
        gemmconv.compare(x, w, repeat=0)


def test_cli_sweeps_kernel_sizes_and_plots_the_crossover(tmp_path, capsys):
    out_json, out_png = tmp_path / "s.json", tmp_path / "s.png"
    rc = main(["compare", "--shape", "1,4,16,16,4,3,3", "--sweep", "kernel", "--sizes", "1,5,9", "--strategies",
               "direct", "fft", "--repeat", "2", "--warmup-s", "0", "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0 and out_png.stat().st_size > 1000
    recs = json.loads(out_json.read_text())["records"]
    assert [(r["layer"], r["strategy"]) for r in recs] == [(f"custom_k{k}", s) for k in (1, 5, 9)
                                                           for s in ("direct", "fft")]
    assert [r["w_shape"] for r in recs[::2]] == [[4, 4, k, k] for k in (1, 5, 9)]
    assert all(r["x_shape"] == [1, 4, 16, 16] and r["conv_args"]["padding"] == int(r["layer"][-1]) // 2
               for r in recs)
    capsys.readouterr()


def test_cli_writes_json_and_png(tmp_path, capsys):
    out_json, out_png = tmp_path / "c.json", tmp_path / "c.png"
    rc = main(["compare", "--shape", "2,4,12,12,8,3,3", "--padding", "1", "--repeat", "2", "--warmup-s", "0.05",
               "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "winograd" in text and "winner" in text and "refused: needs a 1x1 kernel" in text
    data = json.loads(out_json.read_text())
    assert data["batch"] == 2 and data["dtype"] == "float32" and data["backend"] == "numpy"
    assert data["peaks"]["gemm_gflops"] > 0 and data["peaks"]["bandwidth_gbs"] > 0
    recs = data["records"]
    assert [r["strategy"] for r in recs] == gemmconv.list_strategies()
    assert all(r["x_shape"] == [2, 4, 12, 12] and r["w_shape"] == [8, 4, 3, 3] for r in recs)
    assert sum(r["winner"] for r in recs) == 1
    assert all(r["median_s"] > 0 and r["rel_error"] < 1e-4 for r in recs if r["status"] == "ok")

    import matplotlib.image

    raw = out_png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(out_png)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_cli_builtin_layers_subset(capsys):
    assert main(["compare", "--layers", "conv1x1s2_56", "--strategies", "1x1", "im2col", "--repeat", "1",
                 "--warmup-s", "0"]) == 0
    out = capsys.readouterr().out
    assert "conv1x1s2_56" in out and "winners: conv1x1s2_56:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--strategies", "fourier"], "unknown strategies fourier"),
        (["compare", "--shape", "1,4,8,8,6,9,9"], "larger than the padded input"),
    ],
)
def test_cli_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--shape", "1,2,3"], "argument --shape: --shape takes 7 comma-separated integers >= 1, got '1,2,3'"),
    (["--repeat", "0"], "argument --repeat: --repeat takes an integer >= 1, got '0'"),
    (["--batch", "x"], "argument --batch: --batch takes an integer >= 1, got 'x'"),
    (["--retries", "-1"], "argument --retries: --retries takes an integer >= 0, got '-1'"),
    (["--warmup-s", "-1"], "argument --warmup-s: --warmup-s takes a number of seconds >= 0, got '-1'"),
    (["--shape", "1,4,8,8,6,3,3", "--padding", "1,2,3"],
     "argument --padding: --padding takes an integer V or a pair H,W of integers >= 0 or 'same' or 'valid'; "
     "got '1,2,3'"),
    (["--shape", "1,4,8,8,6,3,3", "--padding", "full"], "or 'same' or 'valid'; got 'full'"),
    (["--shape", "1,4,8,8,6,3,3", "--padding", "-1"], "pair H,W of integers >= 0 or 'same' or 'valid'; got '-1'"),
    (["--shape", "1,4,8,8,6,3,3", "--stride", "0,1"],
     "argument --stride: --stride takes an integer V or a pair H,W of integers >= 1; got '0,1'"),
    (["--shape", "1,4,8,8,6,3,3", "--dilation", "same"], "argument --dilation: --dilation takes an integer V"),
    (["--shape", "1,4,8,8,6,3,3", "--groups", "2,2"], "argument --groups: --groups takes an integer >= 1, got '2,2'"),
    (["--shape", "1,4,8,8,6,3,3", "--padding-mode", "wrap"], "argument --padding-mode: invalid choice: 'wrap'"),
    (["--shape", "1,4,8,8,6,3,3", "--groups", "3"], "--groups 3 must divide C=4 and K=6 of --shape"),
    (["--padding", "1", "--stride", "2"], "--stride, --padding: for your layer only, with --shape N,C,H,W,K,R,S"),
    (["--padding-mode", "reflect"], "--padding-mode: for your layer only"),
    (["--shape", "1,4,8,8,6,3,3", "--layers", "conv3x3_7"], "drop --layers or --shape"),
    (["--shape", "2,4,8,8,6,3,3", "--batch", "4"], "--shape gives N (2): drop --batch 4"),
])
def test_cli_rejects_bad_options_naming_them(argv, message, capsys):
    """argparse errors (exit status 2, before any work) that name the option, the value and what it takes."""
    with pytest.raises(SystemExit) as info:
        main(["compare", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: gemmconv compare" in err and message in err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "gemmconv", "compare", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "--plot" in proc.stdout


@pytest.mark.parametrize(("pass_", "refused"), [
    ("grad_input", {"1x1": "needs a 1x1 kernel"}),
    ("grad_weight", {"1x1": "needs a 1x1 kernel"}),
    ("transpose", {"1x1": "needs a 1x1 kernel"}),
])
def test_compare_a_backward_pass(pass_, refused):
    """Each strategy's pass is timed against the same pass in float64; those without it are refused, saying why."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    records = gemmconv.compare(x, w, b, pass_=pass_, padding=1, repeat=2, warmup_s=0)
    assert [r.strategy for r in records] == gemmconv.list_strategies()
    assert {r.strategy: r.reason for r in records if r.status == "refused"}.keys() == refused.keys()
    for r in records:
        assert r.pass_ == pass_
        if r.status == "refused":
            assert refused[r.strategy] in r.reason
            continue
        assert r.median_s > 0 and r.rel_error < (1e-4 if r.strategy.startswith("winograd") else 1e-5)
    auto = next(r for r in records if r.strategy == "auto")
    assert auto.chosen in gemmconv.list_strategies() and auto.chosen != "auto"


def test_cli_compares_a_pass(capsys):
    assert main(["compare", "--pass", "grad_weight", "--layers", "dw3x3_56", "--repeat", "2", "--warmup-s", "0",
                 "--strategies", "direct", "im2col", "auto"]) == 0
    out = capsys.readouterr().out
    assert "gemmconv compare, grad_weight pass" in out and "dw3x3_56" in out
    with pytest.raises(ValueError, match="pass_ must be one of"):
        gemmconv.compare(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), pass_="backward")


# --- the CLI's layer options give conv2d's own arguments -------------------------------------------------------

@pytest.mark.parametrize(("argv", "kwargs"), [
    ([], {}),
    (["--padding", "1"], dict(padding=1)),
    (["--padding", "1,2"], dict(padding=(1, 2))),
    (["--padding", "same"], dict(padding="same")),
    (["--padding", "valid"], dict(padding="valid")),
    (["--padding", "same", "--dilation", "2,1"], dict(padding="same", dilation=(2, 1))),
    (["--stride", "2"], dict(stride=2)),
    (["--stride", "2,1", "--padding", "0,1"], dict(stride=(2, 1), padding=(0, 1))),
    (["--dilation", "2"], dict(dilation=2)),
    (["--groups", "2", "--stride", "1,2"], dict(groups=2, stride=(1, 2))),
    (["--padding", "2", "--padding-mode", "reflect"], dict(padding=2, padding_mode="reflect")),
    (["--padding", "1,2", "--padding-mode", "replicate"], dict(padding=(1, 2), padding_mode="replicate")),
    (["--padding", "same", "--padding-mode", "circular"], dict(padding="same", padding_mode="circular")),
    (["--padding", "1", "--padding-mode", "zeros"], dict(padding=1, padding_mode="zeros")),
])
def test_cli_layer_options_are_conv2d_arguments(argv, kwargs):
    """Each form of --padding, --stride, --dilation, --groups and --padding-mode gives the layer that conv2d computes
    with the same arguments in Python (torch's float64 result), and the layer's flop count is that layer's."""
    args = build_parser().parse_args(["compare", "--shape", "2,4,9,10,6,3,3", *argv])
    assert layer_option_error(args) == ""
    layer, n = shape_layer(args)
    assert n == 2 and (layer.c, layer.h, layer.w, layer.k, layer.kh, layer.kw) == (4, 9, 10, 6, 3, 3)
    x, w, b = layer.arrays(n, "float64")
    y = gemmconv.conv2d(x, w, b, strategy="direct", **layer.conv_args)
    np.testing.assert_allclose(y, torch_conv(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    assert layer.flops(n) == 2 * y.size * w.shape[1] * 3 * 3


def test_cli_runs_a_layer_with_every_option(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["compare", "--shape", "1,4,9,9,4,3,3", "--padding", "same", "--dilation", "2,1", "--groups", "2",
                 "--padding-mode", "reflect", "--strategies", "direct", "--repeat", "1", "--warmup-s", "0",
                 "--json", str(out)]) == 0
    (rec,) = json.loads(out.read_text())["records"]
    assert rec["conv_args"] == {"stride": 1, "padding": "same", "dilation": [2, 1], "groups": 2,
                                "padding_mode": "reflect", "workspace_limit": None}
    assert rec["status"] == "ok"


# --- the table and the help ----------------------------------------------------------------------------------

def test_every_column_has_a_header(records):
    from rich.console import Console

    from gemmconv.tools.cli import _table

    table = _table(records, "t", warmup_s=1.0)
    headers = [str(c.header) for c in table.columns]
    assert all(h.strip() for h in headers) and headers[-1] == "note"
    assert len(headers) == len(set(headers)) == 9
    for col in table.columns:  # every row fills every column
        assert len(list(col.cells)) == len(records)
    console = Console(width=200, file=io.StringIO())
    console.print(table)
    text = console.file.getvalue()
    assert "IQR/median" in text and "refused: needs a 1x1 kernel" in text and "note" in text


def test_help_shows_every_default(capsys):
    """Every option of ``gemmconv compare --help`` says its default, and the layer options say they need --shape."""
    compare = build_parser()._subparsers._group_actions[0].choices["compare"]
    options = [a for a in compare._actions if a.option_strings and a.dest not in ("help",)]
    assert {a.dest for a in options} >= {"backend", "dtype", "batch", "padding", "padding_mode", "warmup_s", "retries"}
    for action in options:
        assert action.help and "(default: " in action.help, action.option_strings
        if action.default is not None:
            assert f"(default: {action.default})" in action.help, action.option_strings
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(with --shape only; the built-in layers have their own)" in text
    for default in ("numpy", "float32", "1", "0", "zeros", "forward", "10", "1.0", "2", "all"):
        assert f"(default: {default})" in text


# --- warm-up and disturbed measurements, on scripted timings -------------------------------------------------

@dataclass
class Script:
    """A timer and a clock driven by a list of call times: each timed call takes the next one."""

    times: list[float]
    now: float = 0.0
    calls: int = 0

    def timer(self, n: int) -> list[float]:
        if n > len(self.times):
            raise AssertionError(f"asked for {n} more calls, the script has {len(self.times)}")
        out, self.times = self.times[:n], self.times[n:]
        self.now += sum(out)
        self.calls += n
        return out

    def clock(self) -> float:
        return self.now


def _settled(script: Script, **settings) -> tuple[int, Measurement]:
    count = []
    y, m = measure_settled(lambda: count.append(1) or "y", None, Settings(**settings), script.timer, script.clock)
    assert y == "y"
    return len(count), m


def test_warm_up_runs_until_the_calls_stop_getting_faster():
    """A first call of 256 ms and a second of 240 (compilation, caches) are not timed: warm-up goes on until a
    round of calls is no faster than the one before, then the timed calls see the steady state."""
    slow = [0.240, 0.00075, 0.00076] + [0.00075] * 3  # round medians: 0.76 ms, then 0.75 ms (settled)
    script = Script([*slow, 0.00074, 0.00075, 0.00076, 0.00075, 0.00075])
    untimed, m = _settled(script, repeat=5, warmup=1, warmup_s=1.0, retries=0)
    assert untimed == 1 and m.warmup_calls == 1 + 6 and m.warmup_settled
    assert m.times == [0.00074, 0.00075, 0.00076, 0.00075, 0.00075] and script.times == []
    assert m.median == 0.00075 and not m.disturbed and m.attempts == 1


def test_warm_up_goes_on_while_calls_get_faster():
    script = Script([0.1] * 3 + [0.05] * 3 + [0.02] * 3 + [0.019] * 3 + [0.02] * 4)
    _, m = _settled(script, repeat=4, warmup=1, warmup_s=10.0, retries=0)
    assert m.warmup_calls == 1 + 12 and m.warmup_settled and m.times == [0.02] * 4


def test_warm_up_stops_on_its_budget():
    """Calls that keep getting faster: warm-up stops once ``warmup_s`` is spent (the clock is the script's),
    and says it did not settle."""
    script = Script([0.2 / 2**i for i in range(30)])
    _, m = _settled(script, repeat=3, warmup=1, warmup_s=0.35, retries=0)
    # rounds of 3 calls: 0.2+0.1+0.05 = 0.35 s spent after the first round, so one round only
    assert m.warmup_calls == 1 + 3 and not m.warmup_settled
    assert m.times == pytest.approx([0.2 / 2**3, 0.2 / 2**4, 0.2 / 2**5])


def test_no_warm_up_rounds_with_a_zero_budget():
    script = Script([0.3, 0.1, 0.1])
    untimed, m = _settled(script, repeat=3, warmup=2, warmup_s=0, retries=0)
    assert untimed == 2 and m.warmup_calls == 2 and not m.warmup_settled and m.times == [0.3, 0.1, 0.1]


def test_a_single_stall_does_not_disturb_the_measurement():
    """One call of 250 ms among calls of 1 ms: the median and the interquartile range ignore it (the old
    max-min spread did not)."""
    times = [0.001] * 4 + [0.25] + [0.001] * 5
    script = Script([0.001] * 6 + times)
    _, m = _settled(script, repeat=10, warmup=1, warmup_s=1.0, retries=2)
    assert m.median == 0.001 and m.iqr == 0 and not m.disturbed and m.attempts == 1
    assert m.spread > 100


def test_a_disturbed_measurement_is_timed_again():
    """Quartiles far apart (a busy machine for half the calls): timed again, and the undisturbed attempt kept."""
    busy = [0.001, 0.001, 0.003, 0.003, 0.001]  # q1 1 ms, q3 3 ms: IQR 200% of the median
    calm = [0.001, 0.0011, 0.001, 0.001, 0.001]
    script = Script([0.001] * 6 + busy + calm)
    _, m = _settled(script, repeat=5, warmup=1, warmup_s=1.0, retries=2)
    assert m.attempts == 2 and m.times == calm and not m.disturbed and script.times == []


def test_a_measurement_that_stays_disturbed_says_so():
    """Every attempt disturbed: ``retries`` more attempts, the least disturbed one kept, marked disturbed."""
    worse = [0.001, 0.001, 0.004, 0.004, 0.001]
    bad = [0.001, 0.001, 0.002, 0.002, 0.001]  # IQR 100%: the least disturbed
    script = Script([0.001] * 6 + worse + bad + worse)
    _, m = _settled(script, repeat=5, warmup=1, warmup_s=1.0, retries=2)
    assert m.attempts == 3 and m.times == bad and m.disturbed and m.rel_iqr == pytest.approx(1.0)
    script = Script([0.001] * 6 + worse)
    _, m = _settled(script, repeat=5, warmup=1, warmup_s=1.0, retries=0)
    assert m.attempts == 1 and m.disturbed


def test_disturbed_threshold():
    """Quartiles 1 and 1 + DISTURBED around a median of 1: at the threshold, not beyond it."""
    assert not Measurement([1.0, 1.0, 1.0 + DISTURBED, 1.0 + DISTURBED, 1.0]).disturbed
    assert Measurement([1.0, 1.0, 1.0 + 1.1 * DISTURBED, 1.0 + 1.1 * DISTURBED, 1.0]).disturbed


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(repeat=0), "repeat must be an int >= 1, got 0"),
    (dict(warmup=-1), "warmup must be an int >= 0, got -1"),
    (dict(retries=1.5), "retries must be an int >= 0, got 1.5"),
    (dict(warmup_s=-1), "warmup_s must be a number of seconds >= 0, got -1"),
    (dict(warmup_s=float("nan")), "warmup_s must be a number of seconds >= 0, got nan"),
])
def test_compare_rejects_bad_measuring_settings(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gemmconv.compare(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), **kwargs)


def test_compare_marks_a_disturbed_strategy(monkeypatch, capsys):
    """Through the backend's profiler: a strategy whose calls stay disturbed is marked so in its record, in the
    table's note column and below the table."""
    from gemmconv.backends import get_backend

    def time_calls(fn, n):  # half the calls four times slower, every time
        for _ in range(n):
            fn()
        return [0.001, 0.004] * (n // 2) + [0.001] * (n % 2)

    monkeypatch.setattr(get_backend(np.zeros(1)).profiler, "time_calls", time_calls)
    assert main(["compare", "--shape", "1,2,6,6,2,1,1", "--strategies", "1x1", "--repeat", "4",
                 "--warmup-s", "0", "--retries", "1"]) == 0
    out = capsys.readouterr().out
    assert "disturbed: IQR above 25% in 2 timings" in out and "disturbed (busy machine?)" in out


def test_plot_names_the_layers_and_the_pass_and_labels_log_axes_plainly(records):
    """The figure's title names the layer, the pass, dtype and batch; the log axes' labels are plain numbers
    (0.5, 1, 2, 5, 10, 20: no 2x10^1)."""
    from gemmconv.tools.plot import figure

    ok = [r for r in records if r.status == "ok"]
    times = np.geomspace(4e-4, 3e-2, len(ok))  # 0.4 to 30 ms: labels 0.5, 1, 2, 5, 10, 20
    grad = [dataclasses.replace(r, layer="mine", pass_="grad_input", median_s=t, q1_s=0.9 * t, q3_s=1.1 * t,
                                gflops=r.flops / t / 1e9) for r, t in zip(ok, times, strict=True)]
    fig = figure(grad, {"gemm_gflops": 50.0, "bandwidth_gbs": 10.0})
    assert fig._suptitle.get_text() == "gemmconv compare, grad_input pass: mine (numpy, float32, N=2)"
    fig.canvas.draw()
    bars, roof = fig.axes
    for axis in (bars.yaxis, roof.xaxis, roof.yaxis):
        labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
        assert len(labels) >= 2, labels
        for text in labels:
            assert re.fullmatch(r"\d+(\.\d+)?", text), labels
            assert float(text) / 10 ** np.floor(np.log10(float(text))) in (1, 2, 5), labels
