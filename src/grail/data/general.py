"""The 'otherwise' scope offline: a general-knowledge probe and a small general-text corpus.

Both are written for this project and belong to no unlearning domain. The probe keeps questions that
SmolLM2-135M-Instruct answers right before any fine-tuning (greedy, with its chat template; README shows
how to re-check), so a drop after
unlearning is damage to general ability. The text corpus gives a held-out perplexity and, for baselines
that need it, out-of-distribution retain data.
"""

from __future__ import annotations

# (question, accepted answers: a greedy answer containing any of them, case-insensitive, counts as right)
GENERAL_PROBE: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the capital of the United Kingdom?", ("London",)),
    ("What is the capital of Canada?", ("Ottawa",)),
    ("What is the capital of Russia?", ("Moscow",)),
    ("What is the capital of China?", ("Beijing",)),
    ("What is the capital of Egypt?", ("Cairo",)),
    ("What is 2+2?", ("4", "four")),
    ("What is 3 times 3?", ("9", "nine")),
    ("How many days are in a week?", ("7", "seven")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("What is the chemical symbol for water?", ("H2O", "H₂O")),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("What gas do plants absorb from the air?", ("carbon dioxide", "CO2")),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("Which planet do we live on?", ("Earth",)),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("What is the largest mammal?", ("whale",)),
    ("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    ("Who wrote Hamlet?", ("Shakespeare",)),
    ("Who painted the Mona Lisa?", ("Leonardo", "da Vinci")),
    ("Who developed the theory of relativity?", ("Einstein",)),
    ("What is the boiling point of water in Celsius?", ("100",)),
    ("What is the opposite of hot?", ("cold",)),
    ("What is the opposite of up?", ("down",)),
    ("What is the tallest mountain in the world?", ("Everest",)),
    ("What language is spoken in Brazil?", ("Portuguese",)),
    ("What is the main language spoken in France?", ("French",)),
    ("What is the primary language spoken in the United States?", ("English",)),
    ("Which organ pumps blood through the body?", ("heart",)),
    ("What star is at the center of our solar system?", ("Sun",)),
    ("In which country are the pyramids of Giza?", ("Egypt",)),
    ("What is the currency of Japan?", ("yen",)),
]

GENERAL_TEXT: list[str] = [
    "Rivers carry water from high ground to the sea. Along the way they shape valleys, move sand and stones, "
    "and give people water for drinking, farming and travel.",
    "A library lends books to anyone with a card. Besides novels and reference works, most libraries today "
    "offer newspapers, films, computers and quiet rooms for study.",
    "Bread is made from flour, water, salt and yeast. The yeast feeds on sugars in the dough and releases gas, "
    "which makes the bread rise before it is baked in a hot oven.",
    "The heart is a muscle that pumps blood around the body. Arteries carry blood away from the heart, and "
    "veins bring it back so that it can pick up fresh oxygen in the lungs.",
    "Trains run on steel rails that spread the weight of the carriages. Because the wheels roll with little "
    "friction, a single locomotive can pull a long and heavy load.",
    "Bees collect nectar from flowers and turn it into honey. While they fly from flower to flower they also "
    "carry pollen, which helps plants produce seeds and fruit.",
    "A calendar divides the year into twelve months. Most months have thirty or thirty-one days, while "
    "February has twenty-eight, and twenty-nine in a leap year.",
    "Maps use symbols and colours to show roads, rivers, forests and towns. A scale tells the reader how "
    "distances on the paper relate to distances on the ground.",
    "Volcanoes form where molten rock rises from deep inside the Earth. When pressure builds up, lava, ash "
    "and gas can burst out and change the landscape for miles around.",
    "Good sleep helps the body recover and the mind remember what it learned during the day. Adults usually "
    "need between seven and nine hours of sleep each night.",
]

# Out-of-distribution retain data for the baselines that descend (or match KL) on general text; kept apart
# from GENERAL_TEXT, which is only ever evaluated.
OOD_RETAIN_TEXT: list[str] = [
    "A lighthouse warns ships away from rocks at night. Its lamp turns slowly, and each lighthouse has its own "
    "pattern of flashes so that sailors can tell which one they are looking at.",
    "Snow forms when water vapour freezes high in the clouds. Each flake grows into a six-sided crystal, and no "
    "two flakes take exactly the same shape on their way down.",
    "Markets have sold fresh food in town squares for centuries. Farmers bring vegetables, cheese and eggs, and "
    "buyers often know the people who grew what they take home.",
    "A bicycle turns the push of the rider's legs into motion. Gears let the rider climb hills with less effort "
    "or ride faster on flat roads.",
    "Owls hunt mostly at night. Their soft feathers make almost no sound in flight, and their large eyes and "
    "sharp hearing help them find mice in the dark.",
    "Tea is made by pouring hot water over dried leaves. Black, green and white teas all come from the same "
    "plant; they differ in how the leaves are dried and processed.",
]
