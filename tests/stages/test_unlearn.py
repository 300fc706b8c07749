import pytest
import torch

from grail.config import UnlearnConfig
from grail.methods import METHODS
from grail.models import set_trainable, trainable_parameters, trainable_state
from grail.stages import targets
from grail.stages.unlearn import UpdateMasks, training_pools, unlearn

# These tests are of the paper's stage 3, as the published baselines run it (the replay term, the utility budget
# and the pools of every example have their own tests).
PAPER = METHODS["ga-gd-id"].unlearn


def _random_masks(params, seed=0):
    g = torch.Generator().manual_seed(seed)
    op_ur = {n: torch.rand(p.shape, generator=g) < 0.15 for n, p in params.items()}
    op_rr = {n: torch.rand(p.shape, generator=g) < 0.25 for n, p in params.items()}
    return {"op_ur": op_ur, "op_rr": op_rr, "frozen": {n: op_ur[n] | op_rr[n] for n in params}}


def _run(model, tokenizer, sets, masks, **overrides):
    config = UnlearnConfig(**{**PAPER, "epochs": 2, "lr": 1e-2, "weight_decay": 0.1, "batch_size": 4, "target": "none",
                              **overrides})
    forget, retain = sets
    return unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0, masks=masks)


@pytest.mark.parametrize("policy", ["paper", "per-objective"])
def test_frozen_entries_stay_bit_identical_with_adamw_and_weight_decay(tiny_lora, tiny_sets, policy):
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    masks = _random_masks(params)
    update = UpdateMasks.for_policy(masks, policy)
    _run(model, tokenizer, tiny_sets, update, policy=policy)
    never = update.never_moving()
    if policy == "paper":
        assert all(torch.equal(never[n], masks["frozen"][n]) for n in params)
    else:
        assert all(torch.equal(never[n], masks["op_ur"][n] & masks["op_rr"][n]) for n in params)
    moved_outside = 0
    for n, p in params.items():
        after = p.detach()
        assert torch.equal(after[never[n]], before[n][never[n]]), f"frozen entries of {n} moved"
        moved_outside += int((after != before[n])[~never[n]].sum())
    assert moved_outside > 0.5 * sum(int((~m).sum()) for m in never.values())


@pytest.mark.parametrize("silenced,kept", [("retain_weight", "op_ur"), ("forget_weight", "op_rr")])
def test_per_objective_masks_each_objective_separately(tiny_lora, tiny_sets, silenced, kept):
    """With only the forget objective, OP-UR never moves; with only the retain objective, OP-RR never moves.
    (Weight decay off: it is neither objective, and it applies to every entry some objective may move.)"""
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    masks = _random_masks(params, seed=1)
    _run(model, tokenizer, tiny_sets, UpdateMasks.for_policy(masks, "per-objective"), policy="per-objective",
         weight_decay=0.0, **{silenced: 0.0})
    for n, p in params.items():
        assert torch.equal(p.detach()[masks[kept][n]], before[n][masks[kept][n]])
        assert not torch.equal(p.detach(), before[n])


def test_without_masks_everything_moves_and_the_loss_rises_on_forget(tiny_lora, tiny_sets):
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    log = _run(model, tokenizer, tiny_sets, None, forget_weight=1.0, retain_weight=0.0, ascent_stop="never")
    assert log[-1]["forget_loss"] > log[0]["forget_loss"]
    assert all(not torch.equal(p.detach(), before[n]) for n, p in params.items())


def _uneven(sets):
    """Domain ``a`` with more retain than forget examples, ``b`` with fewer: 8 forget, 8 retain in all."""
    forget, retain = sets
    return ({"a": forget["privacy"][:4], "b": forget["privacy"][4:8]},
            {"a": retain["privacy"][:6], "b": retain["privacy"][6:8]})


