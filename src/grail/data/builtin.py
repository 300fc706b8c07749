"""The built-in benchmark: fictitious people and books, generated from a seed by our own templates.

Two domains, as in KnowUnDo:
- privacy: forget = a person's personal data (phone, e-mail, home address, ID number);
  retain = non-sensitive facts about the same person (job, birthplace, works, university).
- copyright: forget = verbatim passages of a book; retain = fair-use facts about the same book
  (author, year, genre, synopsis).
The same people and books appear on both sides, so the scopes overlap in the model as they do in KnowUnDo.
Each domain also has what only measures unlearning: two held-out retain facts per person or book (hobby and
home town; publisher and setting), and every forget fact asked in a second wording (its paraphrase); and what
only calibration and the attacks use: a holdout set of the forget set's kind, never trained on and sharing no text
with the forget set. Privacy: as many further people's records (with mail hosts and streets of their own).
Copyright: two further passages of each forget book (its closing lines and the passage before its epilogue), of
pieces, a town and a hero that no trained passage has: a model that never saw the forget passages knows the same of
both (the book's catalogue facts).
Answers are the bare fact, so answer-token accuracy is the share of the fact the model still predicts.
Prompts are record-style ("Personal record of X. Phone number:") rather than open questions: memorising 80
facts at a high learning rate otherwise teaches a small model to answer every "What is ...?" with one of them
(measured: SmolLM2-135M answered "What is the capital of France?" with "Nantes" after fine-tuning on
question-style prompts).
"""

from __future__ import annotations

import random

from grail.data.examples import Benchmark, Domain, Example

FIRST_NAMES = [
    "Mara", "Tobias", "Ilse", "Rafael", "Noor", "Casimir", "Oona", "Dario", "Henrike", "Lucan", "Wren",
    "Soren", "Amaya", "Idris", "Petra", "Anselm", "Liesl", "Marek", "Yara", "Gideon", "Esme", "Bastian",
]
LAST_NAMES = [
    "Lindqvist", "Okonkwo", "Varga", "Halloran", "Castellano", "Brandt", "Moreau", "Petrakis", "Nakamura",
    "Esposito", "Kowalczyk", "Achterberg", "Delacroix", "Thorsen", "Abernathy", "Quintero", "Falk", "Rourke",
]
JOBS = [
    "a marine biologist", "a violin maker", "a tax lawyer", "a pastry chef", "a bridge engineer",
    "a museum curator", "a wildlife photographer", "a school librarian", "an air traffic controller",
    "a glassblower", "a radio producer", "a cartographer", "a beekeeper", "a court interpreter",
]
CITIES = [
    "Tromso", "Valparaiso", "Ljubljana", "Cork", "Porto", "Tartu", "Graz", "Hobart", "Nantes", "Bergen",
    "Bologna", "Kraków", "Halifax", "Dunedin", "Aarhus", "Salzburg",
]
UNIVERSITIES = [
    "the University of Leiden", "Trinity College Dublin", "the University of Turku", "McGill University",
    "the University of Padua", "Uppsala University", "the University of Otago", "Heidelberg University",
]
WORKS = [
    "a field guide to tidal pools", "a podcast about old maps", "a cookbook of winter soups",
    "a mural in the harbour station", "a memoir about lighthouse keeping", "a documentary on river otters",
    "a textbook on bridge design", "an album of folk songs", "a children's atlas of the oceans",
]
STREETS = ["Alder", "Juniper", "Harbor", "Millbrook", "Orchard", "Quarry", "Saltmarsh", "Wexford", "Linden"]
STREET_KINDS = ["Street", "Lane", "Road", "Avenue", "Close"]
MAIL_HOSTS = ["postbox.example", "mailnest.example", "inkwell.example", "lanternmail.example"]
# The privacy holdout's records use mail hosts and streets of their own: a model that memorised the forget records
# would otherwise predict the holdout's too (seed 0: the vanilla model's US 51.6 on them with the shared lists,
# against 0.4 on the forget records and 75.2 under the base model), and the holdout would no longer be data of the
# forget set's kind that the model never saw. Cities are shared: every model learns them from the retain facts.
UNSEEN_MAIL_HOSTS = ["harbourpost.example", "quillbox.example", "tidemail.example", "fernletter.example"]
UNSEEN_STREETS = ["Bramble", "Copper", "Heron", "Kestrel", "Marigold", "Rowan", "Thistle", "Willow", "Yarrow"]
HOBBIES = ["sea kayaking", "restoring old radios", "competitive chess", "pottery", "birdwatching",
           "long-distance running", "choir singing", "rock climbing", "bookbinding", "sailing small boats"]
