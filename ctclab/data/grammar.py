"""The text grammar of the embedded speech corpus: seeded, lowercase, numbers spelled out.

Two slices: ``closed`` (dates, clock times, numbers, walking directions, playing cards: a small
fixed vocabulary, like the closed-vocabulary condition of silent-speech data) and ``open``
(templates filled from a few hundred names, nouns, verbs and adjectives). Every text uses only
characters of ``ctclab.alphabet.ENGLISH``. :mod:`ctclab.data.corpus` speaks these texts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np

from ctclab.alphabet import ENGLISH

T = TypeVar("T")

# ---------------------------------------------------------------- grammar: closed vocabulary
ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
IRREGULAR_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
MONTHS = ("january february march april may june july august september october november december").split()
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # no leap days in the grammar
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
RANKS = "ace two three four five six seven eight nine ten jack queen king".split()
SUITS = "hearts diamonds clubs spades".split()
LANDMARKS = ("station", "bank", "library", "bakery", "hospital", "museum", "church", "pharmacy", "post office")
UNITS = "dollars meters minutes kilograms percent miles hours".split()


def spell_number(number: int) -> str:
    """Spell ``0 <= number < 1_000_000`` in words, without "and": 105 -> "one hundred five"."""
    if not 0 <= number < 1_000_000:
        raise ValueError(f"spell_number covers 0..999999, got {number}")
    if number < 20:
        return ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return TENS[tens] + (f" {ONES[ones]}" if ones else "")
    for size, name in ((1000, "thousand"), (100, "hundred")):
        if number >= size:
            high, rest = divmod(number, size)
            return f"{spell_number(high)} {name}" + (f" {spell_number(rest)}" if rest else "")
    raise AssertionError("unreachable")


def spell_ordinal(number: int) -> str:
    """Ordinal in words for ``1 <= number < 1_000_000``: 23 -> "twenty third"."""
    if number < 1:
        raise ValueError(f"ordinals start at 1, got {number}")
    *head, last = spell_number(number).split()
    if last in IRREGULAR_ORDINALS:
        last = IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def spell_time(hour: int, minute: int, casual: bool) -> str:
    """A clock time on a 12-hour dial: (9, 45) -> "nine forty five" or, casual, "quarter to ten"."""
    if not (1 <= hour <= 12 and 0 <= minute < 60):
        raise ValueError(f"need 1 <= hour <= 12 and 0 <= minute < 60, got {hour}:{minute}")
    next_hour = hour % 12 + 1
    if minute == 0:
        return f"{spell_number(hour)} o'clock"
    if not casual:
        return f"{spell_number(hour)} " + (f"oh {ONES[minute]}" if minute < 10 else spell_number(minute))
    named = {15: "quarter past", 30: "half past", 45: "quarter to"}
    if minute in named:
        return f"{named[minute]} {spell_number(next_hour if minute == 45 else hour)}"
    unit = "" if minute % 5 == 0 else " minutes"  # "ten past", but "seven minutes past"
    if minute < 30:
        return f"{spell_number(minute)}{unit} past {spell_number(hour)}"
    return f"{spell_number(60 - minute)}{unit} to {spell_number(next_hour)}"


def spell_year(year: int) -> str:
    """Years as spoken: 1984 -> "nineteen eighty four", 2005 -> "two thousand five", 2024 -> "twenty twenty four"."""
    if not 1900 <= year <= 2099:
        raise ValueError(f"spell_year covers 1900..2099, got {year}")
    century, rest = divmod(year, 100)
    if year < 2010 and century == 20:
        return spell_number(year)
    if rest == 0:
        return f"{spell_number(century)} hundred"
    return f"{spell_number(century)} " + (f"oh {ONES[rest]}" if rest < 10 else spell_number(rest))


def plural(noun: str) -> str:
    """Regular English plural (the word lists hold only regular nouns): "box" -> "boxes"."""
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


def _date(rng: np.random.Generator) -> str:
    month = int(rng.integers(12))
    day = spell_ordinal(int(rng.integers(1, DAYS_IN_MONTH[month] + 1)))
    forms = (
        f"{MONTHS[month]} {day}",
        f"{pick(rng, WEEKDAYS)} the {day} of {MONTHS[month]}",
        f"on {pick(rng, WEEKDAYS)} {MONTHS[month]} {day}",
        f"{MONTHS[month]} {day} {spell_year(int(rng.integers(1900, 2031)))}",
    )
    return pick(rng, forms)


def _time(rng: np.random.Generator) -> str:
    hour, minute = int(rng.integers(1, 13)), int(rng.choice([0, 15, 30, 45, int(rng.integers(60))]))
    spoken = spell_time(hour, minute, casual=bool(rng.integers(2)))
    return pick(
        rng,
        (
            spoken,
            f"at {spoken}",
            f"it is {spoken}",
            f"{spoken} in the morning",
            f"{spoken} in the evening",
            f"wake me at {spoken}",
        ),
    )


def _number(rng: np.random.Generator) -> str:
    value = int(np.exp(rng.uniform(0, np.log(1_000_000))))  # log-uniform: small numbers common
    digits = " ".join(ONES[int(digit)] for digit in rng.integers(10, size=int(rng.integers(3, 8))))
    return pick(
        rng,
        (
            spell_number(value),
            f"{spell_number(value)} {pick(rng, UNITS)}",
            f"dial {digits}",
            f"room {spell_number(int(rng.integers(1, 500)))}",
            f"page {spell_number(int(rng.integers(1, 1000)))}",
        ),
    )


def _direction(rng: np.random.Generator) -> str:
    ordinal, side = spell_ordinal(int(rng.integers(1, 6))), pick(rng, ("left", "right"))
    steps = (
        f"turn {side} at the {ordinal} {pick(rng, ('corner', 'light', 'junction', 'crossing'))}",
        f"go {pick(rng, ('straight ahead', 'north', 'south', 'east', 'west'))} for "
        f"{spell_number(int(rng.integers(2, 21)))} {pick(rng, ('blocks', 'minutes'))}",
        f"take the {ordinal} {side}",
        f"take the {ordinal} exit at the roundabout",
        f"the {pick(rng, LANDMARKS)} is on your {side}",
    )
    first = pick(rng, steps)
    return first if rng.random() < 0.6 else f"{first} then {_direction(rng)}"


def _cards(rng: np.random.Generator) -> str:
    def card() -> str:
        return f"the {pick(rng, RANKS)} of {pick(rng, SUITS)}"

    return pick(
        rng,
        (
            card(),
            f"{pick(rng, ('play', 'draw', 'discard', 'keep'))} {card()}",
            f"{card()} and {card()}",
            f"a pair of {plural(pick(rng, RANKS))}",
            f"{card()} beats {card()}",
        ),
    )


CLOSED_FAMILIES: dict[str, Callable[[np.random.Generator], str]] = {
    "date": _date,
    "time": _time,
    "number": _number,
    "direction": _direction,
    "cards": _cards,
}

# ---------------------------------------------------------------- grammar: open templates
NAMES = (
    "anna ben carlos diana emma felix grace hannah ivan julia kevin laura maria nina oliver "
    "paul rachel sam sofia tom victor wendy yusuf zoe james lucy omar priya leo mia noah ruth "
    "peter alice david sarah george helen mark clara"
).split()
NOUNS = (
    "book table window garden kitchen letter bottle river mountain village bridge teacher "
    "doctor driver farmer cat dog horse bird apple orange bread cup chair door key phone "
    "computer camera ticket train bus car bicycle road street market shop school office house "
    "room bed lamp picture song story game ball box bag coat hat shoe shirt clock map boat "
    "island forest field flower tree stone cloud basket blanket bucket candle carpet coin "
    "desk drawer engine fence glass guitar hammer jacket kettle ladder mirror needle notebook "
    "painting pencil pillow plate radio ribbon rope sandwich spoon stamp tent towel tray "
    "umbrella wallet wheel whistle cabin castle harbor tower tunnel garage library bakery "
    "parcel envelope newspaper biscuit pepper onion carrot lemon cherry"
).split()
VERBS = dict(
    pair.split(":")
    for pair in (
        "open:opened close:closed find:found lose:lost carry:carried paint:painted clean:cleaned "
        "fix:fixed buy:bought sell:sold bring:brought take:took move:moved wash:washed watch:watched "
        "build:built break:broke drop:dropped hide:hid borrow:borrowed read:read draw:drew "
        "check:checked push:pushed pull:pulled throw:threw catch:caught keep:kept leave:left "
        "show:showed need:needed want:wanted like:liked count:counted follow:followed "
        "measure:measured order:ordered fill:filled empty:emptied lift:lifted mend:mended "
        "pack:packed return:returned share:shared test:tested weigh:weighed"
    ).split()
)
ADJECTIVES = (
    "red blue green yellow black white old new small large heavy light quiet loud warm "
    "cold bright dark clean dirty empty full broken famous strange simple tiny happy "
    "tired busy soft hard wooden metal round square tall short long narrow wide fresh "
    "sweet bitter early late purple golden silver plastic shiny dusty"
).split()
PAST = ("yesterday", "this morning", "last night", "after lunch", "on monday", "last week", "again")
FUTURE = ("tomorrow", "tonight", "after lunch", "before dinner", "next week", "on friday", "soon")
MANNER = ("quickly", "slowly", "carefully", "quietly", "together", "twice")
PLACES = ("on", "under", "behind", "beside", "near", "inside", "above")
CONTRACTIONS = ("we're", "they're", "i'm", "you're", "she's", "he's")
JOINERS = ("and", "but", "because", "so", "while")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _statement(rng: np.random.Generator) -> str:
    """A declarative clause; two of them may be joined into one sentence."""
    name, other, noun, other_noun = pick(rng, NAMES), pick(rng, NAMES), pick(rng, NOUNS), pick(rng, NOUNS)
    adjective, verb = pick(rng, ADJECTIVES), pick(rng, tuple(VERBS))
    return pick(
        rng,
        (
            f"{name} {VERBS[verb]} the {adjective} {noun} {pick(rng, PAST)}",
            f"the {adjective} {noun} is {pick(rng, PLACES)} the {other_noun}",
            f"{name}'s {noun} was {adjective}",
            f"{pick(rng, CONTRACTIONS)} going to {verb} the {adjective} {noun} {pick(rng, FUTURE)}",
            f"i can't {verb} the {noun} without {other}",
            f"there is {_article(adjective)} {adjective} {noun} {pick(rng, PLACES)} the {other_noun}",
            f"{name} and {other} {VERBS[verb]} {spell_number(int(rng.integers(2, 13)))} {plural(noun)}",
            f"{name} will meet {other} at {spell_time(int(rng.integers(1, 13)), 5 * int(rng.integers(12)), True)}",
        ),
    )


def _open_sentence(rng: np.random.Generator) -> str:
    roll = rng.random()
    if roll < 1 / 3:
        return _statement(rng)
    if roll < 2 / 3:
        return f"{_statement(rng)} {pick(rng, JOINERS)} {_statement(rng)}"
    noun, verb, adjective = pick(rng, NOUNS), pick(rng, tuple(VERBS)), pick(rng, ADJECTIVES)
    return pick(
        rng,
        (
            f"please {verb} the {noun} {pick(rng, MANNER)}",
            f"did {pick(rng, NAMES)} {verb} the {noun} {pick(rng, PAST)}",
            f"don't {verb} my {adjective} {noun}",
            f"where is the {adjective} {noun}",
        ),
    )


class Sentence(NamedTuple):
    """One generated transcript and the slice it came from ("closed" or "open")."""

    text: str
    slice: str


def generate_texts(
    num_texts: int, rng: np.random.Generator, closed_fraction: float = 0.5, min_words: int = 2, max_words: int = 14
) -> list[Sentence]:
    """Draw ``num_texts`` sentences from the grammar; each has ``min_words..max_words`` words.

    Raises:
        ValueError: if a sentence has a character outside ``ctclab.alphabet.ENGLISH`` (a grammar bug).
    """
    if num_texts < 0:
        raise ValueError(f"num_texts must be non-negative, got {num_texts}")
    families = tuple(CLOSED_FAMILIES.values())
    sentences: list[Sentence] = []
    while len(sentences) < num_texts:
        closed = bool(rng.random() < closed_fraction)
        for _ in range(1000):  # redraw within the slice until the length fits
            text = pick(rng, families)(rng) if closed else _open_sentence(rng)
            if min_words <= len(text.split()) <= max_words:
                break
        else:
            raise ValueError(f"the grammar cannot make sentences of {min_words}..{max_words} words")
        if ENGLISH.unknown_characters(text):
            raise ValueError(f"grammar produced {text!r} with {ENGLISH.unknown_characters(text)}")
        sentences.append(Sentence(text, "closed" if closed else "open"))
    return sentences