def test_balanced_pools_truncate_each_domain_to_the_smaller_set_all_keeps_every_example(tiny_sets):
    forget, retain = _uneven(tiny_sets)
    f, r = training_pools(forget, retain, seed=0, pools="balanced")
    assert {d: len(items) for d, items in f.items()} == {"a": 4, "b": 2}
    assert len(r) == 6 and set(r) < set(retain["a"] + retain["b"])
    f, r = training_pools(forget, retain, seed=0, pools="all")
    assert {d: set(items) for d, items in f.items()} == {d: set(items) for d, items in forget.items()}
    assert len(r) == 8 and set(r) == set(retain["a"] + retain["b"])


@pytest.mark.parametrize("pools", ["balanced", "all"])
def test_retain_examples_descended_on(tiny_lora, tiny_sets, monkeypatch, pools):
    """``all``: every retain example is in a step's retain half within the epoch; ``balanced`` leaves out the
    retain examples beyond each domain's forget count (here 2 of 8)."""
    from grail.stages import objectives

    model, tokenizer = tiny_lora
    forget, retain = _uneven(tiny_sets)
    descended = set()
    descent = objectives.RETAIN_OBJECTIVES["descent"]

    def recording(model, items, setup, prepared):
        descended.update(items)
        return descent.loss(model, items, setup, prepared)

    monkeypatch.setitem(objectives.RETAIN_OBJECTIVES, "descent", objectives.Objective(descent.prepare, recording))
    config = UnlearnConfig(**{**PAPER, "pools": pools, "target": "none"}, epochs=1, lr=1e-3, batch_size=4)
    unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    every = set(retain["a"] + retain["b"])
    assert descended == every if pools == "all" else len(every - descended) == 2


def _scripted_check(*results):
    """A stand-in for the evaluation: returns the given scores in turn (first call = before unlearning)."""
    calls = iter(results)
    return lambda: next(calls)


def _scripted_us(monkeypatch, forget, **us):
    """The US target's measurements scripted: each domain's US at each of its measurements in turn (before
    unlearning, within epochs, at each epoch's end), the last one forever; returns the list of domains measured."""
    domain_of = {x: d for d, items in forget.items() for x in items}
    calls = {d: iter(values) for d, values in us.items()}
    latest: dict[str, float] = {}
    measured = []

    def scored(model, items, *args):
        domain = domain_of[items[0]]
        latest[domain] = next(calls[domain], latest.get(domain))
        measured.append(domain)
        return [1 - latest[domain] / 100] * len(items), [0.0] * len(items), None

    monkeypatch.setattr(targets, "teacher_forced", scored)
    return measured


def test_a_domain_at_its_target_stops_ascending_and_the_stage_stops_when_all_are(tiny_lora, tiny_sets, monkeypatch):
    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    _scripted_us(monkeypatch, forget, privacy=[95.0], copyright=[10.0, 10.0, 95.0])
    config = UnlearnConfig(**PAPER, epochs=5, batch_size=4, target_us=90.0)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    assert [e["ascending"] for e in log] == [["copyright"], ["copyright"]]
    assert log[-1]["stop"].startswith("target met: US >= 90")
    assert log[-1]["target"] == {"privacy": {"US": 95.0, "met": True}, "copyright": {"US": 95.0, "met": True}}


def test_unlearning_one_domain_stops_at_its_target_whatever_the_others_us(tiny_lora, tiny_sets, monkeypatch):
    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    _scripted_us(monkeypatch, forget, privacy=[50.0, 95.0], copyright=[2.0])
    only_privacy = {d: v for d, v in forget.items() if d == "privacy"}
    log = unlearn(model, only_privacy, {"privacy": retain["privacy"]}, UnlearnConfig(**PAPER, epochs=5, batch_size=4),
                  pad_id=tokenizer.pad_token_id, seed=0)
    assert len(log) == 1 and log[-1]["stop"].startswith("target met")


def test_the_epoch_cap_only_truncates_the_run(tiny_lora, tiny_sets):
    """Nothing in stage 3 depends on ``epochs`` but where it ends (no schedule over the budget): raising the cap
    cannot change a run that a stop rule ends first, and a capped run is the start of a longer one."""
    model, tokenizer = tiny_lora
    start = trainable_state(model)
    logs, weights = {}, {}
    for epochs in (2, 3):
        set_trainable(model, start)
        logs[epochs] = _run(model, tokenizer, tiny_sets, None, epochs=epochs, weight_decay=0.01)
        weights[epochs] = trainable_state(model)
    assert logs[2] == logs[3][:2]
    assert len(logs[3]) == 3 and any(not torch.equal(weights[2][n], weights[3][n]) for n in start)


