"""Stage 1: gradient information (paper III-C, Eq. 3).

For each dataset D_x and each example, the answer tokens are corrupted at random (``trials`` times, each an
independent corruption), the answer-token cross-entropy of the corrupted example is back-propagated, and the
importance of parameter j is the mean over examples and trials of |g_i[j]|.

Per-example gradients come from one batched backward: for a linear layer y = x W^T, example i's weight
gradient is sum_t dy_{i,t} x_{i,t}^T, so a hook that sees the layer's input x and output gradient dy computes
all of them with one batched matrix product and adds their absolute values into the dataset's accumulator.
LoRA's A and B matrices are such linear layers. The parameters themselves get no .grad: gradients flow only
to activations (from input embeddings marked as requiring grad), which is all the hooks need.

On a model sharded by FSDP2 (``grail.sharding``) every process runs every batch (the forwards and backwards of a
sharded model are joint work anyway) and keeps the sums of its own rows of each weight only: its shard of the
importance, with 1 / N of the per-example products and of the accumulators, the same numbers as one process's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from grail import distributed, sharding
from grail.batching import Encoded, answer_logits, collate, per_example_loss
from grail.config import GradientConfig
from grail.models import canonical_name, eval_mode


def corrupt_answers(items: Sequence[Encoded], trials: int, vocab_size: int,
                    generator: torch.Generator) -> list[Encoded]:
    """``trials`` corrupted copies of each example (row order: example-major).

    As in the reference code: floor(answer length / 2) answer positions, drawn with replacement, get ids
    drawn uniformly from the vocabulary; input and label are both corrupted (they are the same tokens).
    """
    rows = []
    for item in items:
        for _ in range(trials):
            answer = torch.tensor(item.answer_ids)
            count = len(answer) // 2
            positions = torch.randint(0, len(answer), (count,), generator=generator)
            answer[positions] = torch.randint(0, vocab_size, (count,), generator=generator)
            rows.append(Encoded(item.prompt_ids, tuple(answer.tolist())))
    return rows


def scored_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Linear layers whose weight trains, keyed by the weight's canonical name. Every trainable parameter must be
    such a weight: per-example gradients are computed for linear layers only."""
    layers = {canonical_name(f"{name}.weight"): m for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and m.weight.requires_grad}
    trainable = {canonical_name(n) for n, p in model.named_parameters() if p.requires_grad}
    others = sorted(trainable - set(layers))
    if others:
        raise ValueError(f"per-example gradients are computed for linear weights only; also trainable: {others[:3]}")
    return layers


class PerExampleGradientSums:
    """Hooks that add, for each scored linear layer, sum_i |g_i| (or sum_i g_i) over the rows of each backward.

    A batch's sum is taken in float32 and added into a float64 accumulator: the total then does not depend on
    the order the batches are added in (to far below float32's precision), which is what makes the scores, and
    so the masks, of a run split over several processes the same as one process's.
    """

    def __init__(self, layers: dict[str, nn.Linear], absolute: bool) -> None:
        self.layers = layers
        self.absolute = absolute
        # a sharded weight: this process's rows of it (its output features), and the sums of those only
        self.rows = {name: sharding.local_rows(m.weight) for name, m in layers.items()}
        self.sums = {name: torch.zeros_like(sharding.local(m.weight), dtype=torch.float64)
                     for name, m in layers.items()}
        self._handles: list = []

    def _hook(self, name: str):
        def forward_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0].detach()

            def backward_hook(grad_output: torch.Tensor) -> None:
                rows = grad_output.shape[0]
                g = grad_output.reshape(rows, -1, grad_output.shape[-1])[..., self.rows[name]].float()
                a = x.reshape(rows, -1, x.shape[-1]).float()
                per_example = torch.bmm(g.transpose(1, 2), a)  # [rows, out, in]
                self.sums[name] += (per_example.abs() if self.absolute else per_example).sum(0).double()

            if output.requires_grad:
                output.register_hook(backward_hook)

        return forward_hook

    def __enter__(self) -> PerExampleGradientSums:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()


