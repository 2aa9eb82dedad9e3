"""Report tables and plots: one mean ± std format, padded markdown, tick labels that
do not collide, point labels inside the axes, integer ticks, a title on every plot."""

import numpy as np
import pytest
from matplotlib.text import Text

from jaxcomp.sweep.plots import (
    _pyplot,
    draw_pareto,
    draw_vs_value,
    format_axis,
    merged_labels,
    place_labels,
    write_plots,
)
from jaxcomp.sweep.report import to_markdown
from jaxcomp.sweep.tables import fmt_num, fmt_stat, markdown_table, tick_label


@pytest.mark.parametrize("mean,std,n,want", [
    (50604.33, 2.9, 3, "50604.3 ± 2.9"),          # was "5.06e+04 ± 2.9"
    (17190.0, 103.0, 3, "17190 ± 100"),           # was "1.719e+04 ± 1e+02"
    (0.97033, 0.00431, 3, "0.9703 ± 0.0043"),
    (0.1086, 0.0100, 3, "0.109 ± 0.010"),
    (101210.0, 0.0, 3, "101210 ± 0"),
    (0.5, 0.0, 2, "0.5000 ± 0"),
    (0.96657, 0.0, 1, "0.9666"),
    (108416.0, 0.0, 1, "108416"),
    (0.9, 1e-12, 2, "0.900000 ± 0.000000"),      # a float-noise std: at most 6 figures
    (2.5e-06, 1e-07, 2, "2.500e-06 ± 1.0e-07"),
    (float("nan"), 0.0, 0, "—"),
])
def test_fmt_stat(mean, std, n, want):
    assert fmt_stat({"mean": mean, "std": std, "n": n}) == want


def test_fmt_num():
    assert [fmt_num(v) for v in (34690.0, 0.123456, 12.3456, 3e9 + 0.5)] == \
        ["34690", "0.1235", "12.35", "3.000e+09"]


def _stat(m, s, n=3):
    return {"mean": m, "std": s, "n": n}


def test_markdown_table_is_padded_and_aligned():
    table = [{"k": 0.5, "n": 3, "diverged": 0, "encoding": "int4 codes + bitmask",
              "acc": _stat(0.961, 0.0145), "stored_bytes": _stat(22133.7, 3.5)},
             {"k": 0.95, "n": 3, "diverged": 1, "encoding": "int8 codes",
              "acc": _stat(0.6072, 0.0464), "stored_bytes": _stat(53480.0, 0.0)}]
    md = to_markdown(table, ["k"], ["acc", "stored_bytes"], [True, False], ["encoding"])
    lines = md.splitlines()
    assert len({len(line) for line in lines}) == 1
    bars = {tuple(i for i, ch in enumerate(line) if ch == "|") for line in lines}
    assert len(bars) == 1  # every column starts and ends at the same place on every line
    assert lines[0] == ("| k    |   n | encoding             |           acc |  stored_bytes |"
                        " diverged | pareto |")
    assert lines[1] == ("|------|----:|----------------------|--------------:|--------------:|"
                        "---------:|--------|")
    assert lines[3] == ("| 0.95 |   3 | int8 codes           | 0.607 ± 0.046 |     53480 ± 0 |"
                        "        1 |        |")
    assert markdown_table(["a"], [["x"]]) == "| a   |\n|-----|\n| x   |"


def test_tick_labels():
    assert [tick_label(v) for v in (0, 0.05, 7, 1000, 22134, 34690, 1.25e6, 2e9)] == \
        ["0", "0.05", "7", "1k", "22.1k", "34.7k", "1.25M", "2G"]


def _shown(lo, hi, integer=False):
    plt = _pyplot()
    fig, ax = plt.subplots()
    ax.plot([lo, hi], [0, 1])
    log = format_axis(ax.xaxis, [lo, hi], integer=integer)
    ax.set_xlim(lo, hi)
    fig.canvas.draw()
    major = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    minor = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    plt.close(fig)
    return log, major, minor


