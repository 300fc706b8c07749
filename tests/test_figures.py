"""The overlap, scatter, Pareto, sweep and relearning figures: their numbers against hand computations, and what
each figure draws (read from the matplotlib figure as it is saved) against the scores it was given."""

import math

import pytest
import torch

from grail import figures
from grail.figures import (
    jaccard_by_layer,
    jaccard_matrix,
    pareto_front,
    plot_jaccard,
    plot_pareto,
    plot_relearning,
    plot_scatter,
    plot_sweep,
    top_sets,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    """The figures as they are saved (each still written to its file as PNG)."""
    saved = []
    save = figures._save

    def keep(fig, path):
        saved.append(fig)
        save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    return saved


def _labels(ticks) -> list[str]:
    return [t.get_text() for t in ticks]


def _direct_jaccard(a: dict, b: dict) -> float:
    """The same quantity with Python sets of (tensor, flat index): the slow, obvious way."""
    sa = {(p, i) for p, m in a.items() for i in torch.nonzero(m.flatten()).flatten().tolist()}
    sb = {(p, i) for p, m in b.items() for i in torch.nonzero(m.flatten()).flatten().tolist()}
    return len(sa & sb) / len(sa | sb)


def test_jaccard_matrix_is_symmetric_with_unit_diagonal_and_matches_sets(tmp_path, drawn):
    g = torch.Generator().manual_seed(0)
    params = ["model.layers.0.q.lora_A.weight", "model.layers.0.q.lora_B.weight", "model.layers.1.v.lora_A.weight"]
    importance = {d: {p: torch.rand(6, 7, generator=g) for p in params}
                  for d in ("privacy/forget", "privacy/retain", "copyright/forget", "copyright/retain")}
    sets = top_sets(importance, 10.0)
    matrix = jaccard_matrix(sets)
    assert torch.allclose(matrix, matrix.T) and torch.allclose(matrix.diagonal(), torch.ones(4))
    names = list(sets)
    for i in range(4):
        for j in range(4):
            assert matrix[i, j].item() == pytest.approx(_direct_jaccard(sets[names[i]], sets[names[j]]))
    by_layer = jaccard_by_layer(sets)
    assert list(by_layer) == [0, 1]
    assert by_layer[1][0, 1].item() == pytest.approx(
        _direct_jaccard({params[2]: sets[names[0]][params[2]]}, {params[2]: sets[names[1]][params[2]]}))
    plot_jaccard(sets, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == PNG
    (fig,) = drawn
    whole, per_layer, colorbar = fig.axes
    # the whole-model matrix, its datasets on both axes, each cell written with two decimals
    torch.testing.assert_close(torch.tensor(whole.images[0].get_array()), matrix)
    assert _labels(whole.get_xticklabels()) == names and _labels(whole.get_yticklabels()) == names
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in whole.texts}
    assert cells == {(i, j): f"{matrix[i, j]:.2f}" for i in range(4) for j in range(4)}
    # per layer: one row per pair of datasets, one column per layer
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    torch.testing.assert_close(torch.tensor(per_layer.images[0].get_array()),
                               torch.tensor([[by_layer[layer][i, j].item() for layer in (0, 1)] for i, j in pairs]))
    assert _labels(per_layer.get_yticklabels()) == [f"{names[i]} ∩ {names[j]}" for i, j in pairs]
    assert _labels(per_layer.get_xticklabels()) == ["0", "1"] and per_layer.get_xlabel() == "layer"
    assert colorbar.get_ylabel() == "Jaccard similarity of top-k sets"


def _scored(us, rs, ppl):
    return {"domains": {}, "average": {"US": us, "RS": rs, "HS": 0.0},
            "general": None if ppl is None else {"general_text_ppl": ppl, "probe_accuracy": 50.0}}


def test_pareto_front_keeps_the_most_forgetting_for_each_cost():
    points = {"vanilla": (1.0, 10.0), "a": (1.1, 90.0), "b": (1.25, 85.0), "c": (1.3, 99.0), "d": (1.1, 60.0)}
    assert pareto_front(points) == ["vanilla", "a", "c"]


SCORES = {"base": {"general": {"general_text_ppl": 8.0, "probe_accuracy": 60.0}},
          "vanilla": _scored(10.0, 95.0, 10.0), "grail": _scored(90.0, 85.0, 11.0),
          "ga": _scored(100.0, 0.0, "inf"), "npo": _scored(80.0, 80.0, None), "wide": _scored(99.0, 90.0, 13.0)}


def _points(ax) -> dict[str, tuple]:
    """{annotation: (x, y, colour value, size)} of a scatter drawn one point per model, each annotated."""
    points = [c for c in ax.collections if len(c.get_offsets()) == 1]
    assert len(points) == len(ax.texts)
    return {text.get_text(): (*map(float, c.get_offsets()[0]), None if c.get_array() is None else
                              float(c.get_array()[0]), float(c.get_sizes()[0]))
            for c, text in zip(points, ax.texts)}


def test_plot_pareto_draws_collapsed_and_unscored_models(tmp_path, drawn):
    plot_pareto(SCORES, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes()[:8] == PNG
    (fig,) = drawn
    ax = fig.axes[0]
    # x: general-text PPL over vanilla's; y: US; colour: RS. Collapsed (inf PPL) at the right edge, 2x the largest
    # of the finite ratios, the budget and 1; base (no domain scores) and npo (no general PPL) are not points.
    edge = 2 * max(1.3, 1.25, 1.0)
    expected = {"vanilla": (1.0, 10.0, 95.0, 90.0), "grail": (1.1, 90.0, 85.0, 45.0),
                "ga (collapsed)": (edge, 100.0, 0.0, 45.0), "wide": (1.3, 99.0, 90.0, 45.0)}
    points = _points(ax)
    assert points.keys() == expected.keys()
    assert all(points[name] == pytest.approx(expected[name]) for name in expected), points
    assert ax.get_xscale() == "log" and ax.get_xlim()[1] == pytest.approx(edge * 1.2)
    lines = {line.get_label(): line for line in ax.get_lines()}
    front = lines["Pareto front"]  # vanilla, grail, wide: each forgets more at a higher cost; ga is off the scale
    assert front.get_xdata().tolist() == pytest.approx([1.0, 1.1, 1.3]) and front.get_ydata().tolist() == [10, 90, 99]
    assert front.get_drawstyle() == "steps-post"
    assert list(lines["budget (1.25× vanilla PPL)"].get_xdata()) == [1.25, 1.25]
    assert ax.get_title(loc="left") == "not plotted (no general-text PPL): npo"
    assert fig.axes[1].get_ylabel() == "Retention Success, avg. over domains (%)"  # the colour bar


def test_plot_pareto_draws_the_budget_it_is_given_and_nothing_without_a_reference(tmp_path, drawn):
    plot_pareto(SCORES, tmp_path / "pareto.png", budget=3.0)
    ax = drawn[0].axes[0]
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_label().startswith("budget")] == [3.0]
    assert _points(ax)["ga (collapsed)"][0] == pytest.approx(2 * 3.0)  # the edge moves past the budget
    plot_pareto({n: s for n, s in SCORES.items() if n != "vanilla"}, tmp_path / "none.png")  # no reference
    assert not (tmp_path / "none.png").exists() and len(drawn) == 1


def test_plot_scatter_puts_each_model_at_its_average_us_and_rs(tmp_path, drawn):
    from matplotlib.colors import to_rgba

    plot_scatter(SCORES, tmp_path / "scatter.png")  # base, without domain scores, is left out
    assert (tmp_path / "scatter.png").read_bytes()[:8] == PNG
    ax = drawn[0].axes[0]
    points = _points(ax)
    assert {name: xy[:2] for name, xy in points.items()} == {
        "vanilla": (10.0, 95.0), "grail": (90.0, 85.0), "ga": (100.0, 0.0), "npo": (80.0, 80.0), "wide": (99.0, 90.0)}
    colours = {t.get_text(): tuple(c.get_facecolor()[0]) for c, t in zip(ax.collections, ax.texts)}
    assert colours["grail"] == to_rgba("tab:red") and colours["npo"] == to_rgba("tab:blue")
    assert ax.get_xlabel().startswith("Unlearning Success") and ax.get_ylabel().startswith("Retention Success")


def test_plot_sweep_draws_us_and_rs_bars_and_their_average_per_domain(tmp_path, drawn):
    def scored(privacy, copyright_):
        return {"domains": {"privacy": {"US": privacy[0], "RS": privacy[1]},
                            "copyright": {"US": copyright_[0], "RS": copyright_[1]}}}

    sweep = {"grail-kur-5": scored((60.0, 90.0), (40.0, 80.0)), "grail-kur-20": scored((80.0, 70.0), (70.0, 50.0)),
             "grail-krr-30": scored((95.0, 55.0), (90.0, 30.0))}
    plot_sweep(sweep, tmp_path / "fig4.png")
    assert (tmp_path / "fig4.png").read_bytes()[:8] == PNG
    axes = drawn[0].axes
    assert [ax.get_title() for ax in axes] == ["privacy", "copyright"]
    for ax, domain in zip(axes, ("privacy", "copyright")):
        us, rs = ([s["domains"][domain][k] for s in sweep.values()] for k in ("US", "RS"))
        bars = {container.get_label(): [bar.get_height() for bar in container] for container in ax.containers}
        assert bars == {"Unlearning Success": us, "Retention Success": rs}
        (average,) = ax.get_lines()
        assert average.get_ydata().tolist() == [(u + r) / 2 for u, r in zip(us, rs)]
        assert _labels(ax.get_xticklabels()) == ["kur-5", "kur-20", "krr-30"]


def test_plot_relearning_draws_each_models_curve_per_domain(tmp_path, drawn):
    def curve(*points):
        return {"curve": {str(step): {"leak_rate": leak, "US": us} for step, leak, us in points}}

    relearn = {"privacy": {"oracle": curve((0, 0.0, 100.0), (5, 10.0, 90.0)),
                           "grail": curve((0, 5.0, 95.0), (5, 40.0, 60.0))},
               "copyright": {"oracle": curve((0, 0.0, 98.0), (5, 0.0, 97.0)),
                             "grail": curve((0, 20.0, 70.0), (5, 30.0, 65.0))}}
    plot_relearning(relearn, tmp_path / "relearning.png")
    assert (tmp_path / "relearning.png").read_bytes()[:8] == PNG
    axes = drawn[0].axes
    assert len(axes) == 4 and [axes[0].get_title(), axes[1].get_title()] == ["privacy", "copyright"]
    for column, models in enumerate(relearn.values()):
        leak, accuracy = axes[column], axes[2 + column]  # top row, bottom row
        for row, values in ((leak, lambda p: p["leak_rate"]), (accuracy, lambda p: 100 - p["US"])):
            lines = row.get_lines()
            assert len(lines) == len(models)
            for line, (name, model) in zip(lines, models.items()):
                assert list(line.get_xdata()) == [0, 5]
                assert list(line.get_ydata()) == [values(p) for p in model["curve"].values()]
                assert (line.get_linestyle() == "--") == (name == "oracle")  # where exact unlearning stays
    assert _labels(axes[0].get_legend().get_texts()) == ["oracle", "grail"]
    assert math.isclose(axes[2].get_ylim()[1], 105)
