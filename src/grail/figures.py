"""Figures: the Jaccard overlap of the datasets' top-k parameter sets (paper Fig. 3), a forget-vs-retain
scatter of methods and their forgetting-vs-utility-cost Pareto front. Overlaps are computed with torch on the bool
masks; matplotlib only draws."""

from __future__ import annotations

import math
import re
from io import BytesIO
from pathlib import Path

import torch

from grail import io
from grail.compare import BUDGET, ppl_ratio
from grail.model_names import ModelName
from grail.stages.localize import top_k_mask

LAYER = re.compile(r"layers\.(\d+)\.")


Masks = dict[str, dict[str, torch.Tensor]]
"""{dataset: {parameter name: bool tensor}}."""


def _save(fig, path: Path) -> None:
    """Write a figure as PNG, atomically (process 0 only, under several processes)."""
    import matplotlib.pyplot as plt

    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    io.write_bytes(path, buffer.getvalue())


def top_sets(importance: Masks, percent: float = 10.0) -> Masks:
    """Per dataset, per tensor, the top ``percent`` % entries (the T_k of Eq. 4)."""
    return {dataset: {p: top_k_mask(s, percent) for p, s in by_param.items()}
            for dataset, by_param in importance.items()}


def jaccard_matrix(sets: dict[str, dict[str, torch.Tensor]], params: list[str] | None = None) -> torch.Tensor:
    """|A ∩ B| / |A ∪ B| between every two datasets' sets, over the given tensors (default: all)."""
    names = list(sets)
    params = params if params is not None else list(sets[names[0]])
    flat = torch.stack([torch.cat([sets[n][p].flatten() for p in params]) for n in names]).float()
    inter = flat @ flat.T
    sizes = flat.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


def jaccard_by_layer(sets: dict[str, dict[str, torch.Tensor]]) -> dict[int, torch.Tensor]:
    """The Jaccard matrix of each transformer layer's tensors (layer index from the parameter name)."""
    layers: dict[int, list[str]] = {}
    for p in next(iter(sets.values())):
        match = LAYER.search(p)
        if match:
            layers.setdefault(int(match.group(1)), []).append(p)
    return {layer: jaccard_matrix(sets, params) for layer, params in sorted(layers.items())}


