import pytest
import torch

from grail.figures import jaccard_by_layer, jaccard_matrix, plot_jaccard, top_sets


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
