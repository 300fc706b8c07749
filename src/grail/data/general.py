"""The 'otherwise' scope offline: a general-knowledge probe, general-text corpora and replay instructions.

All lists are written for this project and belong to no unlearning domain. What measures a model never trains
it: the evaluation lists (GENERAL_PROBE, GENERAL_TEXT, UTILITY_CHECK_TEXT) and the training lists
(OOD_RETAIN_TEXT, REPLAY_INSTRUCTIONS) share no paragraph, no topic and no probe question.

- GENERAL_PROBE keeps questions that SmolLM2-135M-Instruct answers right before any fine-tuning (greedy, with
  its chat template; README shows how to re-check), so a drop after unlearning is damage to general ability.
  Evaluation only.
- GENERAL_TEXT gives the reported held-out general-text perplexity. Evaluation only.
- UTILITY_CHECK_TEXT is a separate validation set for utility budgets (early stopping) during unlearning;
  never trained on, and never part of the reported general-text perplexity.
- OOD_RETAIN_TEXT is out-of-distribution retain data for the baselines that need it (trained on).
- REPLAY_INSTRUCTIONS are short everyday instructions; the base model's own answers to them become general
  replay data (self-generated rehearsal) for fine-tuning and general retain data during unlearning.
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
    "A rainbow appears when sunlight shines through falling raindrops while the sun is behind the viewer. Each "
    "drop bends the light and splits it into bands of colour, from red on the outside of the arc to violet on "
    "the inside.",
    "Lightning is a giant electric spark that jumps between clouds or between a cloud and the ground. It heats "
    "the air so quickly that the air expands with a bang, which we hear as thunder. Because light travels faster "
    "than sound, the flash comes before the rumble.",
    "Fog is a cloud that forms close to the ground. It often appears after calm, clear nights, when the land "
    "cools and the damp air above it turns into tiny droplets that hang in the air until the morning warms them "
    "away.",
    "Tides are the regular rise and fall of the sea along the coast. They are caused mainly by the pull of the "
    "Moon's gravity, and most shores see two high tides and two low tides in a little more than a day.",
    "Coral reefs are built by tiny animals that live in warm, shallow seas. Each coral makes a hard skeleton of "
    "limestone, and over many years these skeletons pile up into reefs that shelter fish, crabs, sea turtles and "
    "countless other creatures.",
    "Ants live in large colonies that work together almost like a single animal. A queen lays the eggs, while "
    "worker ants gather food, care for the young and defend the nest. They leave scent trails that lead other "
    "ants to food.",
    "Cacti grow in dry places where rain may not fall for months. Their thick, fleshy stems store water for the "
    "long dry spells, and their leaves have become sharp spines that lose little moisture and keep thirsty "
    "animals away.",
    "A frog begins life as an egg laid in water. The egg hatches into a tadpole, which breathes through gills "
    "and swims with a tail, and over several weeks it grows legs, loses its tail and becomes a frog that can "
    "live on land.",
    "Mushrooms are the fruiting bodies of fungi, most of which live hidden in soil or rotting wood. Fungi break "
    "down dead leaves and logs and return their nutrients to the ground. Some mushrooms are good to eat, but "
    "others are deadly poisonous.",
    "A refrigerator keeps food cool by moving heat from inside the cabinet to the room outside. A fluid called a "
    "refrigerant evaporates in pipes inside, absorbing heat, and is then compressed so that it gives off that "
    "heat through coils at the back.",
    "Soap helps water wash away grease and dirt. One end of each soap molecule is drawn to water and the other "
    "to oil, so soap surrounds small drops of grease and lets them be rinsed off. This is why washing with soap "
    "works better than water alone.",
    "A candle is a stick of wax with a cotton wick through the middle. When the wick is lit, the heat melts the "
    "wax near it, and the liquid wax is drawn up the wick, where it turns to vapour and burns with a steady "
    "flame.",
    "The ancient Romans built thousands of miles of paved roads across their empire. They laid layers of stone, "
    "gravel and sand so that water drained away, and many of these roads stayed in use for centuries after the "
    "empire fell.",
    "In the Middle Ages, castles served as strong homes and fortresses for rulers and their soldiers. Thick "
    "stone walls, towers and moats made them hard to attack, and many castles had a great hall where meals and "
    "gatherings took place.",
    "Windmills have used the power of moving air for many centuries. Their sails turn a shaft that drives "
    "millstones to grind grain or pumps to lift water, and in low-lying lands they helped drain wet fields for "
    "farming.",
    "A magnet attracts iron and a few other metals. Every magnet has a north pole and a south pole; unlike poles "
    "pull towards each other, while like poles push apart. Magnets are found in electric motors, loudspeakers "
    "and many toys.",
    "Sound is a vibration that travels through air, water or solid materials as a wave. When sound strikes a "
    "hard surface such as a cliff or a bare wall, it bounces back, and the reflected sound is heard as an echo.",
    "Glass is made by heating sand with soda and lime until the mixture melts into a thick liquid. As it cools "
    "it hardens without forming crystals, which is why it is clear. Glassmakers blow, press or roll it into "
    "bottles, windows and lenses.",
    "Football, also called soccer, is played by two teams of eleven players. Players move the ball mainly with "
    "their feet and try to send it into the other team's goal, and only the goalkeeper may handle the ball, "
    "inside the penalty area.",
    "Swimming is both a sport and a useful skill for staying safe near water. Common strokes include freestyle, "
    "breaststroke, backstroke and butterfly, and each moves the arms and legs in a different pattern to push the "
    "body through the water.",
    "In tennis, players use rackets to hit a ball over a net into the other side of the court. A player loses "
    "the point by letting the ball bounce twice or by hitting it outside the lines, and matches are divided into "
    "games and sets.",
    "Knitting turns a single strand of yarn into fabric by pulling loops through other loops. Using two needles, "
    "a knitter builds rows of stitches, and simple patterns of knit and purl stitches can make scarves, hats and "
    "warm sweaters.",
    "Pottery is shaped from wet clay, either by hand or on a spinning wheel. Once the piece has dried, it is "
    "fired in a very hot oven called a kiln, which turns the soft clay into hard, lasting ceramic. A glassy "
    "glaze can add colour and make it waterproof.",
    "Rice is a main food for a large share of the world's people. It is usually grown in flooded fields called "
    "paddies, and after the harvest the grains are dried and their husks removed before they are cooked.",
    "Chocolate is made from the seeds of the cacao tree, which grows in warm, rainy regions. The seeds are "
    "fermented, dried and roasted, then ground into a paste that is mixed with sugar, and often milk, to make a "
    "sweet treat.",
    "An airplane flies because its wings are shaped and tilted to push air downward as the plane moves forward. "
    "The air pushes back up on the wings, creating lift, while the engines provide the thrust that keeps the "
    "plane moving fast enough to stay aloft.",
    "Canals are waterways dug by people to carry boats between lakes, rivers and towns. Where the land rises or "
    "falls, locks act like steps of water: gates close behind a boat, and the water level is raised or lowered "
    "until it matches the next stretch.",
    "The human skeleton gives the body its shape and protects soft organs such as the brain and lungs. Bones are "
    "living tissue that can repair themselves after a break, and the joints between them let us bend, twist and "
    "move.",
    "Skin covers and protects the whole body. It keeps out germs, holds in moisture and helps control body "
    "temperature by sweating on warm days. New skin cells form all the time, while old ones flake away from the "
    "surface.",
    "A piano makes sound when its keys move small felt hammers that strike tight metal strings. Long, thick "
    "strings give low notes and short, thin ones give high notes, and pedals let the player sustain or soften "
    "the sound.",
]

# A validation set for utility budgets during unlearning (early stopping): never trained on, and never used for
# the reported general-text perplexity, which is GENERAL_TEXT alone. Topics are apart from every other list here.
UTILITY_CHECK_TEXT: list[str] = [
    "Penguins are birds that cannot fly, but they are excellent divers. Their wings have become stiff flippers, "
    "and a thick layer of fat under tightly packed feathers keeps them warm in the icy waters of the far south.",
    "A pendulum clock keeps time with a weight that swings back and forth on a rod. Each swing takes the same "
    "amount of time, and a set of gears counts the swings and moves the hands around the clock face.",
    "Salt has been gathered from the sea for thousands of years. In shallow ponds along the coast, seawater is "
    "left in the sun and wind until the water evaporates, leaving white crystals that are raked up, washed and "
    "dried.",
    "Caves often form where rainwater, made slightly acidic by the soil, slowly dissolves limestone underground. "
    "Over long ages, dripping water leaves minerals behind that grow into stalactites hanging from the ceiling "
    "and stalagmites rising from the floor.",
    "Olive trees grow well in places with hot, dry summers and mild winters. Their fruit is very bitter when "
    "picked, so olives are soaked in brine before they are eaten, or pressed to make olive oil for cooking.",
    "Suspension bridges hang their roadway from strong steel cables. The main cables run over tall towers and "
    "are anchored firmly in the ground at each end, which lets the bridge cross wide bays and deep gorges.",
    "Basketball is played on a court with a hoop at each end. Players bounce, or dribble, the ball as they move "
    "and score by throwing it through the other team's hoop, while defenders try to block shots and steal the "
    "ball.",
    "The kidneys are a pair of bean-shaped organs that filter the blood. They remove waste and extra water, "
    "which leave the body as urine, and they help keep the right balance of minerals in the body.",
    "A violin has four strings stretched over a hollow wooden body. The player draws a bow strung with horsehair "
    "across the strings and presses them with the fingers of the other hand to change the pitch of each note.",
    "Most paper is made from wood that has been broken down into soft fibres called pulp. The pulp is mixed with "
    "water, spread thin on a screen, pressed and dried, leaving a sheet of fibres tightly tangled together.",
    "A hot air balloon rises because warm air is lighter than the cooler air around it. A burner heats the air "
    "inside the envelope, and the pilot climbs or descends by adding heat or letting the air cool, drifting with "
    "the wind.",
    "Beavers build dams across streams with branches, stones and mud. The dam creates a quiet pond where the "
    "beavers make a lodge with underwater entrances, which keeps them safe from predators and gives them a place "
    "to store food for winter.",
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

# General replay prompts (self-generated rehearsal): the base model's own answers to these become general replay
# data, mixed into fine-tuning and used as general retain data during unlearning, so the model keeps what it could
# do before. Because they are trained on, they stay apart from the evaluation lists: no probe question or its
# answer (no capitals, arithmetic, chemical symbols, planets, oceans, mountains, authors, painters, scientists,
# languages of countries or currencies), and no topic of GENERAL_TEXT, UTILITY_CHECK_TEXT or OOD_RETAIN_TEXT.
REPLAY_INSTRUCTIONS: list[str] = [
    # how-to
    "Describe how to plant a tomato seedling.",
    "How do I fold a fitted sheet neatly?",
    "Explain how to sew a button back onto a shirt.",
    "How should I clean a cast iron pan?",
    "Describe how to repot a houseplant.",
    "How do you tie a square knot?",
    "Explain how to make scrambled eggs.",
    "How can I remove a coffee stain from a carpet?",
    "Describe how to hang a picture frame straight.",
    "How do I start a small compost pile?",
    "Explain how to change a flat tire on a car.",
    "How should I prepare for a long car trip?",
    "Describe how to make a simple fruit salad.",
    "How do you wrap a present neatly?",
    "How can I keep cut flowers fresh longer?",
    "Describe how to set up a tent.",
    "How do I unclog a slow kitchen drain?",
    "Explain how to iron a dress shirt.",
    "How do you make a simple bird feeder?",
    "Describe how to brew a pot of coffee.",
    "How should I store winter clothes during the summer?",
    "Explain how to make a simple vegetable soup.",
    "How do I water a lawn without wasting water?",
    "Describe how to clean a computer keyboard.",
    "How can I organize a messy closet?",
    "Explain how to polish leather shoes.",
    "How do I make a simple household budget?",
    "Describe how to plant tulip bulbs in a garden.",
    "How do you sharpen a kitchen knife?",
    "Explain how to make a pot of oatmeal.",
    "How should I clean a bathroom mirror without streaks?",
    "How do I teach a dog to sit?",
    "What is a good way to store fresh herbs?",
    # describe
    "Describe a quiet morning in a small village.",
    "Describe the smell of a pine forest.",
    "Describe a busy restaurant kitchen at dinnertime.",
    "Describe a typical playground.",
    "Describe the taste of a ripe peach.",
    "Describe what a farmer does in spring.",
    "Describe the inside of a hardware store.",
    "Describe a vegetable garden in midsummer.",
    "Describe a cat waking up from a nap.",
    "Describe the job of a firefighter.",
    "Describe what happens at a child's birthday party.",
    "Describe a picnic in a park.",
    "Describe the feeling of wearing new shoes.",
    "Describe how a dog greets its owner.",
    "Describe the work of a mail carrier.",
    "Describe a campfire at night.",
    "Describe a crowded bus at rush hour.",
    "Describe a wooden rocking chair.",
    "Describe an old barn in the countryside.",
    "Describe what a dentist does during a checkup.",
    "Describe a squirrel gathering acorns.",
    "Describe a cozy living room on a winter evening.",
    "Describe the job of a school nurse.",
    "Describe a field of wildflowers.",
    # explain
    "Explain what a thermometer measures.",
    "Explain why people wear seatbelts in cars.",
    "Explain what a recipe is.",
    "Explain why many trees lose their leaves in autumn.",
    "Explain what a vaccine does.",
    "Explain why we should recycle plastic bottles.",
    "Explain what an umbrella is for.",
    "Explain why dogs pant.",
    "Explain what a smoke detector does.",
    "Explain what a spare house key is for.",
    "Explain what a receipt is used for.",
    "Explain why milk goes sour.",
    "Explain why it is good to stretch before exercise.",
    "Explain what a savings account is.",
    "Explain what a thermostat does.",
    "Explain why cats purr.",
    "Explain what a first aid kit is for.",
    "Explain what traffic lights tell drivers to do.",
    "Explain what compost is.",
    "Explain why people wear helmets when skating.",
    "Explain what a password manager does.",
    "Explain what a microwave oven does to food.",
    "Explain what a hiccup is.",
    "Explain the purpose of a zipper.",
    "Explain why we should drink water during exercise.",
    "Explain what a vacuum cleaner does.",
    # tips
    "Give three tips for a job interview.",
    "Give tips for keeping a houseplant healthy.",
    "Give three tips for saving money on groceries.",
    "Give some tips for studying for an exam.",
    "How can I stay focused while working from home?",
    "Give tips for making friends after moving to a new town.",
    "Suggest ways to keep a kitchen clean.",
    "Give some tips for walking a dog in hot weather.",
    "Give tips for packing a suitcase efficiently.",
    "Give three tips for writing a polite email.",
    "Give some tips for someone learning to cook.",
    "Give three tips for staying safe while hiking.",
    "Give tips for keeping children busy on a rainy day.",
    "Suggest simple ways to reduce food waste at home.",
    "Give tips for starting a morning exercise routine.",
    "Give three tips for speaking confidently in public.",
    "Give tips for caring for a new puppy.",
    "Give three tips for growing strawberries in pots.",
    "Give some tips for keeping the inside of a car clean.",
    "Give three tips for hosting a dinner party.",
    "Give tips for remembering people's names.",
    "Suggest ideas for decorating a small apartment.",
    "Give tips for staying warm during a winter walk.",
    "Give three tips for taking better photos with a phone.",
    # short creative
    "Write two sentences about autumn leaves.",
    "Write a two-line poem about a rainy afternoon.",
    "Write one sentence describing a lazy weekend morning.",
    "Write a short thank-you note to a neighbor.",
    "Write two sentences about a dog playing in the park.",
    "Write a one-sentence story about a lost kitten.",
    "Write a two-line poem about the first day of spring.",
    "Write two sentences welcoming guests to a party.",
    "Write a short birthday message for a friend.",
    "Write two sentences about a quiet evening at home.",
    "Write a short slogan for a neighborhood cleanup day.",
    "Write a two-sentence story about a friendly robot.",
    "Write one sentence describing a windy afternoon.",
    "Write a short apology for arriving late to a meeting.",
    "Write two sentences about a grandmother's garden.",
    "Write a short note reminding a roommate to buy milk.",
    "Write two sentences about the first day of school.",
    "Write a one-line motto for a cooking club.",
    "Write a two-sentence description of a cozy cafe.",
    "Write a short invitation to a backyard barbecue.",
    "Write two sentences about a kitten chasing a ball of string.",
    "Write a short cheerful greeting for a Monday morning.",
    "Write two sentences encouraging a friend before a race.",
    # compare
    "Compare a cat and a dog as pets.",
    "What is the difference between a jacket and a coat?",
    "Compare walking and running as exercise.",
    "What is the difference between a hat and a cap?",
    "Compare taking a shower with taking a bath.",
    "What is the difference between baking and frying?",
    "Compare living in a city with living in the countryside.",
    "What is the difference between a fruit and a vegetable?",
    "Compare a pen and a pencil for taking notes.",
    "What is the difference between a cup and a mug?",
    "Compare a laptop and a desktop computer.",
    "What is the difference between a sofa and an armchair?",
    "Compare cooking at home with eating at a restaurant.",
    "What is the difference between a sandal and a sneaker?",
    "Compare a summer holiday with a winter holiday.",
    # define
    'What does the word "cozy" mean?',
    'Define the word "chore".',
    'What does the word "errand" mean?',
    'Define the word "neighbor".',
    'What does "leftovers" mean?',
    'Define the word "hobby".',
    'What does the word "punctual" mean?',
    'Define the word "picnic".',
    'What does "spring cleaning" mean?',
    'Define the word "souvenir".',
    'What does the word "curious" mean?',
    'Define the word "apron".',
    'What does "homemade" mean?',
    'Define the word "commute".',
    'What does the word "generous" mean?',
]