def test_divergence_keeps_the_weights_of_the_epoch_before(tiny_lora, tiny_sets, monkeypatch):
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    fine, collapsed = {"US": 50.0, "RS": 100.0}, {"US": 99.0, "RS": 10.0}
    check = _scripted_check({"privacy": fine, "copyright": fine}, {"privacy": fine, "copyright": fine},
                            {"privacy": fine, "copyright": collapsed})
    forget, retain = tiny_sets
    _scripted_us(monkeypatch, forget, privacy=[50.0], copyright=[50.0])  # the target never met
    snapshots = []
    unlearn(model, forget, retain, UnlearnConfig(**PAPER, epochs=5, batch_size=4), pad_id=tokenizer.pad_token_id,
            seed=0, check=check,
            on_epoch_end=lambda epoch: snapshots.append({n: p.detach().clone() for n, p in params.items()}))
    assert len(snapshots) == 2  # stopped after the second epoch ...
    # ... and went back to the weights after the first
    assert all(torch.equal(p, snapshots[0][n]) for n, p in params.items())


def _scripted_utility(params, values):
    """A utility check returning ``values`` in turn (the last one forever), recording the weights at every call
    within a 1.5 x budget of the first value."""
    calls, within = iter(values), []

    def utility():
        value = next(calls, values[-1])
        if value <= 1.5 * values[0]:
            within.append({n: p.detach().clone() for n, p in params.items()})
        return value

    return utility, within


