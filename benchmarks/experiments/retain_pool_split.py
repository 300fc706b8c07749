"""Where a domain's retain accuracy goes when stage 3 trains on the balanced pools (RESULTS.md, *Every retain
example*): teacher-forced accuracy on the retain examples stage 3's ``pools: balanced`` trains on and on those it
leaves out, for the vanilla and the unlearned model of a run folder. Usage:
python benchmarks/experiments/retain_pool_split.py RUN_FOLDER [DOMAIN]"""

import sys
from statistics import mean

from grail.evaluation import teacher_forced
from grail.pipeline import Pipeline
from grail.stages.unlearn import training_pools

run = Pipeline(sys.argv[1])
domain = sys.argv[2] if len(sys.argv) > 2 else "copyright"
encoded = run.encoded()
_, pool = training_pools(encoded["forget"], encoded["retain"], run.config.seed, "balanced")
trained = set(pool)
retain = encoded["retain"][domain]
for weights in ("adapter_vanilla", "adapter_unlearned"):
    accuracy = teacher_forced(run.use_weights(weights), retain, run.tokenizer.pad_token_id, 32, run.device)[0]
    inside = [100 * a for x, a in zip(retain, accuracy) if x in trained]
    outside = [100 * a for x, a in zip(retain, accuracy) if x not in trained]
    print(f"{weights}: {domain} retain accuracy on the {len(inside)} examples in the balanced pool "
          f"{mean(inside):.1f} %, on the {len(outside)} left out {mean(outside) if outside else float('nan'):.1f} %")
