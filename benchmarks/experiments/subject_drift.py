"""Where stage 3 moves the model (RESULTS.md, *The subject anchor*): for each scope's prompts, how far each
layer's hidden states moved from the vanilla model's (squared distance relative to the vanilla state's squared
norm; mean over the prompt's positions but the last, and at the last), and the margin of the right first answer
token over the best other one. Usage:
python benchmarks/experiments/subject_drift.py RUN_FOLDER [ADAPTER ...] (default: adapter_unlearned; a method's
adapter is methods/NAME/adapter_unlearned)"""

import sys

import torch

from grail.batching import answer_logits, collate, encode_all
from grail.pipeline import Pipeline

run = Pipeline(sys.argv[1])
adapters = sys.argv[2:] or ["adapter_unlearned"]
scopes = {f"{d.name}/{scope}": encode_all(run.tokenizer, getattr(d, scope), run.config.model.prompt_format,
                                          run.config.model.max_length)
          for d in run.benchmark.domains for scope in ("forget", "retain", "retain_heldout")}


@torch.no_grad()
def states(model, item) -> torch.Tensor:
    out = model(torch.tensor([item.prompt_ids], device=run.device), output_hidden_states=True)
    return torch.stack(out.hidden_states[1:])[:, 0].cpu()  # [layers, prompt length, hidden]


@torch.no_grad()
def first_token_margins(model, items) -> torch.Tensor:
    batch = collate(items, run.tokenizer.pad_token_id).to(run.device)
    logits = answer_logits(model, batch)
    rows, start = torch.arange(len(items)), batch.answer_mask.float().argmax(1)  # each row's first answer token
    first, right = logits[rows, start], batch.targets[rows, start]
    target = first[rows, right]
    first[rows, right] = -torch.inf
    return (target - first.amax(-1)).cpu()


vanilla = run.use_weights("adapter_vanilla").eval()  # no dropout: every figure is the model's own
reference = {k: [states(vanilla, x) for x in items] for k, items in scopes.items()}
margins = {k: first_token_margins(vanilla, items) for k, items in scopes.items()}


def drift(model, item, ref: torch.Tensor) -> torch.Tensor:
    """[layers, 2]: the relative squared distance, mean over the positions but the last, and at the last."""
    moved = (states(model, item) - ref).pow(2).sum(-1) / ref.pow(2).sum(-1)  # [layers, prompt length]
    return torch.stack([moved[:, :-1].mean(-1), moved[:, -1]], -1)


for adapter in adapters:
    model = run.use_weights(adapter).eval()
    print(f"{adapter} (drift by thirds of the layers: early / middle / late)")
    for k, items in scopes.items():
        thirds = [part.mean(0) for part in torch.stack([drift(model, x, r) for x, r in zip(items, reference[k])])
                  .mean(0).chunk(3)]
        after = first_token_margins(model, items)
        print(f"  {k:26s} prompt but last {' / '.join(f'{t[0]:.3f}' for t in thirds)}; last "
              f"{' / '.join(f'{t[1]:.3f}' for t in thirds)}; first-token margin median {margins[k].median():+.2f} -> "
              f"{after.median():+.2f} (wrong {100 * (after < 0).float().mean():.0f} %)")
