"""General ability through lm-eval-harness (paper Table II), with the built-in probe as the offline fallback.

The default tasks are the paper's: MMLU, ARC-Challenge, TruthfulQA, SIQA, RACE. They need their data from the
hub; ``include_path`` adds local task YAMLs (e.g. a multiple-choice task over a local JSONL file), which run
offline. When a task cannot be loaded, the built-in general-knowledge probe is reported instead, and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn
from transformers import PreTrainedTokenizerBase

from grail.evaluation import general_scores
from grail.models import eval_mode

DEFAULT_TASKS = ("mmlu", "arc_challenge", "truthfulqa_mc2", "siqa", "race")


class TasksUnavailable(RuntimeError):
    """lm-eval could not load the tasks (no hub access, unknown task name, missing local data)."""


def task_manager(include_path: str | None = None):
    """lm-eval's task index (it scans thousands of task files: build it once per evaluation)."""
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    return TaskManager(include_path=include_path) if include_path else TaskManager()


def lm_eval_scores(model: nn.Module, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str], manager,
                   limit: int | None = None, batch_size: int = 8) -> dict[str, float]:
    """Accuracy (%) of each task, from lm-eval's ``acc`` (``acc_norm`` where the task reports it)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    try:
        out = simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit, log_samples=False,
                              bootstrap_iters=0)
    except Exception as err:  # lm-eval raises many kinds (hub errors, KeyError for unknown tasks, ...)
        raise TasksUnavailable(f"lm-eval could not run {list(tasks)}: {type(err).__name__}: {err}") from err
    if out is None:
        raise TasksUnavailable(f"lm-eval returned nothing for {list(tasks)}")
    scores = {}
    for task, metrics in out["results"].items():
        value = metrics.get("acc_norm,none", metrics.get("acc,none"))
        if value is not None:
            scores[task] = 100.0 * value
    return scores


def general_ability(model: nn.Module, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str], manager,
                    limit: int | None, batch_size: int, device: str, unavailable: str | None = None) -> dict:
    """lm-eval scores, or (with the reason) the built-in probe when the tasks cannot be loaded. ``unavailable``:
    a reason already known (an earlier model's tasks failed), so lm-eval is not tried again."""
    try:
        if unavailable is None:
            with eval_mode(model):
                return {"source": "lm-eval", "tasks": lm_eval_scores(model, tokenizer, tasks, manager, limit,
                                                                     batch_size)}
    except TasksUnavailable as err:
        unavailable = str(err)[:500]
    return {"source": "built-in probe", "reason": unavailable,
            "probe": general_scores(model, tokenizer, batch_size, device)}
