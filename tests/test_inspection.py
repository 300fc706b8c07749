"""`grail inspect` on a tiny finished run: each look as Markdown and as JSON, scored as evaluation scores (the same
numbers as the run's evaluation files), stage 3's pools as stage 3 draws them, bad input as exit 2 in one line, and
the run folder untouched."""

import json

import pytest
from tiny_configs import TINY_RUN

from grail import io
from grail.cli import EXIT_BAD_INPUT, main
from grail.data.general import GENERAL_PROBE
from grail.methods import METHODS
from grail.pipeline import Pipeline
from grail.run_folder import LOCK_FILE
from grail.stages.unlearn import training_pools


@pytest.fixture(scope="module")
def run(cli_run):
    return cli_run(TINY_RUN, "inspected")


def _inspect(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["inspect", *argv, "--quiet"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _json(capsys, *argv: str) -> dict:
    status, out, _ = _inspect(capsys, *argv, "--json")
    assert status == 0
    return json.loads(out)


def test_answers_are_the_examples_evaluation_averaged(run, capsys):
    """Without --limit, each domain's produced share and mean accuracy are the run's own evaluation of the set."""
    document = _json(capsys, str(run), "--model", "vanilla", "--scope", "retain")
    evaluation = io.read_json(run / "evaluations" / "vanilla.json")["domains"]
    assert list(document["domains"]) == list(evaluation)
    for domain, summary in document["domains"].items():
        assert summary["accuracy"] == pytest.approx(evaluation[domain]["retain"]["accuracy"])
        assert summary["produced_rate"] == pytest.approx(evaluation[domain]["retain"]["span_rate"])
    data = Pipeline(run).benchmark
    prompts = [ex.prompt for domain in data.domains for ex in domain.retain]
    assert [r["prompt"] for r in document["rows"]] == prompts
    assert all(isinstance(r["produced"], bool) and 0 <= r["accuracy"] <= 100 for r in document["rows"])


def test_answers_of_one_domain_paraphrases_limited_as_a_table(run, capsys):
    status, out, _ = _inspect(capsys, str(run), "--scope", "forget_paraphrase", "--domain", "privacy", "--limit", "2")
    assert status == 0
    assert "| domain | # | prompt | expected | greedy answer | produced | accuracy % |" in out
    rows = [line for line in out.splitlines() if line.startswith("| privacy |")]
    assert len(rows) == 2 and "copyright" not in out
    assert "privacy: " in out and " of 2 produced" in out


def test_the_probe_is_scored_as_evaluation_scores_it(run, capsys):
    document = _json(capsys, str(run), "--what", "probe")
    general = io.read_json(run / "evaluations" / "grail.json")["general"]
    assert document["n"] == len(GENERAL_PROBE) == general["probe_n"]
    assert document["accuracy"] == pytest.approx(general["probe_accuracy"])
    assert document["wrong"] == general["probe_wrong"]
    status, out, _ = _inspect(capsys, str(run), "--what", "probe", "--model", "base", "--limit", "3")
    assert status == 0 and "| question | accepted | answer | right |" in out and "(3 questions)" in out


@pytest.mark.parametrize("method", ["grail", "ga-gd-id", "ga-gd-ood", "sequential-c-p"])
def test_pools_are_what_stage_3_draws(run, capsys, method):
    """The examples shown are those ``training_pools`` draws from the encoded sets, one pass per group of domains
    as ``Experiments.unlearn_method`` makes them (``balanced`` cuts the larger set: a real draw here)."""
    document = _json(capsys, str(run), "--what", "pools", "--model", method, "--limit", "2")
    pipeline = Pipeline(run)
    try:
        encoded, seed = pipeline.encoded(), pipeline.config.seed
        pools = METHODS[method].unlearn.get("pools", pipeline.config.unlearn.pools)
        domains = list(METHODS[method].domains or pipeline.benchmark.domain_names)
        groups = [[d] for d in domains] if METHODS[method].sequential else [domains]
        expected = {}
        for group in groups:
            retain = {d: encoded["retain"][d] for d in group}
            forget_pools, retain_pool = training_pools({d: encoded["forget"][d] for d in group}, retain, seed, pools)
            for d in group:
                expected[(d, "forget")] = sorted(_positions(forget_pools[d], encoded["forget"][d]))
                expected[(d, "retain")] = sorted(_positions([x for x in retain_pool if any(x is y for y in retain[d])],
                                                            retain[d]))
    finally:
        pipeline.run_folder.close()
    rows = {(r["domain"], r["set"]): r for r in document["rows"]}
    assert document["pools"] == pools
    for (domain, name), indices in expected.items():
        if name == "retain" and METHODS[method].retain_data == "ood":
            assert rows[(domain, "retain")]["stage3"] == 0 and rows[(domain, "general text")]["stage3"] > 0
            continue
        assert rows[(domain, name)]["stage3_indices"] == indices
        assert len(rows[(domain, name)]["prompts"]) == min(2, len(indices))
    never = {"retain_heldout", "forget_paraphrase", "holdout"} | ({"retain"} if method == "ga-gd-ood" else set())
    assert set(document["stage3_never_trains_on"]) == never
    assert all(r["stage3"] == 0 for r in document["rows"] if r["set"] in never)


def _positions(drawn: list, items: list) -> list[int]:
    """Where each drawn example stands in its set (by identity: two equal examples are two examples)."""
    return [next(i for i, y in enumerate(items) if x is y) for x in drawn]


def test_pools_as_a_table(run, capsys):
    status, out, _ = _inspect(capsys, str(run), "--what", "pools", "--model", "ga-gd-id", "--limit", "1")
    assert status == 0
    assert "| domain | set | examples | stage 0 trains on | stage 3 (ga-gd-id) trains on |" in out
    assert "| privacy | holdout |" in out and "unlearn.pools: balanced" in out
    assert "stage 3 never trains on: forget_paraphrase, holdout, retain_heldout" in out
    assert "privacy forget: the first 1 examples stage 3 trains on" in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope"], "--model: unknown model 'nope'; "),
    (["--model", "oracle"], "--model oracle: "),  # a model the run could hold, but does not
    (["--model", "ga"], "has no methods/ga/adapter_unlearned/ (grail compare --methods ga trains it)"),
    (["--scope", "nope"], "--scope: unknown set 'nope'"),
    (["--domain", "nope"], "--domain: unknown domain(s) ['nope']"),
    (["--what", "nope"], "--what: one of ['answers', 'probe', 'pools'], got 'nope'"),
    (["--what", "probe", "--scope", "retain"], "--scope: only with --what answers"),
    (["--limit", "0"], "--limit: a count >= 1, got 0"),
    (["--what", "pools", "--model", "vanilla"], "--model vanilla: no stage 3 trains it"),
])
def test_bad_input_is_exit_2_in_one_line_naming_it(run, capsys, argv, message):
    status, out, err = _inspect(capsys, str(run), *argv)
    assert status == EXIT_BAD_INPUT and out == ""
    error = err.strip().splitlines()[-1]
    assert error.startswith("grail inspect: ") and message in error, error


def test_a_folder_that_is_no_run_is_exit_2_and_stays_absent(tmp_path, capsys):
    folder = tmp_path / "nothing"
    status, _, err = _inspect(capsys, str(folder))
    assert status == EXIT_BAD_INPUT and f"grail inspect: {folder}: not a run folder" in err
    assert not folder.exists()


def _listing(folder) -> dict[str, tuple[int, int]]:
    """Every file of the folder but its lock (which a command rewrites with its pid): size and mtime."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def test_inspecting_writes_nothing_into_the_run(run, capsys):
    before = _listing(run)
    for argv in (["--limit", "1"], ["--what", "probe", "--limit", "1"], ["--what", "pools"],
                 ["--model", "base", "--scope", "holdout", "--json"], ["--model", "nope"]):
        _inspect(capsys, str(run), *argv)
    assert _listing(run) == before
