import pytest
import torch

from grail.figures import (
    jaccard_by_layer,
    jaccard_matrix,
    pareto_front,
    plot_jaccard,
    plot_pareto,
    plot_scatter,
    top_sets,
)


def _direct_jaccard(a: dict, b: dict) -> float:
    """The same quantity with Python sets of (tensor, flat index): the slow, obvious way."""
    sa = {(p, i) for p, m in a.items() for i in torch.nonzero(m.flatten()).flatten().tolist()}
    sb = {(p, i) for p, m in b.items() for i in torch.nonzero(m.flatten()).flatten().tolist()}
    return len(sa & sb) / len(sa | sb)


def test_jaccard_matrix_is_symmetric_with_unit_diagonal_and_matches_sets(tmp_path):
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
    assert (tmp_path / "fig.png").stat().st_size > 1000


def _scored(us, rs, ppl):
    return {"domains": {}, "average": {"US": us, "RS": rs, "HS": 0.0},
            "general": None if ppl is None else {"general_text_ppl": ppl, "probe_accuracy": 50.0}}


def test_pareto_front_keeps_the_most_forgetting_for_each_cost():
    points = {"vanilla": (1.0, 10.0), "a": (1.1, 90.0), "b": (1.25, 85.0), "c": (1.3, 99.0), "d": (1.1, 60.0)}
    assert pareto_front(points) == ["vanilla", "a", "c"]


def test_plot_pareto_draws_collapsed_and_unscored_models(tmp_path):
    scores = {"base": {"general": {"general_text_ppl": 8.0, "probe_accuracy": 60.0}},
              "vanilla": _scored(10.0, 95.0, 10.0), "grail": _scored(90.0, 85.0, 11.0),
              "ga": _scored(100.0, 0.0, "inf"), "npo": _scored(80.0, 80.0, None), "wide": _scored(99.0, 90.0, 13.0)}
    plot_pareto(scores, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_scatter(scores, tmp_path / "scatter.png")  # base, without domain scores, is left out
    assert (tmp_path / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_pareto({n: s for n, s in scores.items() if n != "vanilla"}, tmp_path / "none.png")  # no reference
    assert not (tmp_path / "none.png").exists()
