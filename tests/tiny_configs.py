"""Run configs of the tiny model shared by the end-to-end tests (tests/ is on sys.path: pytest puts conftest.py's
folder there)."""

TINY_RUN = {
    "model": {"name": "tiny", "lora_r": 4, "lora_alpha": 8},
    "data": {"people": 1, "books": 1},
    "finetune": {"epochs": 3, "lr": 1e-2, "batch_size": 4},
    "gradients": {"batch_size": 8},
    "unlearn": {"epochs": 2, "lr": 5e-3, "batch_size": 4, "target_us": None},
    "evaluate": {"max_new_tokens": 4, "mmlu_per_subject": 1},
}
"""LoRA on the tiny Llama, one person and one book: every stage in seconds."""