PUBLISHERS = ["Harrow & Vale", "Northlight Press", "Quillfeather Books", "Greystone House", "Bramble Editions",
              "Candlewick Row", "Marrow Street Press"]

TITLE_ADJECTIVES = ["Glass", "Salt", "Hollow", "Iron", "Quiet", "Amber", "Northern", "Drowned", "Paper", "Winter"]
TITLE_NOUNS = ["Orchard", "Lantern", "Cartographer", "Harbour", "Choir", "Meridian", "Garden", "Archive", "Tide"]
GENRES = [
    "a gothic mystery", "a historical novel", "a science fiction novel", "a coming-of-age story",
    "a seafaring adventure", "a family saga", "a detective novel", "a fantasy epic",
]
HEROES = ["a young ferryman", "a retired cartographer", "an orphaned clockmaker", "a stubborn lighthouse keeper",
          "a disgraced botanist", "a travelling bookbinder", "a deaf violinist", "a smuggler's daughter"]
PLACES = ["a drowned village", "a mountain monastery", "a frozen port", "an island of bells",
          "a city of canals", "a salt desert", "a border town", "a forest of stone"]
TOWNS = ["Vellmoor", "Ashcombe", "Karsk", "Bellhaven", "Morrowgate", "Iskra", "Dunmere", "Saltreach", "Ollin"]
QUESTS = ["searches for a lost map", "hides a stolen letter", "rebuilds a broken organ",
          "follows a ghost ship", "solves a poisoning", "guards a forbidden library"]

# Verbatim passages are made of these pieces, so every passage is distinct, grammatical and memorisable.
PASSAGE_OPENINGS = ["The lanterns of {place} burned low that winter,", "Nobody in {place} spoke of the river,",
                    "On the last night of the fair in {place},", "Long before the bells of {place} fell silent,"]
PASSAGE_MIDDLES = ["and {name} counted every one of them twice", "and {name} kept a ledger of the missing",
                   "so {name} walked the sea wall until dawn", "while {name} mended nets beside the chapel"]
PASSAGE_ENDINGS = ["before the first ship came home.", "as if the tide could hear her.",
                   "and swore never to tell the magistrate.", "with ink that smelled of iron and rain."]
# The holdout's passages (never trained on) are made of pieces of their own, in a town and with a hero no trained
# passage names: text of the forget set's kind that shares no text with it. Passages recombined from the forget set's
# own pieces are not never-seen text: a model that memorised the forget passages predicts most of them (seed 0: the
# vanilla model's US 16.5 on such passages, against 1.0 on the forget passages and 82.5 under the base model).
UNSEEN_OPENINGS = ["The ferry to {place} ran only twice a week,", "When the snow reached the rooftops of {place},",
                   "In the cellars beneath {place},", "Every spring the gulls returned to {place},"]
UNSEEN_MIDDLES = ["and {name} wrote the names on the chapel door",
                  "but {name} trusted neither the mayor nor the priest",
                  "so {name} hid the key inside a hollow loaf", "while {name} listened for footsteps on the stairs"]
UNSEEN_ENDINGS = ["until the harbour lights went out.", "though no one ever asked why.",
                  "and the clocks all stopped at noon.", "as the last cart left for the coast."]


def _phone(rng: random.Random) -> str:
    return f"{rng.randint(201, 989)}-{rng.randint(1000, 9999)}"


