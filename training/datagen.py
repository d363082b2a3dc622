"""Seeded generator of short reasoning traces (word problems, synthetic tasks, golden-style, edge cases).

Everything flows from one ``random.Random(seed)``: the same seed and composition always give the same
records in the same order (no global random state, no clock). Answers are short and steps are plain
sentences on purpose: the tiny model this trains must first learn the `<reasoning>/<answer>` format.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

GENERATOR = "tunix_rt.training.datagen"
TRACE_VERSION = "1.0"

# One task: rng -> (prompt, [(step type, step text)], final answer).
Task = Callable[[random.Random], tuple[str, list[tuple[str, str]], str]]

NAMES = (
    "Ana", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jon", "Kai", "Lena", "Mia", "Noah",
    "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vic", "Wes", "Yara", "Zoe", "Leo", "Nina", "Raj",
)
# (singular, plural) of countable things.
ITEMS = (
    ("apple", "apples"), ("pencil", "pencils"), ("book", "books"), ("marble", "marbles"),
    ("sticker", "stickers"), ("card", "cards"), ("cookie", "cookies"), ("ball", "balls"),
    ("shell", "shells"), ("stamp", "stamps"), ("coin", "coins"), ("flower", "flowers"), ("toy", "toys"),
    ("egg", "eggs"), ("cup", "cups"), ("notebook", "notebooks"), ("orange", "oranges"),
    ("candle", "candles"), ("brick", "bricks"), ("box", "boxes"),
)
VEHICLES = ("car", "train", "bus", "bike", "boat", "truck", "van", "ship")
PLACES = ("shop", "farm", "school", "library", "garden", "club", "market", "zoo")
WORDS = (
    "lamp", "river", "cloud", "stone", "tiger", "apple", "green", "piano", "house", "light", "music",
    "water", "bread", "chair", "field", "glass", "horse", "lemon", "mouse", "night", "ocean", "plant",
    "robot", "sugar", "table", "train", "voice", "whale", "zebra", "candle", "forest", "garden",
    "island", "jacket", "kitten", "ladder", "magnet", "number", "orange", "pencil", "rabbit", "silver",
    "ticket", "window", "yellow", "bird", "cake", "door", "fish", "gold", "hill", "kite", "leaf", "moon",
    "nest", "rain", "ship", "star", "tree", "wind", "basket", "button", "circle", "dragon", "engine",
    "feather", "guitar", "hammer", "lantern", "mirror", "pepper", "planet", "pocket", "rocket", "saddle",
    "tomato", "tunnel", "violin", "wallet", "winter",
)
# Syllogism categories: (member singular, member plural, class singular, class plural).
KINDS = (
    ("cat", "cats", "animal", "animals"), ("rose", "roses", "flower", "flowers"),
    ("robin", "robins", "bird", "birds"), ("oak", "oaks", "tree", "trees"),
    ("salmon", "salmon", "fish", "fish"), ("violin", "violins", "instrument", "instruments"),
    ("hammer", "hammers", "tool", "tools"), ("apple", "apples", "fruit", "fruits"),
    ("carrot", "carrots", "vegetable", "vegetables"), ("sparrow", "sparrows", "bird", "birds"),
    ("dog", "dogs", "mammal", "mammals"), ("truck", "trucks", "vehicle", "vehicles"),
    ("ruby", "rubies", "gem", "gems"), ("pine", "pines", "tree", "trees"),
)
# Classes a member of KINDS is never in ("No cats are fish").
OTHER_CLASSES = (
    ("fish", "fish"), ("bird", "birds"), ("tool", "tools"), ("planet", "planets"), ("metal", "metals"),
    ("vehicle", "vehicles"), ("insect", "insects"), ("machine", "machines"),
)
PET_NAMES = (
    "Tom", "Max", "Bella", "Rex", "Luna", "Milo", "Coco", "Pip", "Ziggy", "Olive", "Sunny", "Bolt", "Nova",
)
PHRASES = (
    "hello world", "good morning", "blue sky", "open door", "fast car", "happy day", "red apple", "big tree",
    "cold water", "new book", "quiet night", "warm bread", "small boat", "green leaf", "bright star",
)
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
FILLER = (
    "The weather is sunny and the roads are quiet.",
    "A small dog sleeps next to the door.",
    "The town has a market every Saturday morning.",
    "Some friends are talking about a film they saw.",
    "There is a blue bench in the park near the lake.",
    "The clock on the wall shows half past nine.",
    "A bakery on the corner sells fresh bread.",
    "The bus to the station leaves every ten minutes.",
    "Birds are singing in the old oak tree.",
    "A red kite is flying high above the hill.",
)
SYMBOLS = "@#$%&*!?^~+="
EMOJI = (
    ("🍎", "apple"), ("⭐", "star"), ("🐱", "cat"), ("🌸", "flower"), ("🚗", "car"), ("🎈", "balloon"),
    ("🐟", "fish"), ("🍪", "cookie"), ("⚽", "ball"), ("🌙", "moon"),
)
UNICODE_WORDS = (
    "café", "naïve", "señor", "über", "crème", "façade", "jalapeño", "résumé", "piñata", "ångström",
    "smørbrød", "straße", "zürich", "élan", "coöp", "déjà", "fiancé", "garçon", "mañana", "ça", "ñandú",
    "żubr", "łódź", "čaj", "øre", "åre",
)


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _item(rng: random.Random) -> tuple[str, str]:
    return rng.choice(ITEMS)


def _word(rng: random.Random) -> str:
    """A word, sometimes with digits so the word space is large (e.g. `tiger13`)."""
    word = rng.choice(WORDS)
    return word + str(rng.randint(1, 99)) if rng.random() < 0.4 else word


def _steps_with_conclusion(rng: random.Random, steps: list[tuple[str, str]], conclusion: str) -> list:
    # Word problems have 3 or 4 steps: the optional 4th restates the result in words.
    return steps + [("conclude", conclusion)] if rng.random() < 0.5 else steps


# --- reasoning: word problems (3-4 steps) ------------------------------------------------------------


def speed_time(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    speed, hours = rng.randrange(10, 125, 5), rng.randint(2, 9)
    name, vehicle = rng.choice(NAMES), rng.choice(VEHICLES)
    prompt = rng.choice((
        f"A {vehicle} travels at {speed} km/h for {hours} hours. How far does it travel in km?",
        f"{name} drives at {speed} km/h for {hours} hours. How many kilometers does {name} cover?",
        f"A {vehicle} moves at {speed} km/h. How far does it go in {hours} hours, in km?",
    ))
    dist = speed * hours
    steps = [("given", f"Speed is {speed} km/h."), ("given", f"Time is {hours} hours."),
             ("compute", f"Distance = {speed} * {hours} = {dist}.")]
    return prompt, _steps_with_conclusion(rng, steps, f"The distance is {dist} km."), str(dist)


def percent_of(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    pct, total = rng.choice((10, 20, 25, 30, 40, 50, 60, 75, 80, 90)), rng.randrange(20, 420, 20)
    name, place = rng.choice(NAMES), rng.choice(PLACES)
    one, many = _item(rng)
    prompt = rng.choice((
        f"A {place} has {total} {many}. {pct}% of them are sold. How many {many} are sold?",
        f"What is {pct}% of {total} {many}?",
        f"{name} scored {pct}% on a test with {total} questions. How many questions did {name} get right?",
    ))
    result = total * pct // 100
    steps = [("given", f"Total is {total}."), ("given", f"Percent is {pct}%."),
             ("compute", f"{pct}% of {total} = {total} * {pct} / 100 = {result}.")]
    return prompt, _steps_with_conclusion(rng, steps, f"The answer is {result}."), str(result)


def cost_per_item(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    price, count = rng.randint(2, 25), rng.randint(2, 12)
    name = rng.choice(NAMES)
    one, many = _item(rng)
    prompt = rng.choice((
        f"Each {one} costs ${price}. {name} buys {count} {many}. How much does {name} pay in dollars?",
        f"{name} buys {count} {many} at ${price} each. What is the total cost in dollars?",
        f"One {one} costs {price} dollars. How many dollars do {count} {many} cost?",
    ))
    cost = price * count
    steps = [("given", f"Price per item is {price}."), ("given", f"Number of items is {count}."),
             ("compute", f"Cost = {price} * {count} = {cost}.")]
    return prompt, _steps_with_conclusion(rng, steps, f"The total cost is {cost} dollars."), str(cost)


def add(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    a, b = rng.randint(5, 90), rng.randint(5, 60)
    name = rng.choice(NAMES)
    one, many = _item(rng)
    prompt = rng.choice((
        f"{name} has {a} {many} and gets {b} more. How many {many} does {name} have now?",
        f"There are {a} {many} in one box and {b} in another. How many {many} are there in total?",
        f"{name} collected {a} {many} on Monday and {b} on Tuesday. How many {many} in all?",
    ))
    total = a + b
    steps = [("given", f"Start with {a}."), ("given", f"Add {b}."), ("compute", f"{a} + {b} = {total}.")]
    return prompt, _steps_with_conclusion(rng, steps, f"There are {total} {many}."), str(total)


def subtract(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    a = rng.randint(20, 99)
    b = rng.randint(3, a - 5)
    name, place = rng.choice(NAMES), rng.choice(PLACES)
    one, many = _item(rng)
    prompt = rng.choice((
        f"{name} had {a} {many} and gave away {b}. How many {many} are left?",
        f"A {place} had {a} {many} and sold {b}. How many {many} remain?",
        f"{name} had {a} {many} and lost {b} of them. How many {many} does {name} have now?",
    ))
    left = a - b
    steps = [("given", f"Start with {a}."), ("given", f"Take away {b}."), ("compute", f"{a} - {b} = {left}.")]
    return prompt, _steps_with_conclusion(rng, steps, f"{left} {many} are left."), str(left)


def multiply(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    groups, per = rng.randint(2, 12), rng.randint(2, 15)
    name = rng.choice(NAMES)
    one, many = _item(rng)
    prompt = rng.choice((
        f"There are {groups} boxes with {per} {many} in each box. How many {many} are there in total?",
        f"{name} has {groups} bags. Each bag holds {per} {many}. How many {many} does {name} have?",
        f"{name} makes {groups} rows of {per} {many}. How many {many} is that?",
    ))
    total = groups * per
    steps = [("given", f"Groups: {groups}."), ("given", f"Per group: {per}."),
             ("compute", f"{groups} * {per} = {total}.")]
    return prompt, _steps_with_conclusion(rng, steps, f"The total is {total}."), str(total)


# --- synthetic ---------------------------------------------------------------------------------------


def arithmetic(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    a, b, c = rng.randint(2, 50), rng.randint(2, 50), rng.randint(2, 9)
    form = rng.randrange(3)
    if form == 0:
        expr, mid, result = f"{a} + {b} - {c}", (f"{a} + {b}", a + b), a + b - c
        last = f"{a + b} - {c} = {result}."
    elif form == 1:
        expr, mid, result = f"({a} + {b}) * {c}", (f"{a} + {b}", a + b), (a + b) * c
        last = f"{a + b} * {c} = {result}."
    else:
        a = rng.randint(2, 12)
        expr, mid, result = f"{a} * {c} + {b}", (f"{a} * {c}", a * c), a * c + b
        last = f"{a * c} + {b} = {result}."
    prompt = rng.choice((f"Calculate {expr}.", f"What is {expr}?"))
    steps = [("compute", f"{mid[0]} = {mid[1]}."), ("compute", last)]
    return prompt, steps, str(result)


def string_reverse(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    word = _word(rng)
    prompt = rng.choice((f"Reverse the string '{word}'.", f"Write '{word}' backwards."))
    rev = word[::-1]
    steps = [("observe", f"The characters are {' '.join(word)}."),
             ("transform", f"In reverse order: {' '.join(rev)}.")]
    return prompt, steps, rev


def string_sort(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    if rng.random() < 0.5:
        words = rng.sample(WORDS, 3)
        prompt = f"Sort these words alphabetically: {', '.join(words)}."
        ordered = sorted(words)
        steps = [("observe", f"The words are {', '.join(words)}."),
                 ("transform", f"In alphabetical order: {', '.join(ordered)}.")]
        return prompt, steps, ", ".join(ordered)
    word = rng.choice(WORDS)
    prompt = f"Sort the letters of '{word}' alphabetically."
    ordered = "".join(sorted(word))
    steps = [("observe", f"The letters are {' '.join(word)}."),
             ("transform", f"In alphabetical order: {' '.join(ordered)}.")]
    return prompt, steps, ordered


def syllogism(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    member, members, cls, classes = rng.choice(KINDS)
    pet = rng.choice(PET_NAMES)
    if rng.random() < 0.5:
        prompt = (f"All {members} are {classes}. {pet} is {_an(member)}. "
                  f"Is {pet} {_an(cls)}? Answer yes or no.")
        steps = [("rule", f"All {members} are {classes}."), ("given", f"{pet} is {_an(member)}."),
                 ("conclude", f"So {pet} is {_an(cls)}.")]
        return prompt, steps, "yes"
    other, others = rng.choice([c for c in OTHER_CLASSES if c[0] != cls])
    prompt = (f"No {members} are {others}. {pet} is {_an(member)}. "
              f"Is {pet} {_an(other)}? Answer yes or no.")
    steps = [("rule", f"No {members} are {others}."), ("given", f"{pet} is {_an(member)}."),
             ("conclude", f"So {pet} is not {_an(other)}.")]
    return prompt, steps, "no"


# --- golden-style: tiny instruction-following checks --------------------------------------------------


def repeat(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    word, times = rng.choice(WORDS), rng.randint(2, 4)
    prompt = f"Repeat the word '{word}' {COUNT_WORDS[times]} times."
    answer = " ".join([word] * times)
    steps = [("observe", f"The word is {word}."), ("transform", f"Written {times} times: {answer}.")]
    return prompt, steps, answer


def uppercase(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    phrase = rng.choice(PHRASES + WORDS)
    prompt = rng.choice((f"Write '{phrase}' in uppercase.", f"Convert '{phrase}' to capital letters."))
    upper = phrase.upper()
    return prompt, [("observe", f"The text is {phrase}."), ("transform", f"In uppercase: {upper}.")], upper


def first_letter(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    word = _word(rng)
    prompt = f"What is the first letter of '{word}'?"
    return prompt, [("observe", f"The word is {word}."), ("conclude", f"It starts with {word[0]}.")], word[0]


def last_letter(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    word = rng.choice(WORDS)
    prompt = rng.choice((f"What is the last letter of '{word}'?", f"Which letter does '{word}' end with?"))
    return prompt, [("observe", f"The word is {word}."), ("conclude", f"It ends with {word[-1]}.")], word[-1]


def count_letters(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    word = rng.choice(WORDS)
    prompt = rng.choice((f"How many letters are in the word '{word}'?", f"Count the letters in '{word}'."))
    steps = [("observe", f"The letters are {' '.join(word)}."), ("compute", f"That is {len(word)} letters.")]
    return prompt, steps, str(len(word))


# --- edge cases -------------------------------------------------------------------------------------


def long_prompt(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    name = rng.choice(NAMES)
    one, many = _item(rng)
    a, b = rng.randint(5, 60), rng.randint(2, 30)
    # Distracting context first; only the last sentence and the question matter.
    prompt = (f"{rng.choice(FILLER)} {name} has {a} {many} and buys {b} more. "
              f"How many {many} does {name} have now?")
    steps = [("observe", "Only the last part matters."), ("given", f"Start with {a} and add {b}."),
             ("compute", f"{a} + {b} = {a + b}.")]
    return prompt, steps, str(a + b)


def special_characters(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    word = rng.choice(WORDS)
    noisy = "".join(ch + (rng.choice(SYMBOLS) if rng.random() < 0.6 else "") for ch in word)
    prompt = f"Remove every symbol from \"{noisy}\" and keep only the letters."
    steps = [("observe", f"The text is {noisy}."), ("transform", f"Without symbols: {word}.")]
    return prompt, steps, word


def emoji(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    (mark, label), (other, _) = rng.sample(EMOJI, 2)
    count, noise = rng.randint(2, 6), rng.randint(0, 3)
    seq = [mark] * count + [other] * noise
    rng.shuffle(seq)
    text = "".join(seq)
    prompt = f"How many {mark} are in {text}?"
    steps = [("observe", f"Count each {mark} ({label})."), ("compute", f"There are {count}.")]
    return prompt, steps, str(count)


def unicode_text(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    word = rng.choice(UNICODE_WORDS)
    form = rng.randrange(3)
    if form == 0:
        prompt, answer = f"Reverse the word '{word}'.", word[::-1]
        steps = [("observe", f"The characters are {' '.join(word)}."),
                 ("transform", f"In reverse order: {' '.join(answer)}.")]
    elif form == 1:
        prompt, answer = f"What is the first letter of '{word}'?", word[0]
        steps = [("observe", f"The word is {word}."), ("conclude", f"It starts with {answer}.")]
    else:
        prompt, answer = f"How many letters are in '{word}'?", str(len(word))
        steps = [("observe", f"The letters are {' '.join(word)}."), ("compute", f"That is {answer} letters.")]
    return prompt, steps, answer


# family -> ordered (task_type, task). Counts of a family are spread over its tasks in this order.
FAMILIES: dict[str, tuple[tuple[str, Task], ...]] = {
    "reasoning": (("speed_time", speed_time), ("percent_of", percent_of), ("cost_per_item", cost_per_item),
                  ("add", add), ("subtract", subtract), ("multiply", multiply)),
    "synthetic": (("arithmetic", arithmetic), ("string_reverse", string_reverse),
                  ("string_sort", string_sort), ("syllogism", syllogism)),
    "golden_style": (("repeat", repeat), ("uppercase", uppercase), ("first_letter", first_letter),
                     ("last_letter", last_letter), ("count_letters", count_letters)),
    "edge_case": (("long_prompt", long_prompt), ("special_characters", special_characters), ("emoji", emoji),
                  ("unicode", unicode_text)),
}
TASKS: dict[str, tuple[str, Task]] = {
    name: (fam, fn) for fam, tasks in FAMILIES.items() for name, fn in tasks
}

# Enough tries to fill any family of the x10 set with unique prompts; a bound so a bad plan fails loudly.
_MAX_TRIES_PER_TRACE = 500


def plan_composition(composition: Mapping[str, int]) -> list[tuple[str, str]]:
    """Spread each family's count evenly over its task types: a list of (family, task_type) slots."""
    plan: list[tuple[str, str]] = []
    for family, count in composition.items():
        if family not in FAMILIES:
            raise ValueError(f"unknown trace family {family!r}; known: {', '.join(FAMILIES)}")
        tasks = FAMILIES[family]
        for k, (task_type, _) in enumerate(tasks):
            share = count // len(tasks) + (1 if k < count % len(tasks) else 0)
            plan.extend([(family, task_type)] * share)
    return plan


