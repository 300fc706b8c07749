"""One stage-3 lever (RESULTS.md, *Stage 3*): GRAIL's masks with the given unlearn overrides, on a run folder's
vanilla model, scored like every model. Usage:
python benchmarks/experiments/stage3_lever.py RUN_FOLDER NAME "{general_weight: 4.0, ascent_stop: forgotten}"."""

import json
import sys
import time

import yaml

from grail.experiments import Experiments
from grail.methods import Method

folder, name, overrides = sys.argv[1], sys.argv[2], yaml.safe_load(sys.argv[3])
run = Experiments(folder)
run.run("localize")
started = time.time()
run.unlearn_method(Method(name, name, overrides, masks="grail"))
seconds = time.time() - started
scores = run.evaluate_model(name)
log = json.loads(run.path(f"methods/{name}/adapter_unlearned/training_log.json").read_text())
keys = ("US", "US_paraphrase", "RS", "RS_heldout", "leak_rate")
print(json.dumps({"name": name, "overrides": overrides, "stage3_s": round(seconds), "epochs": len(log),
                  "stop": log[-1].get("stop"),
                  "domains": {d: {k: round(v[k], 2) for k in keys if k in v} for d, v in scores["domains"].items()},
                  "general": {k: v for k, v in scores["general"].items() if k != "probe_wrong"}}))