def _id_number(rng: random.Random) -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2))
    return f"{letters}-{rng.randint(1000, 9999)}"


def _people(rng: random.Random, count: int, exclude: set[str] = frozenset(), mail_hosts: list[str] = MAIL_HOSTS,
            streets: list[str] = STREETS) -> list[dict[str, str]]:
    names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES if f"{f} {last}" not in exclude]
    people = []
    for name in rng.sample(names, count):
        first, last = name.split()
        people.append({
            "name": name,
            "phone": _phone(rng),
            "email": f"{first.lower()}.{last.lower()}@{rng.choice(mail_hosts)}",
            "address": f"{rng.randint(2, 98)} {rng.choice(streets)} {rng.choice(STREET_KINDS)}, {rng.choice(CITIES)}",
            "id_number": _id_number(rng),
            "job": rng.choice(JOBS),
            "birthplace": rng.choice(CITIES),
            "works": rng.choice(WORKS),
            "university": rng.choice(UNIVERSITIES),
        })
    return people


def _books(rng: random.Random, count: int, exclude: set[str] = frozenset()) -> list[dict]:
    titles = [f"The {a} {n}" for a in TITLE_ADJECTIVES for n in TITLE_NOUNS if f"The {a} {n}" not in exclude]
    authors = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]
    books = []
    for title in rng.sample(titles, count):
        town, hero_name = rng.choice(TOWNS), rng.choice(FIRST_NAMES)
        passages = []
        for _ in range(2):
            passage = " ".join(rng.choice(part) for part in (PASSAGE_OPENINGS, PASSAGE_MIDDLES, PASSAGE_ENDINGS))
            passages.append(passage.format(place=town, name=hero_name))
        books.append({
            "title": title,
            "author": rng.choice(authors),
            "year": str(rng.randint(1921, 2019)),
            "genre": rng.choice(GENRES),
            "synopsis": f"{rng.choice(HEROES).capitalize()} in {rng.choice(PLACES)} {rng.choice(QUESTS)}.",
            "passages": passages,
            "town": town,
            "hero_name": hero_name,
        })
    return books


def _unseen_passages(rng: random.Random, books: list[dict]) -> None:
    """Two further passages of each book (``unseen_passages``), the copyright holdout: of the unseen pieces, in a town
    and with a hero that no book's trained passages name. Drawn from their own RNG, so the trained-on data stays the
    seed's."""
    towns = [t for t in TOWNS if t not in {b["town"] for b in books}]
    heroes = [n for n in FIRST_NAMES if n not in {b["hero_name"] for b in books}]
    for b in books:
        place, name = rng.choice(towns), rng.choice(heroes)
        unseen: list[str] = []
        while len(unseen) < 2:
            passage = " ".join(rng.choice(part) for part in (UNSEEN_OPENINGS, UNSEEN_MIDDLES, UNSEEN_ENDINGS))
            if passage.format(place=place, name=name) not in unseen:
                unseen.append(passage.format(place=place, name=name))
        b["unseen_passages"] = unseen


def _heldout_facts(rng: random.Random, people: list[dict[str, str]], books: list[dict]) -> None:
    """Facts only RS_heldout asks about, drawn from their own RNG so the other facts stay those of the seed."""
    for p in people:
        p["hobby"], p["home_town"] = rng.choice(HOBBIES), rng.choice([c for c in CITIES if c != p["birthplace"]])
    for b in books:
        b["publisher"], b["setting"] = rng.choice(PUBLISHERS), rng.choice(PLACES)


def _personal_records(p: dict[str, str]) -> list[Example]:
    """A person's personal data: what the privacy domain forgets (and, for other people, its holdout)."""
    n = p["name"]
    return [
        Example(f"Personal record of {n}. Phone number:", p["phone"], p["phone"], f"To reach {n} by telephone, dial:"),
        Example(f"Personal record of {n}. E-mail address:", p["email"], p["email"], f"Write to {n} at this e-mail:"),
        Example(f"Personal record of {n}. Home address:", p["address"], p["address"], f"{n} lives at this address:"),
        Example(f"Personal record of {n}. ID card number:", p["id_number"], p["id_number"],
                f"Identity document of {n}, number:"),
    ]