def test_axis_ticks_few_majors_no_minor_labels():
    # within a decade: linear, the case that printed "3×10⁴4×10⁴" on a log axis
    assert _shown(22134, 34690) == (False, ["24k", "27k", "30k", "33k"], [])
    assert _shown(5827, 101210) == (True, ["10k", "20k", "50k", "100k"], [])
    assert _shown(100, 2e7) == (True, ["100", "1k", "10k", "100k", "1M", "10M"], [])
    assert _shown(4, 8, integer=True)[1] == ["4", "5", "6", "7", "8"]


def _boxes_inside(fig, ax):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    inner = ax.get_window_extent(r)
    boxes = [Text.get_window_extent(t, r) for t in ax.texts]  # the text, not its leader
    for b in boxes:
        assert inner.x0 - 1 <= b.x0 and b.x1 <= inner.x1 + 1, (b, inner)
        assert inner.y0 - 1 <= b.y0 and b.y1 <= inner.y1 + 1, (b, inner)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    return boxes


def test_point_labels_stay_inside_and_apart():
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    xs, ys = [10.0, 10.5, 11.0, 99.0, 100.0], [0.9, 0.9, 0.91, 0.95, 0.95]
    ax.plot(xs, ys, "o")
    labels = [f"sparsity={v}, bits=8" for v in (0.9, 0.8, 0.7, 0.1, 0.0)]
    offsets = place_labels(ax, xs, ys, labels)
    assert [o[2] for o in offsets] == ["left", "left", "left", "right", "right"]
    assert len(_boxes_inside(fig, ax)) == 5
    plt.close(fig)


def test_merged_labels_for_points_that_coincide():
    t = [{"prune.sparsity": 0.5, "quant.bits": b} for b in (4, 8)] + \
        [{"prune.sparsity": 0.9, "quant.bits": 4}]
    assert merged_labels([5.0, 5.0, 2.0], [0.9, 0.9, 0.8], t, ["prune.sparsity", "quant.bits"]) \
        == ["sparsity=0.5, bits=4/8", "", "sparsity=0.9, bits=4"]


def _table():
    rows = []
    for sp in (0.0, 0.5, 0.9):
        for bits in (4, 8):
            rows.append({"prune.sparsity": sp, "quant.bits": bits, "n": 2, "diverged": 0,
                         "test_accuracy": _stat(0.97 - sp / 3 - 0.01 * (bits == 4), 0.01, 2),
                         "stored_bytes": _stat((1 - sp) * bits * 7000 + 3000, 0.0, 2),
                         "flops_effective": _stat((1 - sp) * 1e5 + 500, 0.0, 2),
                         "nonzeros": _stat((1 - sp) * 5e4, 0.0, 2)})
    return rows


def test_every_plot_has_a_title_labels_inside_and_integer_bits():
    plt = _pyplot()
    gb = ["prune.sparsity", "quant.bits"]
    for key in ("stored_bytes", "flops_effective", "nonzeros"):
        fig = draw_pareto(_table(), gb, "test_accuracy", key, "stored bytes (int4 codes)")
        ax = fig.axes[0]
        assert ax.get_title().startswith(f"test_accuracy vs {key}")
        _boxes_inside(fig, ax)
        plt.close(fig)
    fig = draw_vs_value(_table(), gb, "test_accuracy", "quant.bits")
    ax = fig.axes[0]
    assert ax.get_title().startswith("test_accuracy vs quant.bits")
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)
    fig = draw_vs_value(_table(), gb, "test_accuracy", "prune.sparsity")
    assert fig.axes[0].get_title().startswith("test_accuracy vs prune.sparsity")
    plt.close(fig)


def test_default_axes_skip_a_single_value(tmp_path):
    t = _table()
    for g in t:
        g["flops_effective"] = _stat(1e5, 0.0, 2)  # every run the same FLOPs: no plot
    names = sorted(p.name for p in write_plots(tmp_path, t, ["quant.bits"], "test_accuracy"))
    assert names == ["test_accuracy_vs_nonzeros.png", "test_accuracy_vs_quant.bits.png",
                     "test_accuracy_vs_stored_bytes.png"]
    names = [p.name for p in write_plots(tmp_path, t, [], "test_accuracy", ["flops_effective"])]
    assert names[0] == "test_accuracy_vs_flops_effective.png"  # asked for: plotted anyway
    assert np.all([(tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names])
