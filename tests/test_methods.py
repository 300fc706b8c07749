"""The registered methods as stage 3 receives them: ``Experiments.unlearn_method`` resolves each one on a real run
folder of the tiny model (stage 3 itself and the mask builders replaced by recorders, so nothing trains), on a run
whose unlearn and localize sections differ from the defaults. What each method gets must be the run's config with
its own overrides, the published baselines must run as published, the ablations and strategies must differ from
GRAIL only in what they ablate, and every table's method must exist."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grail import experiments
from grail.config import build_config
from grail.data.general import OOD_RETAIN_TEXT
from grail.evaluation import text_items
from grail.methods import ABLATIONS, METHODS, STRATEGIES, TABLE_I, Method, get_method, sweep_methods
from grail.pipeline import Pipeline
from grail.stages.localize import localize, top_k_mask

RUN = {
    "model": {"name": "tiny"},
    "data": {"people": 1, "books": 1},
    # every field a method overrides set away from its default, so that a method falling back to the defaults
    # (or to another method's values) instead of the run's config shows
    "unlearn": {"forget_weight": 0.7, "retain_weight": 1.5, "general_weight": 2.5, "anchor_weight": 3.0,
                "utility_budget": 1.6, "target_check_steps": 3, "lr": 2e-4, "epochs": 7, "retain_objective": "descent",
                "max_grad_norm": 0.5},
    "localize": {"k_ur": 12.0, "k_rr": 25.0},
}
SWEEP = sweep_methods([5.0, 50.0], [5.0, 50.0], fixed_ur=12.0, fixed_rr=25.0)
PUBLISHED = [n for n in TABLE_I if n != "grail"] + ["npo"]
"""The published baselines (and GRAIL with the paper's objective): they run as published, whatever the run's own
stage 3 adds (methods.py)."""
PAPER_FORGET_WEIGHT = 0.4
"""The paper's weight of gradient ascent beside a retain term."""


@dataclasses.dataclass
class Received:
    phases: list
    unlearn: object
    localize: object
    builds: list  # (mask kind, localize config, domains) per mask build


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """{method name: what stage 3 received for it}, the run's config and the run's encoded sets."""
    config = build_config(RUN)
    received: dict[str, Received] = {}
    builds: list = []

    def recorder(kind):
        def build(pipeline, localize_cfg, domains):
            builds.append((kind, localize_cfg, list(domains)))
            return None  # nothing frozen: nothing to compute or save

        return build

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAIL_CACHE", str(tmp_path_factory.mktemp("cache")))
        pipeline = Pipeline(tmp_path_factory.mktemp("methods") / "run", config)
        try:
            for kind in list(experiments.MASK_BUILDERS):
                mp.setitem(experiments.MASK_BUILDERS, kind, recorder(kind))
            mp.setattr(pipeline, "stage2_masks", lambda: None)  # GRAIL's own masks (stage 3 of the run)

            def unlearn_from_vanilla(name, phases, unlearn_cfg, localize_cfg):
                received[name] = Received(phases, unlearn_cfg, localize_cfg, builds.copy())
                builds.clear()

            mp.setattr(pipeline, "unlearn_from_vanilla", unlearn_from_vanilla)
            runner = experiments.Experiments(pipeline)
            for method in [*METHODS.values(), *SWEEP]:
                runner.unlearn_method(method)
            encoded = pipeline.encoded()
            general = text_items(pipeline.tokenizer, OOD_RETAIN_TEXT)
        finally:
            pipeline.run_folder.close()
    return received, config, encoded, general


def _differences(section, reference) -> dict:
    return {f: v for f, v in dataclasses.asdict(section).items() if v != getattr(reference, f)}


def _overrides(method: Method) -> list[tuple[str, dict]]:
    return [("unlearn", method.unlearn), ("localize", method.localize)]


@pytest.mark.parametrize("method", [*METHODS.values(), *SWEEP], ids=lambda m: m.name)
def test_each_method_gets_the_runs_config_changed_exactly_where_it_overrides_it(run, method):
    received, config, _, _ = run
    got = received[method.name]
    for section, overrides in _overrides(method):
        resolved, own = getattr(got, section), getattr(config, section)
        assert type(resolved) is type(own)
        assert _differences(resolved, own) == {f: v for f, v in overrides.items() if v != getattr(own, f)}, section
    assert all(localize_cfg == got.localize for _, localize_cfg, _ in got.builds)  # the masks see the same config


@pytest.mark.parametrize("name", PUBLISHED)
def test_the_published_baselines_run_without_what_grail_adds(run, name):
    """No general replay term, no subject anchor, no utility budget, the paper's US target checked once an epoch on
    the reference code's balanced pools, whatever the run's own stage 3 has."""
    received, config, _, _ = run
    got = received[name].unlearn
    assert (config.unlearn.general_weight, config.unlearn.anchor_weight) != (0.0, 0.0)  # the run has them ...
    assert config.unlearn.utility_budget is not None
    assert got.general_weight == 0.0 and got.anchor_weight == 0.0 and got.utility_budget is None  # ... they do not
    assert (got.target, got.target_check_steps, got.pools) == ("us", 0, "balanced")
    if got.forget_objective == "ascent":
        assert got.ascent_stop == ("never" if name == "ga" else "uniform")
        assert got.forget_weight == (PAPER_FORGET_WEIGHT if got.retain_weight > 0 else 1.0)
    else:
        assert got.forget_weight == 1.0
    assert got.forget_weight != config.unlearn.forget_weight  # the run's weight (0.7) never leaks in


@pytest.mark.parametrize("name,objective", [("ga", "ascent"), ("random-labels", "random_labels"),
                                            ("adversarial", "adversarial")])
def test_the_baselines_without_a_retain_term_have_none(run, name, objective):
    got = run[0][name].unlearn
    assert got.retain_weight == 0.0 and got.forget_objective == objective


@pytest.mark.parametrize("name", sorted({*ABLATIONS, *STRATEGIES}))
def test_ablations_and_strategies_unlearn_with_grails_objective(run, name):
    """A comparison of localization (Table VI) or of a strategy (Table IV): everything else is GRAIL's."""
    received, config, _, _ = run
    assert received[name].unlearn == config.unlearn


@pytest.mark.parametrize("name,frozen", [("grail", {"op_ur", "op_rr"}), ("grail-no-op-ur", {"op_rr"}),
                                         ("grail-no-op-rr", {"op_ur"}), ("grail-no-both", set())])
def test_each_ablation_freezes_what_its_name_says(run, name, frozen):
    received, config, _, _ = run
    localize_cfg = received[name].localize
    assert (localize_cfg.k_ur, localize_cfg.k_rr) == (config.localize.k_ur, config.localize.k_rr)
    generator = torch.Generator().manual_seed(0)
    importance = {f"{d}/{s}": {"w": torch.rand(400, generator=generator)}
                  for d in ("privacy", "copyright") for s in ("forget", "retain")}
    masks = localize(importance, ["privacy", "copyright"], localize_cfg)
    expected = torch.zeros(400, dtype=torch.bool)
    for kind in frozen:
        expected |= masks[kind]["w"]
    assert masks["op_ur"]["w"].any() and masks["op_rr"]["w"].any()
    assert torch.equal(masks["frozen"]["w"], expected)
    # OP-UR is built at the run's k_UR: the union of the forget sets' top 12 % meets the retain sets'
    top = {k: top_k_mask(v["w"], config.localize.k_ur) for k, v in importance.items()}
    assert torch.equal(masks["op_ur"]["w"], (top["privacy/forget"] | top["copyright/forget"])
                       & (top["privacy/retain"] | top["copyright/retain"]))


@pytest.mark.parametrize("name,phases,kind", [
    ("only-privacy", [["privacy"]], "grail"),
    ("only-copyright", [["copyright"]], "grail"),
    ("sequential-p-c", [["privacy"], ["copyright"]], "grail"),
    ("sequential-c-p", [["copyright"], ["privacy"]], "grail"),
    ("combined-no-overlap", [["privacy", "copyright"]], "grail-per-domain"),
    ("memflex", [["privacy", "copyright"]], "memflex"),
    ("ga", [["privacy", "copyright"]], "none"),
])
def test_strategies_unlearn_their_domains_in_their_order_with_their_masks(run, name, phases, kind):
    got = run[0][name]
    assert [list(p.forget) for p in got.phases] == phases and [list(p.retain) for p in got.phases] == phases
    assert [(k, domains) for k, _, domains in got.builds] == [(kind, domains) for domains in phases]
    assert len({p.name for p in got.phases}) == len(phases)  # each phase resumes only its own checkpoints


@pytest.mark.parametrize("name", [n for n in METHODS if n != "grail"])
def test_the_retain_data_is_the_domains_retain_set_or_general_text(run, name):
    received, _, encoded, general = run
    for phase in received[name].phases:
        for domain, retain in phase.retain.items():
            assert retain == (general if METHODS[name].retain_data == "ood" else encoded["retain"][domain])
            assert phase.forget[domain] == encoded["forget"][domain]


def test_the_sweep_varies_one_k_at_a_time_around_the_runs():
    received_names = [m.name for m in SWEEP]
    assert received_names == ["grail-kur-5", "grail-kur-50", "grail-krr-5", "grail-krr-50"]
    assert [(m.localize["k_ur"], m.localize["k_rr"]) for m in SWEEP] == [(5.0, 25.0), (50.0, 25.0), (12.0, 5.0),
                                                                          (12.0, 50.0)]
    assert not set(received_names) & set(METHODS)  # a sweep setting never shadows a registered method


@pytest.mark.parametrize("table", [TABLE_I, ABLATIONS, STRATEGIES], ids=["table1", "ablations", "strategies"])
def test_every_table_names_distinct_registered_methods_and_grail(table):
    assert len(set(table)) == len(table)
    assert [get_method(n).name for n in table] == table  # get_method raises on an unknown name
    assert "grail" in table  # each table compares against GRAIL itself
    with pytest.raises(KeyError, match="unknown method 'magic'"):
        get_method("magic")