@contextlib.contextmanager
def activation_gradients_only(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring grad (no .grad is computed or stored) for the duration; restored after."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def dataset_importance(model: nn.Module, items: Sequence[Encoded], config: GradientConfig, vocab_size: int,
                       pad_id: int, generator: torch.Generator, device: str = "cpu", desc: str = "",
                       progress: bool = False) -> dict[str, torch.Tensor]:
    """Importance of every trainable linear weight entry for one dataset (Eq. 3, or |z| of the signed mean)."""
    absolute = config.statistic == "abs-mean"
    means = gradient_means(model, items, config, vocab_size, pad_id, generator, absolute, device, desc, progress)
    if absolute:
        return means
    return {name: ((m - m.mean()) / m.std().clamp_min(1e-30)).abs() for name, m in means.items()}


def gradient_means(model: nn.Module, items: Sequence[Encoded], config: GradientConfig, vocab_size: int,
                   pad_id: int, generator: torch.Generator, absolute: bool, device: str = "cpu", desc: str = "",
                   progress: bool = False) -> dict[str, torch.Tensor]:
    """Mean over examples and trials of the random-label gradient: of |g| (``absolute``) or of g.

    The corrupted rows are sorted by length (less padding per batch) and cut into batches; under several
    processes each takes every N-th batch and the sums are all-reduced. Each batch is then computed exactly as
    one process would, so the result is the same (the corruptions are drawn before anything is split).
    """
    rows = sorted(corrupt_answers(items, config.trials, vocab_size, generator), key=len)
    batches = [rows[i:i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
    sharded = sharding.is_sharded(model.parameters())
    if not sharded:
        batches = distributed.shard(batches)
    layers = scored_linears(model)
    embed = model.get_input_embeddings()
    # eval mode, no dropout: the gradient of the example itself
    with eval_mode(model), PerExampleGradientSums(layers, absolute) as stats, activation_gradients_only(model), \
            _embeddings_require_grad(embed) if sharded else contextlib.nullcontext():
        for rows_of_batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            batch = collate(rows_of_batch, pad_id).to(device)
            # a sharded model's embedding weight is gathered inside its forward only: marked there instead
            embeds = None if sharded else embed(batch.input_ids).detach().requires_grad_(True)
            loss = per_example_loss(answer_logits(model, batch, inputs_embeds=embeds), batch).sum()
            loss.backward()
    if not sharded:
        distributed.sum_across(stats.sums.values())
    return {name: (s / len(rows)).float() for name, s in stats.sums.items()}


@contextlib.contextmanager
def _embeddings_require_grad(embed: nn.Module) -> Iterator[None]:
    """The input embeddings, as the model computes them in its forward, become a leaf that requires grad."""
    handle = embed.register_forward_hook(lambda module, inputs, output: output.detach().requires_grad_(True))
    try:
        yield
    finally:
        handle.remove()


def importance_by_dataset(model: nn.Module, datasets: dict[str, list[Encoded]], config: GradientConfig,
                          vocab_size: int, pad_id: int, seed: int, device: str = "cpu",
                          progress: bool = False) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    """(dataset name, its importance scores), one dataset at a time."""
    generator = torch.Generator().manual_seed(seed)
    for name, items in datasets.items():
        yield name, dataset_importance(model, items, config, vocab_size, pad_id, generator, device,
                                       f"stage 1: gradients of {name}", progress)


def importance(model: nn.Module, datasets: dict[str, list[Encoded]], config: GradientConfig, vocab_size: int,
               pad_id: int, seed: int, device: str = "cpu",
               progress: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """Importance scores for every dataset: {dataset name: {parameter name: scores of its shape}}."""
    return dict(importance_by_dataset(model, datasets, config, vocab_size, pad_id, seed, device, progress))
