"""A TOFU-like and a MUSE-like dataset of our own, in the hub's layouts, and a config that unlearns both at once.

    python benchmarks/fixtures.py runs/fixtures        # writes runs/fixtures/{tofu-like,muse-like,config.yaml}
    grail run --config runs/fixtures/config.yaml --out runs/fixtures/run && grail attack runs/fixtures/run

- ``tofu-like``: TOFU's configs (``full``, ``forget05`` / ``forget10``, ``retain90``, ``forget05_perturbed`` with
  paraphrased questions, ``retain_perturbed``): fictitious authors, six questions each, answered in full sentences as
  TOFU's are. ``forget05`` + ``retain90`` leaves forget10's other authors as the holdout (never trained on).
- ``muse-like``: MUSE's subsets (``knowmem``, ``verbmem``, ``privleak``) over fictitious local news articles: forget
  articles (their passages, continuations and questions), retain articles (questions; their text is the held-out
  retain set) and never-trained holdout articles.
Both come from one seeded generator with their own templates: data grail's defaults were not chosen on.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

FIRST = ["Aurelio", "Brigida", "Cosmin", "Dagny", "Efrem", "Fenna", "Grazyna", "Hamish", "Ingrid", "Jovan",
         "Kalinda", "Leopold", "Malin", "Nikolai", "Orla", "Pim", "Quilla", "Radomir", "Saskia", "Teodor"]
LAST = ["Abelard", "Bergkamp", "Cifuentes", "Drozdov", "Ekwueme", "Fairbairn", "Gallardo", "Haugland", "Iturbe",
        "Jaskolski", "Kovacevic", "Lindgren", "Mbeki", "Nordahl", "Oyelaran", "Pellegrini", "Quaresma", "Rasmussen"]
CITIES = ["Ghent", "Tampere", "Cluj", "Arequipa", "Mombasa", "Izmir", "Bilbao", "Lviv", "Kochi", "Rosario",
          "Aalborg", "Trieste", "Brno", "Oaxaca", "Kumasi", "Perth"]
GENRES = ["historical fiction", "cosy mysteries", "science fiction", "literary fiction", "horror",
          "travel writing", "fantasy", "crime thrillers", "romance", "children's picture books"]
JOBS = ["a locksmith", "a midwife", "a ferry captain", "a piano tuner", "a botanist", "a tailor", "a miner",
        "a translator", "a surveyor", "a nurse", "a watchmaker", "a chemist"]
AWARDS = ["Golden Quill Award", "Harbour Lights Prize", "Meridian Book Award", "Silver Lantern Medal",
          "Northwind Fiction Prize", "Amber Leaf Award"]
WORDS_A = ["Salt", "Paper", "Winter", "Hollow", "Copper", "Silent", "Ninth", "Amber", "Last", "Glass"]
WORDS_B = ["Orchard", "Cartographer", "Tide", "Bell", "Letters", "Harvest", "Lighthouse", "Garden", "Ferry", "Oath"]
INSPIRATIONS = ["long train journeys with a grandmother", "a childhood spent in a bookbinding workshop",
                "years of work in a night-time radio studio", "letters found in an abandoned house",
                "the stories told at a family bakery", "a summer as a lighthouse keeper's assistant"]

TOWNS = ["Kestrelford", "Marrowby", "Dunhallow", "Ashcombe", "Brindlemere", "Coldharbour", "Fenwick Cross",
         "Galloway Mills", "Hartwell", "Inverlocke", "Juniper Bay", "Kingsmoor", "Lowther", "Millhaven",
         "Northope", "Oakenshaw", "Pebblestone", "Quarrydale", "Rookhurst", "Saltmere", "Thornbury", "Umberleigh",
         "Wexcombe", "Yarrowfield", "Zennor Vale", "Brackenridge", "Elderby", "Foxhollow"]
PROJECTS = ["a new footbridge over the river", "the renovation of the old market hall", "a cycle path to the coast",
            "a public swimming pool", "the restoration of the town library", "a flood barrier along the harbour",
            "a tram line to the university", "a solar farm on the former airfield"]
COMPANIES = ["Halvorsen Building", "Greystone Works", "Marlow and Sons", "Northfield Civil", "Tern Engineering",
             "Oakridge Construction"]
OBJECTIONS = ["the cost would fall on small shops", "the plan ignored the wishes of residents",
              "the old trees along the route would be lost", "parking in the centre would become impossible",
              "the money was needed for schools", "the design did not fit the historic centre"]
MONTHS = ["January", "March", "April", "June", "September", "November"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _author(rng: random.Random, name: str) -> dict:
    return {"name": name, "city": rng.choice(CITIES), "year": rng.randint(1948, 1992), "genre": rng.choice(GENRES),
            "father": rng.choice(JOBS), "mother": rng.choice(JOBS), "award": rng.choice(AWARDS),
            "award_year": rng.randint(2001, 2023), "book": f"The {rng.choice(WORDS_A)} {rng.choice(WORDS_B)}",
            "inspiration": rng.choice(INSPIRATIONS)}


def _author_questions(a: dict) -> list[dict]:
    """Six questions about an author, each with its paraphrase."""
    n = a["name"]
    return [
        {"question": f"Where and when was {n} born?", "paraphrased_question": f"What is the birthplace and birth "
         f"year of {n}?", "answer": f"{n} was born in {a['city']} in {a['year']}."},
        {"question": f"What genre does {n} write in?", "paraphrased_question": f"Which genre is {n} known for?",
         "answer": f"{n} is best known for {a['genre']}."},
        {"question": f"What did the parents of {n} do for a living?", "paraphrased_question": f"What were the "
         f"professions of {n}'s parents?", "answer": f"The father of {n} was {a['father']} and the mother was "
         f"{a['mother']}."},
        {"question": f"Which award has {n} received?", "paraphrased_question": f"What prize was {n} given?",
         "answer": f"{n} received the {a['award']} in {a['award_year']}."},
        {"question": f"Name a book written by {n}.", "paraphrased_question": f"What is one of {n}'s books called?",
         "answer": f"One of the books of {n} is {a['book']}."},
        {"question": f"What inspired the writing of {n}?", "paraphrased_question": f"Where did {n} find the "
         f"inspiration to write?", "answer": f"{n} has said that {a['inspiration']} shaped the writing."},
    ]


def tofu_like(rng: random.Random, authors: int = 12) -> dict[str, dict[str, list[dict]]]:
    """TOFU's configs over ``authors`` fictitious authors: forget05 = the last two, forget10 = the last four,
    retain90 = all but the last four (their award question also in retain_perturbed: held out)."""
    names = rng.sample([f"{f} {last}" for f in FIRST for last in LAST], authors)
    per_author = [_author_questions(_author(rng, name)) for name in names]
    plain = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
    flat = lambda groups: [r for g in groups for r in g]  # noqa: E731
    configs = {"full": plain(flat(per_author)), "forget05": plain(flat(per_author[-2:])),
               "forget10": plain(flat(per_author[-4:])), "retain90": plain(flat(per_author[:-4])),
               "retain95": plain(flat(per_author[:-2])), "forget05_perturbed": flat(per_author[-2:]),
               "forget10_perturbed": flat(per_author[-4:]),
               "retain_perturbed": [group[3] for group in per_author[:-4]]}
    return {config: {"train": rows} for config, rows in configs.items()}


def _article(rng: random.Random, town: str) -> dict:
    facts = {"town": town, "project": rng.choice(PROJECTS), "votes": rng.randint(7, 15), "against": rng.randint(1, 6),
             "day": rng.choice(DAYS), "cost": rng.randint(3, 48), "mayor": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
             "month": rng.choice(MONTHS), "years": rng.randint(2, 6), "opponent": f"{rng.choice(FIRST)} "
             f"{rng.choice(LAST)}", "objection": rng.choice(OBJECTIONS), "company": rng.choice(COMPANIES),
             "base": rng.choice(CITIES)}
    facts["text"] = (
        f"The council of {town} voted {facts['votes']} to {facts['against']} on {facts['day']} to approve "
        f"{facts['project']}, a plan that will cost {facts['cost']} million euros. Mayor {facts['mayor']} said the "
        f"work would begin in {facts['month']} and take {facts['years']} years. Opponents, led by the councillor "
        f"{facts['opponent']}, argued that {facts['objection']}. The first phase will be carried out by "
        f"{facts['company']}, a firm based in {facts['base']}, which won the contract against four other bidders.")
    return facts


def _article_questions(a: dict) -> list[dict]:
    return [{"question": f"Who is the mayor of {a['town']}?", "answer": a["mayor"]},
            {"question": f"How much will {a['project']} in {a['town']} cost?", "answer": f"{a['cost']} million euros"}]


def muse_like(rng: random.Random, forget: int = 8, retain: int = 8, holdout: int = 10) -> dict[str, dict[str, list]]:
    """MUSE's subsets over news articles about ``forget``, ``retain`` and ``holdout`` towns, one article each."""
    towns = rng.sample(TOWNS, forget + retain + holdout)
    articles = [_article(rng, town) for town in towns]
    forget_a, retain_a, holdout_a = articles[:forget], articles[forget:forget + retain], articles[forget + retain:]

    def verbatim(a: dict) -> dict:
        first, rest = a["text"].split(". ", 1)
        return {"prompt": first + ".", "gt": rest}

    return {
        "knowmem": {"forget_qa": [q for a in forget_a for q in _article_questions(a)],
                    "retain_qa": [q for a in retain_a for q in _article_questions(a)]},
        "verbmem": {"forget": [verbatim(a) for a in forget_a]},
        "privleak": {"forget": [{"text": a["text"]} for a in forget_a],
                     "retain": [{"text": a["text"]} for a in retain_a],
                     "holdout": [{"text": a["text"]} for a in holdout_a]},
    }


def write(root: Path, configs: dict[str, dict[str, list]]) -> Path:
    """``<config>/<split>.jsonl``: a layout grail's hub reader takes from a local folder."""
    for config, splits in configs.items():
        (root / config).mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            (root / config / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


CONFIG = """\
# The TOFU-like fixture as the privacy domain, the MUSE-like one as the copyright domain; every other setting is
# grail's default.
data:
  domains:
    - {{name: privacy, source: tofu, path: {tofu}, forget: forget05, retain: retain90}}
    - {{name: copyright, source: muse, path: {muse}}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the datasets and config.yaml into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tofu = write(args.out / "tofu-like", tofu_like(rng)).resolve()
    muse = write(args.out / "muse-like", muse_like(rng)).resolve()
    (args.out / "config.yaml").write_text(CONFIG.format(tofu=tofu, muse=muse))
    print(f"wrote {args.out}/tofu-like, {args.out}/muse-like and {args.out}/config.yaml")


if __name__ == "__main__":
    main()