@pytest.mark.parametrize("check_steps", [0, 1, 2])
def test_utility_budget_stops_and_keeps_the_last_weights_within_it(tiny_lora, tiny_sets, check_steps):
    """The check passes twice, then fails: the stage stops there and keeps the weights of the last pass (checks
    every ``check_steps`` steps and at each epoch's end; 0: at the epoch's end only)."""
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    utility, within = _scripted_utility(params, [10.0, 11.0, 12.0, 30.0])
    forget, retain = tiny_sets
    config = UnlearnConfig(**{**PAPER, "utility_budget": 1.5, "target": "none"}, utility_check_steps=check_steps,
                           epochs=5, lr=1e-2, batch_size=4, budget_backoff=0)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0, utility=utility)
    assert "utility budget spent" in log[-1]["stop"] and log[-1]["budget_spent"]["utility_ppl"] == 30.0
    assert log[-1]["utility_ppl"] == 12.0  # what the kept weights measured
    assert all(torch.equal(p.detach(), within[-1][n]) for n, p in params.items())
    steps_per_epoch = -(-sum(min(len(forget[d]), len(retain[d])) for d in forget) // 2)
    checks_per_epoch = steps_per_epoch // check_steps + (steps_per_epoch % check_steps > 0) if check_steps else 1
    assert len(log) == -(-3 // checks_per_epoch)  # the third check is in this epoch


def test_target_checked_within_the_epoch_stops_ascent_at_once(tiny_lora, tiny_sets, monkeypatch):
    """With ``target_check_steps: 1`` and a target every domain meets at once, the epoch ends after its first step:
    the weights are those a run checking only at the epoch's end had after that step."""
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    vanilla = trainable_state(model)
    forget, retain = tiny_sets
    common = {**PAPER, "utility_budget": 1.5, "epochs": 1, "lr": 1e-2, "batch_size": 4, "target_us": 90.0}
    utility, after_each_step = _scripted_utility(params, [10.0])
    _scripted_us(monkeypatch, forget, privacy=[0.0, 100.0], copyright=[0.0, 100.0])  # met at the first check
    unlearn(model, forget, retain, UnlearnConfig(**common, utility_check_steps=1), pad_id=tokenizer.pad_token_id,
            seed=0, utility=utility)
    set_trainable(model, vanilla)
    _scripted_us(monkeypatch, forget, privacy=[0.0, 100.0], copyright=[0.0, 100.0])
    log = unlearn(model, forget, retain, UnlearnConfig(**{**common, "target_check_steps": 1}),
                  pad_id=tokenizer.pad_token_id, seed=0, utility=_scripted_utility(params, [10.0])[0])
    assert log[0]["target_reached_at_step"] == {domain: 1 for domain in forget}
    assert all(torch.equal(p.detach(), after_each_step[1][n]) for n, p in params.items())  # [0]: before any step
    assert not all(torch.equal(p.detach(), after_each_step[-1][n]) for n, p in params.items())


def test_a_domain_at_the_target_within_the_epoch_leaves_the_ascent(tiny_lora, tiny_sets, monkeypatch):
    """One domain scores at the target at the first check, the other never: none of the first one's examples is
    ascended after that step, and the other one ascends to the end of the epoch."""
    from grail.stages import objectives

    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    done, going = sorted(forget)
    domain_of = {x: d for d, items in forget.items() for x in items}
    # the target's scores: `done` forgotten (US 100) from the first check on, `going` never (US 0)
    _scripted_us(monkeypatch, forget, **{done: [0.0, 100.0], going: [0.0]})
    ascended = []  # per step, the domains of its forget examples
    ascent = objectives.FORGET_OBJECTIVES["ascent"]

    def recording(model, items, setup, prepared):
        ascended.append({domain_of[x] for x in items})
        return ascent.loss(model, items, setup, prepared)

    monkeypatch.setitem(objectives.FORGET_OBJECTIVES, "ascent", objectives.Objective(ascent.prepare, recording))
    config = UnlearnConfig(**{**PAPER, "target_check_steps": 1}, epochs=1, lr=1e-3, batch_size=4, target_us=50.0)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    assert log[0]["target_reached_at_step"] == {done: 1}
    assert done in ascended[0] and all(step == {going} for step in ascended[1:])
    assert len(ascended) > 2  # the epoch went on for the other domain


def test_a_domain_newly_held_leaves_no_momentum_behind(tiny_lora, tiny_sets, monkeypatch):
    """``to_base`` holds a domain at its target: Adam's first moment (the ascent of the steps before) is cleared when
    the domain is held, once; the steps after build it again from the gradients of then."""
    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    done, going = sorted(forget)
    _scripted_us(monkeypatch, forget, **{done: [0.0, 100.0], going: [0.0]})
    momentum = []  # at the start of each optimizer step: the first moment's total magnitude
    adam_step = torch.optim.AdamW.step

    def recording(self, *args, **kwargs):
        momentum.append(sum(float(s["exp_avg"].abs().sum()) for s in self.state.values() if "exp_avg" in s))
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording)
    config = UnlearnConfig(forget_objective="to_base", target="us", target_us=50.0, target_check_steps=1, epochs=1,
                           lr=1e-3, batch_size=4, general_weight=0.0, anchor_weight=0.0, utility_budget=None)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    assert log[0]["target_reached_at_step"] == {done: 1}
    assert momentum[0] == 0.0 and momentum[1] == 0.0  # before the first step; cleared by the hold after it
    assert len(momentum) > 3 and all(m > 0 for m in momentum[2:])


def test_the_target_is_not_checked_after_the_last_step_when_the_epoch_end_measures_it(tiny_lora, tiny_sets,
                                                                                      monkeypatch):
    """Each domain's target is measured before unlearning, after every step but the epoch's last (the epoch's end
    measures the same weights right after it) and at the epoch's end."""
    model, tokenizer = tiny_lora
    forget, retain = tiny_sets
    measured = _scripted_us(monkeypatch, forget, **{d: [0.0] for d in forget})  # never the target
    config = UnlearnConfig(**{**PAPER, "target_check_steps": 1, "pools": "all"}, epochs=1, lr=1e-3, batch_size=4,
                           target_us=50.0)
    unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0)
    steps = -(-sum(len(items) for items in forget.values()) // 2)
    assert len(measured) == (1 + (steps - 1) + 1) * len(forget)  # every domain ascends the whole epoch


def test_budget_backoff_goes_back_and_on_at_half_the_step_size(tiny_lora, tiny_sets):
    """Crossing the budget with ``budget_backoff: 2``: back to the last weights within it, on at half the
    learning rate, twice; the third crossing stops the stage as without backoff."""
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    utility, within = _scripted_utility(params, [10.0, 11.0, 30.0, 12.0, 30.0, 30.0])
    forget, retain = tiny_sets
    config = UnlearnConfig(**{**PAPER, "utility_budget": 1.5, "target": "none"}, utility_check_steps=1, epochs=8,
                           lr=1e-2, batch_size=4, budget_backoff=2)
    log = unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0, utility=utility)
    backoffs = [entry["budget_spent"]["lr_now"] for entry in log if "lr_now" in entry.get("budget_spent", {})]
    assert backoffs == [5e-3, 2.5e-3] and "utility budget spent" in log[-1]["stop"]
    assert "stop" not in log[0] and all(torch.equal(p.detach(), within[-1][n]) for n, p in params.items())


