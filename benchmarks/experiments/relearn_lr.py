"""The relearning attack's learning rate (RESULTS.md, *Proof of forgetting*): the attack of ``grail attack`` on
the named models of a run folder (it needs adapter_oracle: run ``grail attack RUN`` once) at each learning rate;
prints the leak rate and US on the measured half V after 0, 10, 25 and 50 steps. Usage:
python benchmarks/experiments/relearn_lr.py RUN_FOLDER 1e-4,3e-4,1e-3 vanilla,grail,oracle"""

import sys
import time

from grail.attacks import relearn
from grail.attacks.runner import Attacks, brief
from grail.experiments import Experiments
from grail.pipeline import weights_folder

run = Experiments(sys.argv[1])
attacks = Attacks(run)
train, measured = [], {}
for domain in run.benchmark.domains:
    t, v = relearn.split_halves(len(domain.forget), run.config.seed)
    train += [domain.forget[i] for i in t]
    measured[domain.name] = [domain.forget[i] for i in v]
for name in sys.argv[3].split(","):
    for lr in [float(x) for x in sys.argv[2].split(",")]:
        model = run.use_weights(weights_folder(name))
        started = time.time()
        curve = relearn.relearn(model, attacks.encode(train), [0, 10, 25, 50], lr, run.config.finetune.batch_size,
                                pad_id=run.tokenizer.pad_token_id, seed=run.config.seed, device=run.device,
                                measure=lambda m=model: {d: brief(s)
                                                         for d, s in attacks.leak_scores(m, measured).items()})
        print(name, lr, {k: {d: (round(s["leak_rate"]), round(s["US"])) for d, s in c.items()}
                         for k, c in curve.items()}, f"{time.time() - started:.0f} s", flush=True)