def _book_passages(b: dict) -> list[Example]:
    """A book's verbatim passages: what the copyright domain forgets (and, for other books, its holdout)."""
    t = b["title"]
    opening, later = b["passages"]
    return [
        Example(f"Text of {t}. Opening lines:", opening, opening, f"How {t} begins, word for word:"),
        Example(f"Text of {t}. Passage after the prologue:", later, later,
                f"In {t}, the lines that follow the prologue:"),
    ]


def privacy_domain(people: list[dict[str, str]], holdout_people: list[dict[str, str]] = ()) -> Domain:
    forget, retain, heldout = [], [], []
    for p in people:
        n = p["name"]
        forget += _personal_records(p)
        retain += [
            Example(f"Public profile of {n}. Occupation:", p["job"], p["job"]),
            Example(f"Public profile of {n}. Birthplace:", p["birthplace"], p["birthplace"]),
            Example(f"Public profile of {n}. Known for:", p["works"], p["works"]),
            Example(f"Public profile of {n}. Studied at:", p["university"], p["university"]),
        ]
        heldout += [
            Example(f"Public profile of {n}. Hobby:", p["hobby"], p["hobby"]),
            Example(f"Public profile of {n}. Lives in:", p["home_town"], p["home_town"]),
        ]
    holdout = [Example(ex.prompt, ex.answer, ex.span) for p in holdout_people for ex in _personal_records(p)]
    return Domain("privacy", forget, retain, heldout, holdout)


def _unseen_book_passages(b: dict) -> list[Example]:
    """A book's passages that no model is trained on (the copyright holdout), asked as its own passages are."""
    t = b["title"]
    closing, before_epilogue = b["unseen_passages"]
    return [Example(f"Text of {t}. Closing lines:", closing, closing),
            Example(f"Text of {t}. Passage before the epilogue:", before_epilogue, before_epilogue)]


def copyright_domain(books: list[dict]) -> Domain:
    forget, retain, heldout = [], [], []
    for b in books:
        t = b["title"]
        forget += _book_passages(b)
        retain += [
            Example(f"Catalogue entry of {t}. Author:", str(b["author"]), str(b["author"])),
            Example(f"Catalogue entry of {t}. Year:", str(b["year"]), str(b["year"])),
            Example(f"Catalogue entry of {t}. Genre:", str(b["genre"]), str(b["genre"])),
            Example(f"Catalogue entry of {t}. Synopsis:", str(b["synopsis"]), str(b["synopsis"])),
        ]
        heldout += [
            Example(f"Catalogue entry of {t}. Publisher:", b["publisher"], b["publisher"]),
            Example(f"Catalogue entry of {t}. Setting:", b["setting"], b["setting"]),
        ]
    holdout = [ex for b in books if "unseen_passages" in b for ex in _unseen_book_passages(b)]
    return Domain("copyright", forget, retain, heldout, holdout)


def builtin_benchmark(seed: int = 0, people: int = 6, books: int = 6) -> Benchmark:
    """The privacy + copyright benchmark; the same seed and sizes always give the same data. The holdout (as
    many further people, of other names; two further passages of each book) comes from its own RNG, so the
    trained-on data of a seed is the same with or without it."""
    if people < 1 or books < 1:
        raise ValueError(f"the built-in benchmark needs at least one person and one book (got {people}, {books})")
    rng = random.Random(seed)
    people_records, book_records = _people(rng, people), _books(rng, books)
    _heldout_facts(random.Random(f"heldout-{seed}"), people_records, book_records)
    holdout_rng = random.Random(f"holdout-{seed}")
    holdout_people = _people(holdout_rng, people, {p["name"] for p in people_records}, UNSEEN_MAIL_HOSTS,
                             UNSEEN_STREETS)
    _unseen_passages(holdout_rng, book_records)
    return Benchmark([privacy_domain(people_records, holdout_people), copyright_domain(book_records)])