@pytest.mark.parametrize("replay", [True, False])
@pytest.mark.parametrize("after_crossing,repaired", [([20.0, 14.0, 11.0], True), ([30.0], False)])
def test_budget_repair_steps_take_general_replay_alone(tiny_lora, tiny_sets, monkeypatch, after_crossing, repaired,
                                                       replay):
    """Crossing the budget with ``budget_repair_steps: 4``: steps of general replay alone (no ascent, no retain
    descent; the retain descent where there is no replay), each checked, until the check is below the middle of the
    budget (12.5 for 10 and 1.5 x); then the epoch goes on. A repair that does not get back within the budget in its
    4 steps leaves the stop to the budget as before."""
    from grail.data.general import OOD_RETAIN_TEXT
    from grail.evaluation import text_items
    from grail.stages import objectives

    model, tokenizer = tiny_lora
    pad = tokenizer.pad_token_id
    params = trainable_parameters(model)
    general = None
    if replay:
        model.eval()
        general = objectives.topk_reference(model, text_items(tokenizer, OOD_RETAIN_TEXT), pad, "cpu", k=16)
    utility, _ = _scripted_utility(params, [10.0, 11.0, 30.0, *after_crossing])
    calls = {"forget": 0, "retain": 0, "replay": 0}
    for kind, table, name in (("forget", objectives.FORGET_OBJECTIVES, "ascent"),
                              ("retain", objectives.RETAIN_OBJECTIVES, "descent")):
        objective = table[name]

        def counting(model, items, setup, prepared, objective=objective, kind=kind):
            calls[kind] += 1
            return objective.loss(model, items, setup, prepared)

        monkeypatch.setitem(table, name, objectives.Objective(objective.prepare, counting))
    replay_loss = objectives.topk_kl_loss

    def counting_replay(*args):
        calls["replay"] += 1
        return replay_loss(*args)

    monkeypatch.setattr(objectives, "topk_kl_loss", counting_replay)
    forget, retain = tiny_sets
    config = UnlearnConfig(**{**PAPER, "utility_budget": 1.5, "general_weight": 1.0 if replay else 0.0,
                              "target": "none"},
                           utility_check_steps=1, epochs=1, lr=1e-2, batch_size=4, budget_backoff=0,
                           budget_repair_steps=4)
    log = unlearn(model, forget, retain, config, pad_id=pad, seed=0, utility=utility, general=general)
    steps = len(after_crossing) if repaired else 4
    assert log[0]["repairs"] == [{"step": 2, "repair_steps": steps, "utility_ppl": after_crossing[-1]}]
    # every training step ascends and descends (and replays); a repair step only replays, or only descends
    assert calls["retain"] - calls["forget"] == (0 if replay else steps)
    assert calls["replay"] == (calls["forget"] + steps if replay else 0)
    if repaired:
        steps_per_epoch = -(-sum(len(forget[d]) for d in forget) // 2)
        assert "stop" not in log[0] and calls["forget"] == steps_per_epoch  # the epoch went on to its end
    else:
        assert "utility budget spent" in log[0]["stop"] and calls["forget"] == 2


def test_general_replay_term_pulls_towards_the_base(tiny_lora, tiny_sets):
    """With general_weight, stage 3 stays closer to the base model's distributions on the replay data."""
    import copy

    from grail.data.general import OOD_RETAIN_TEXT
    from grail.evaluation import text_items
    from grail.stages import objectives

    model, tokenizer = tiny_lora
    pad = tokenizer.pad_token_id
    replay_items = text_items(tokenizer, OOD_RETAIN_TEXT)
    model.eval()
    reference = objectives.topk_reference(model, replay_items, pad, "cpu", k=16)
    forget, retain = tiny_sets
    drift = {}
    for weight in (0.0, 5.0):
        trained = copy.deepcopy(model)
        config = UnlearnConfig(**{**PAPER, "general_weight": weight, "ascent_stop": "never", "target": "none"},
                               epochs=2, lr=1e-2, batch_size=4)
        unlearn(trained, forget, retain, config, pad_id=pad, seed=0, general=reference)
        trained.eval()
        drift[weight] = objectives.topk_kl_loss(trained, replay_items, pad, "cpu", reference)[0].item()
    assert drift[5.0] < drift[0.0]
    with pytest.raises(ValueError, match="general replay data"):
        unlearn(model, forget, retain, UnlearnConfig(general_weight=1.0), pad_id=pad, seed=0)


def test_reference_ascent_stops_at_the_base_model(tiny_lora, tiny_sets):
    """LoRA B = 0: the model is the base model, so no forget token is likelier than there; nothing ascends and
    the stage ends at once, untouched."""
    model, tokenizer = tiny_lora
    params = trainable_parameters(model)
    with torch.no_grad():
        for name, p in params.items():
            if "lora_B" in name:
                p.zero_()
    before = {n: p.detach().clone() for n, p in params.items()}
    log = _run(model, tokenizer, tiny_sets, None, retain_weight=0.0, weight_decay=0.0, ascent_stop="reference",
               epochs=3)
    assert len(log) == 1 and log[0]["ascending"] == []
    assert log[0]["left_to_ascend"] == {"privacy": 0.0, "copyright": 0.0}
    assert log[0]["stop"].startswith("nothing left to ascend")
    assert all(torch.equal(p.detach(), before[n]) for n, p in params.items())


def test_reference_ascent_pushes_only_what_the_vanilla_knows_better_than_the_base(tiny_lora, tiny_encoded, tiny_sets):
    """A vanilla that memorised the sets (stage 0 on the tiny model) has tokens to ascend; ascent removes them
    and stops ascending once none is left above the base model (or predicted)."""
    from grail.config import FinetuneConfig
    from grail.stages.finetune import finetune

    model, tokenizer = tiny_lora
    finetune(model, tiny_encoded, FinetuneConfig(epochs=15, lr=1e-2, replay_weight=0.0), pad_id=tokenizer.pad_token_id,
             seed=0)
    log = _run(model, tokenizer, tiny_sets, None, retain_weight=0.0, ascent_stop="reference", ascent_margin=0.0,
               epochs=6, lr=3e-3)
    first, last = log[0]["left_to_ascend"], log[-1]["left_to_ascend"]
    assert log[0]["ascending"] == ["privacy", "copyright"]
    assert all(last[d] < first[d] for d in first), (first, last)
    assert log[-1]["stop"].startswith("nothing left to ascend")


def test_masks_move_to_each_parameters_device():
    """Masks load on the CPU; stage 3 moves them next to each parameter (a GPU's, here the meta device's)."""
    params = {"a": torch.nn.Parameter(torch.zeros(2, 3, device="meta")), "b": torch.nn.Parameter(torch.zeros(4))}
    keep = {"a": torch.ones(2, 3, dtype=torch.bool), "b": torch.zeros(4, dtype=torch.bool)}
    moved = UpdateMasks(keep, keep).on(params)
    assert moved.forget["a"].device.type == "meta" and moved.retain["a"].device.type == "meta"
    assert moved.forget["b"].device.type == "cpu" and not moved.per_objective
