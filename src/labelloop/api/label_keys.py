"""Keys of the review page: each label's letter code, and the digits' meaning.

On the review page any letter starts the label filter; a label's code typed there puts that
label first, so code + Enter saves it. Codes are one or two letters (three only past
26 x 26 labels), unique, and taken from the name where possible: the initials of its words
first (``cancel_transfer`` -> ``ct``), then its first letter with a later one. With 77
labels every label is then its code plus Enter: three keystrokes at most.

Digits: a taxonomy of at most ``POSITION_KEYS`` labels keeps 1-9 on the labels themselves (as
the page always had); a larger one puts 1-5 on the machines' top candidates for the item.
The digit 0 is never a label's: on a multi-label page it saves "none of these apply" (``[]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from itertools import product
from string import ascii_lowercase

POSITION_KEYS = 9  # up to this many labels, digit n is label n
CANDIDATE_KEYS = 5  # above it, digits 1..5 are the item's top machine candidates
_WORD = re.compile(r"[a-z]+")


def digit_scheme(n_labels: int) -> str:
    """``"positions"`` (digit n picks label n) or ``"candidates"`` (digit n picks candidate n)."""
    return "positions" if n_labels <= POSITION_KEYS else "candidates"


def _name_words(name: str) -> list[str]:
    """The name's runs of ASCII letters, lower case (``Card-Arrival 2`` -> card, arrival)."""
    return _WORD.findall(name.lower())


def _preferences(name: str, single: bool) -> Iterator[str]:
    """Codes for ``name`` from most to least memorable (with repeats; the caller skips them)."""
    words = _name_words(name)
    if not words:
        return
    first = words[0][0]
    if single:
        yield first
    for word in words[1:]:  # first letter + another word's initial: cancel_transfer -> ct
        yield first + word[0]
    for letter in "".join(words)[1:]:  # first letter + a later letter: card -> ca, cr, cd
        yield first + letter
    if len(words) > 2:  # three initials: card_payment_fee_charged -> cpf
        yield "".join(w[0] for w in words[:3])


def label_codes(names: Sequence[str]) -> list[str]:
    """One unique code of lower-case letters per label, in ``names`` order.

    Labels take their preferred codes in rounds (round r: every label still without a code
    tries its r-th preference; on a tie the earlier label wins), so a label's best code is
    only lost to a label that prefers it at least as much. Single letters are used when the
    taxonomy has at most 26 labels; past the name's own letters, any free pair (then triple)
    of letters is taken.
    """
    single = len(names) <= len(ascii_lowercase)
    prefs = [list(dict.fromkeys(_preferences(n, single))) for n in names]
    codes: list[str | None] = [None] * len(names)
    taken: set[str] = set()
    for r in range(max((len(p) for p in prefs), default=0)):
        for i, p in enumerate(prefs):
            if codes[i] is None and r < len(p) and p[r] not in taken:
                codes[i] = p[r]
                taken.add(p[r])
    spare = _spare_codes(taken)
    return [code if code is not None else next(spare) for code in codes]


def _spare_codes(taken: set[str]) -> Iterator[str]:
    """Free codes, shortest first: pairs of letters, then triples."""
    for size in (2, 3, 4):
        for letters in product(ascii_lowercase, repeat=size):
            code = "".join(letters)
            if code not in taken:
                taken.add(code)
                yield code
