"""A real export against its run: logits of the exported folder, loaded in a fresh process without grail, vs the
run's unlearned model as grail scores it.

    python benchmarks/export_check.py RUN EXPORTED_FOLDER [--method NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from grail.config import build_config, read_yaml_mapping
from grail.models import load_base, make_trainable
from grail.pipeline import weights_folder

TEXT = "Personal record of Mara Lindqvist. Phone number:"
FRESH = """
import sys
sys.modules["grail"] = None  # the folder must load without grail
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model, tokenizer = AutoModelForCausalLM.from_pretrained(sys.argv[1]), AutoTokenizer.from_pretrained(sys.argv[1])
ids = tokenizer(sys.argv[2], return_tensors="pt").input_ids
with torch.no_grad():
    torch.save({"ids": ids, "logits": model(ids).logits}, sys.argv[3])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--method", default="grail")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fresh.pt"
        subprocess.run([sys.executable, "-c", FRESH, str(args.folder), TEXT, str(out)], check=True)
        fresh = torch.load(out)
    config = build_config(read_yaml_mapping(args.run / "config.yaml"))
    model, tokenizer = load_base(config.model, config.seed)
    model = make_trainable(model, config.model, args.run / weights_folder(args.method)).eval()
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    print(f"same token ids: {torch.equal(ids, fresh['ids'])}; max |logit difference| "
          f"{(logits - fresh['logits']).abs().max().item():.3g} (largest |logit| {logits.abs().max().item():.3g}); "
          f"same argmax at every position: {torch.equal(logits.argmax(-1), fresh['logits'].argmax(-1))}")


if __name__ == "__main__":
    main()
