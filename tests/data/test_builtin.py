import re

from grail.data.builtin import builtin_benchmark


def test_builtin_is_deterministic_and_sized():
    a, b = builtin_benchmark(seed=3, people=4, books=3), builtin_benchmark(seed=3, people=4, books=3)
    assert a == b
    assert builtin_benchmark(seed=4, people=4, books=3) != a
    privacy, copyright = a.domains
    assert (len(privacy.forget), len(privacy.retain)) == (16, 16)
    assert (len(copyright.forget), len(copyright.retain)) == (6, 12)


def test_scopes_overlap_on_the_same_entities_and_spans_are_in_answers():
    bench = builtin_benchmark(seed=0, people=3, books=2)
    for domain in bench.domains:
        # every forget prompt's entity (person or book) also appears in some retain prompt
        pattern = r"The [A-Z]\w+ [A-Z]\w+" if domain.name == "copyright" else r"(?<=of )[A-Z]\w+ [A-Z]\w+"
        entities = {re.search(pattern, ex.prompt).group(0) for ex in domain.forget}
        assert len(entities) == (2 if domain.name == "copyright" else 3)
        for entity in entities:
            assert any(entity in ex.prompt for ex in domain.retain), entity
        for ex in domain.forget + domain.retain:
            assert ex.span and ex.span in ex.answer


def test_heldout_facts_and_paraphrases_are_new_to_unlearning():
    bench = builtin_benchmark(seed=0, people=3, books=2)
    for domain in bench.domains:
        seen_prompts = {ex.prompt for ex in domain.forget + domain.retain}
        assert len(domain.retain_heldout) == 2 * (3 if domain.name == "privacy" else 2)
        assert not seen_prompts & {ex.prompt for ex in domain.retain_heldout}
        paraphrased = domain.forget_paraphrases()
        assert len(paraphrased) == len(domain.forget)
        for original, asked in zip(domain.forget, paraphrased):
            assert asked.prompt not in seen_prompts and asked.answer == original.answer
    # the facts unlearning sees are those of the seed, whatever held-out facts are drawn beside them
    assert [ex.answer for ex in bench.domains[0].forget][:2] == [
        ex.answer for ex in builtin_benchmark(seed=0, people=3, books=2).domains[0].forget][:2]


def test_holdout_is_of_the_forget_kind_and_shares_no_text_with_what_trains():
    """Privacy: the records of people no set mentions, at mail hosts and streets no trained record has. Copyright:
    further passages of the forget books themselves, asked as their passages are, of pieces and names no trained
    passage has: a model that learned the books' catalogue entries but no passage cannot tell them from the forget
    passages, and one that memorised the forget passages has learned nothing of them."""
    bench = builtin_benchmark(seed=0, people=3, books=2)
    privacy, copyright_ = bench.domains
    assert len(privacy.holdout) == len(privacy.forget) and len(copyright_.holdout) == len(copyright_.forget)
    known_text = " ".join(ex.prompt + " " + ex.answer for domain in bench.domains
                          for name in ("forget", "retain", "retain_heldout") for ex in domain.scope(name))
    for example in privacy.holdout:
        subject = example.prompt.split(". ")[0].removeprefix("Personal record of ")
        assert subject not in known_text and example.paraphrase is None
    assert {e.prompt.split(". ")[1] for e in privacy.holdout} == {e.prompt.split(". ")[1] for e in privacy.forget}
    hosts = {e.answer.split("@")[1] for e in privacy.holdout if "@" in e.answer}
    streets = {e.answer.split()[1] for e in privacy.holdout if e.prompt.endswith("Home address:")}
    assert hosts and streets and not any(word in known_text for word in hosts | streets)
    assert {e.prompt.split(". ")[0] for e in copyright_.holdout} == {e.prompt.split(". ")[0] for e in copyright_.forget}
    for example in copyright_.holdout:
        clauses = example.answer.rstrip(".").split(", ")
        assert all(clause not in known_text for clause in clauses) and example.paraphrase is None
        names = [word.strip(",.") for word in example.answer.split()[1:] if word[0].isupper()]
        assert names and not any(name in e.answer for name in names for e in copyright_.forget)
    assert len({e.answer for e in copyright_.holdout}) == len(copyright_.holdout)
    # the holdout draws from its own RNG: the trained-on data of a seed does not change with it
    assert bench.to_jsonl(trained_only=True) == builtin_benchmark(seed=0, people=3, books=2).to_jsonl(trained_only=True)