def make_record(prompt: str, steps: Sequence[tuple[str, str]], answer: str, meta: Mapping[str, Any]) -> dict:
    """One trace record in the dataset's line format."""
    return {
        "trace_version": TRACE_VERSION,
        "prompt": prompt,
        "final_answer": answer,
        "steps": [{"i": i, "type": kind, "content": text} for i, (kind, text) in enumerate(steps)],
        "meta": dict(meta),
    }


def generate_plan(
    plan: Sequence[tuple[str, str]],
    seed: int,
    *,
    exclude_prompts: Iterable[str] = (),
) -> list[tuple[str, str, str, list[tuple[str, str]], str]]:
    """Generate one unique-prompt example per slot: (family, task_type, prompt, steps, answer), in plan order.

    Prompts already in ``exclude_prompts`` (or earlier in this plan) are redrawn, so sets built from
    different seeds can be made disjoint.
    """
    rng = random.Random(seed)
    seen = set(exclude_prompts)
    out = []
    for family, task_type in plan:
        _, task = TASKS[task_type]
        for _ in range(_MAX_TRIES_PER_TRACE):
            prompt, steps, answer = task(rng)
            if prompt not in seen:
                break
        else:
            raise ValueError(
                f"could not draw a new unique {task_type!r} prompt after {_MAX_TRIES_PER_TRACE} tries"
            )
        seen.add(prompt)
        out.append((family, task_type, prompt, steps, answer))
    return out


def build_traces(composition: Mapping[str, int], seed: int, dataset: str) -> list[dict]:
    """Build ``sum(composition.values())`` trace records, families interleaved by a seeded shuffle.

    ``composition`` maps family (``reasoning``, ``synthetic``, ``golden_style``, ``edge_case``) to a count.
    """
    examples = generate_plan(plan_composition(composition), seed)
    random.Random(seed + 1).shuffle(examples)  # mix families so any prefix of the file is representative
    records = []
    for index, (family, task_type, prompt, steps, answer) in enumerate(examples):
        meta = {"dataset": dataset, "generator": GENERATOR, "seed": seed, "category": family,
                "task_type": task_type, "index": index}
        records.append(make_record(prompt, steps, answer, meta))
    return records
