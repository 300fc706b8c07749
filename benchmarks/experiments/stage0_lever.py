"""One stage-0 lever (RESULTS.md, *Stage 0*): fine-tune with the given config overrides, then score the base and
the vanilla model. Usage: python benchmarks/experiments/stage0_lever.py RUN_FOLDER "{finetune: {...}}"."""

import json
import sys
import time

import yaml

from grail.config import build_config
from grail.pipeline import Pipeline

run = Pipeline(sys.argv[1], build_config(yaml.safe_load(sys.argv[2])), progress=False)
started = time.time()
run.run("finetune")
seconds = time.time() - started
out = {name: {"general": {k: v for k, v in run.evaluate_model(name)["general"].items() if k != "probe_wrong"},
              "average": run.evaluate_model(name).get("average")} for name in ("base", "vanilla")}
log = json.loads(run.path("adapter_vanilla/training_log.json").read_text())
print(json.dumps({"stage0_s": round(seconds), "epochs": len(log), "last_train_accuracy": log[-1]["train_accuracy"],
                  **out}, indent=1))
