"""Proof of forgetting: the unlearned model under attack, against the oracle that never saw the forget set.

- ``mia``        membership inference (LOSS, zlib, Min-K%, Min-K%++): AUC, TPR at low FPR, PrivLeak, forget quality
- ``relearn``    a few fine-tuning steps on half of the forget set, the other half measured
- ``precision``  the merged model rounded to bfloat16, float16, int8, int4 and NF4
- ``prompts``    paraphrase, few-shot, "ignore your instructions", prefix completion
- ``runner``     ``grail attack RUN``: all of them on every model of a run; ``report``: the summary and tables
- ``evidence``   ``grail audit RUN --evidence``: hashes, versions, seeds, per-example scores, pass / fail
"""