def plot_jaccard(sets: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sets)
    whole = jaccard_matrix(sets)
    by_layer = jaccard_by_layer(sets)
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    fig, (left, right) = plt.subplots(2, 1, figsize=(10, 10), gridspec_kw={"height_ratios": [1.2, 1], "hspace": 0.45})
    image = left.imshow(whole.numpy(), vmin=0, vmax=1, cmap="viridis")
    left.set_xticks(range(len(names)), names, rotation=45, ha="right")
    left.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            left.text(j, i, f"{whole[i, j]:.2f}", ha="center", va="center", color="w" if whole[i, j] < 0.6 else "k")
    left.set_title("whole model")
    if by_layer:
        grid = torch.stack([torch.stack([m[i, j] for i, j in pairs]) for m in by_layer.values()]).T
        right.imshow(grid.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        right.set_yticks(range(len(pairs)), [f"{names[i]} ∩ {names[j]}" for i, j in pairs])
        right.set_xticks(range(len(by_layer)), list(by_layer))
        right.set_xlabel("layer")
        right.set_title("per layer")
    fig.colorbar(image, ax=[left, right], label="Jaccard similarity of top-k sets")
    _save(fig, path)


def plot_scatter(scores: dict[str, dict], path: Path) -> None:
    """Average Unlearning Success vs average Retention Success, one point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name, s in scores.items():
        if "average" not in s:  # an older run's base: general scores only
            continue
        us, rs = s["average"]["US"], s["average"]["RS"]
        ax.scatter(us, rs, s=40, color="tab:red" if name.startswith("grail") else "tab:blue")
        ax.annotate(name, (us, rs), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("Unlearning Success, avg. over domains (%)")
    ax.set_ylabel("Retention Success, avg. over domains (%)")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_sweep(scores: dict[str, dict], path: Path) -> None:
    """US and RS bars per domain for each swept setting (paper Fig. 4), with their average as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    domains = list(next(iter(scores.values()))["domains"])
    fig, axes = plt.subplots(1, len(domains), figsize=(6 * len(domains), 4), squeeze=False)
    for ax, domain in zip(axes[0], domains):
        us = [scores[n]["domains"][domain]["US"] for n in names]
        rs = [scores[n]["domains"][domain]["RS"] for n in names]
        x = torch.arange(len(names)).float()
        ax.bar((x - 0.2).tolist(), us, width=0.4, color="tab:orange", label="Unlearning Success")
        ax.bar((x + 0.2).tolist(), rs, width=0.4, color="tab:green", label="Retention Success")
        ax.plot(x.tolist(), [(u + r) / 2 for u, r in zip(us, rs)], color="k", marker="o", label="avg.")
        ax.set_xticks(x.tolist(), [n.replace("grail-", "") for n in names], rotation=30)
        ax.set_ylim(0, 105)
        ax.set_title(domain)
    axes[0][0].legend(loc="lower left", fontsize=8)
    _save(fig, path)


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """The names of the (cost, gain) points no other point beats on both (cost ≤ and gain ≥, one strictly), by
    rising cost: the most forgetting to be had for each PPL ratio."""
    front: list[str] = []
    for name in sorted(points, key=lambda n: (points[n][0], -points[n][1])):
        if not front or points[name][1] > points[front[-1]][1]:
            front.append(name)
    return front


def plot_pareto(scores: dict[str, dict], path: Path, budget: float = BUDGET) -> None:
    """Avg. Unlearning Success against general-text PPL ratio to vanilla (log x), colour = avg. Retention Success,
    with the Pareto front and the budget line: forgetting is only worth what it costs the model's general ability.
    Collapsed models (non-finite PPL) sit at the right edge; models without a general-text PPL are left out, and
    nothing is written when vanilla has none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    vanilla = scores.get(ModelName.VANILLA, {})
    every = {n: ppl_ratio(s, vanilla) for n, s in scores.items() if "average" in s}
    ratios = {n: r for n, r in every.items() if r is not None}
    if not ratios:
        return
    finite = {n: r for n, r in ratios.items() if math.isfinite(r)}
    edge = max([*finite.values(), budget, 1.0]) * 2  # where collapsed models are drawn
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, ratio in ratios.items():
        collapsed = name not in finite
        x, average = (edge if collapsed else ratio), scores[name]["average"]
        points = ax.scatter(x, average["US"], c=[average["RS"]], cmap="viridis", vmin=0, vmax=100, zorder=3,
                            s=90 if name == ModelName.VANILLA else 45,
                            marker="*" if name == ModelName.VANILLA else "X" if collapsed else "o", edgecolors="k",
                            linewidths=0.6)
        ax.annotate(f"{name} (collapsed)" if collapsed else name, (x, average["US"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points", ha="right" if collapsed else "left")
    front = pareto_front({n: (r, scores[n]["average"]["US"]) for n, r in finite.items()})
    if front:
        xs, ys = [finite[n] for n in front], [scores[n]["average"]["US"] for n in front]
        ax.step(xs, ys, where="post", color="tab:red", alpha=0.6, label="Pareto front")
    ax.axvline(budget, color="k", linestyle="--", linewidth=1, label=f"budget ({budget:g}× vanilla PPL)")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain if edge < 20 else FuncFormatter(lambda v, _: ""))
    ax.set_xlim(min([*finite.values(), 1.0]) / 1.2, edge * 1.2)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("general-text perplexity / vanilla's (log)")
    ax.set_ylabel("Unlearning Success, avg. over domains (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(points, ax=ax, label="Retention Success, avg. over domains (%)")
    unplotted = [n for n, r in every.items() if r is None]
    if unplotted:
        ax.set_title("not plotted (no general-text PPL): " + ", ".join(unplotted), fontsize=8, loc="left")
    _save(fig, path)


def plot_relearning(relearn: dict[str, dict], path: Path) -> None:
    """Leak rate (top) and answer-token accuracy (bottom) on the measured half V against the attacker's
    fine-tuning steps on the other half T, one column per domain, one line per model (the oracle dashed: where
    exact unlearning stays)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(relearn), figsize=(5 * len(relearn), 7), squeeze=False, sharex=True)
    for column, (domain, models) in enumerate(relearn.items()):
        for name, row in models.items():
            steps = [int(k) for k in row["curve"]]
            style = {"linestyle": "--", "color": "k"} if name == ModelName.ORACLE else {}
            axes[0][column].plot(steps, [v["leak_rate"] for v in row["curve"].values()], marker="o", label=name,
                                 **style)
            axes[1][column].plot(steps, [100 - v["US"] for v in row["curve"].values()], marker="o", **style)
        axes[0][column].set_title(domain)
        axes[0][column].set_ylabel("leak rate on V (%)")
        axes[1][column].set_ylabel("answer-token accuracy on V (%)")
        axes[1][column].set_xlabel("relearning steps on T")
        for ax in axes[:, column]:
            ax.set_ylim(-5, 105)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
