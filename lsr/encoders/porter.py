"""Porter's stemmer as Lucene's PorterStemFilter applies it.

Lucene's PorterStemmer follows Martin Porter's own reference implementation, which departs
from the 1980 paper (and from Snowball's "porter", which PyStemmer ships) in step 2: it maps
``-bli`` to ``-ble`` (the paper: ``-abli`` to ``-able``) and adds ``-logi`` to ``-log``.
Over SciFact and the classic collections that changes ~1,400 documents' terms (``assembly``,
``technology``, ``possibly``...), so this module implements the reference variant directly.
Words of one or two letters are returned unchanged, as Lucene does.
"""

from __future__ import annotations

from functools import lru_cache

_VOWELS = frozenset("aeiou")


class _Word:
    """The word being stemmed; ``k`` is the index of its last letter, ``j`` the end of a stem."""

    __slots__ = ("b", "k", "j")

    def __init__(self, word: str) -> None:
        self.b = list(word)
        self.k = len(word) - 1
        self.j = 0

    def cons(self, i: int) -> bool:
        c = self.b[i]
        if c in _VOWELS:
            return False
        if c == "y":
            return i == 0 or not self.cons(i - 1)
        return True

    def m(self) -> int:
        """Number of vowel-consonant sequences in b[0..j]."""
        n, i, j = 0, 0, self.j
        while i <= j and self.cons(i):
            i += 1
        while True:
            while i <= j and not self.cons(i):
                i += 1
            if i > j:
                return n
            while i <= j and self.cons(i):
                i += 1
            n += 1
            if i > j:
                return n

    def vowel_in_stem(self) -> bool:
        return any(not self.cons(i) for i in range(self.j + 1))

    def double_consonant(self, i: int) -> bool:
        return i >= 1 and self.b[i] == self.b[i - 1] and self.cons(i)

    def cvc(self, i: int) -> bool:
        """consonant-vowel-consonant ending at i, the last consonant not w, x or y."""
        if i < 2 or not self.cons(i) or self.cons(i - 1) or not self.cons(i - 2):
            return False
        return self.b[i] not in "wxy"

    def ends(self, s: str) -> bool:
        n = len(s)
        if n > self.k + 1 or "".join(self.b[self.k - n + 1 : self.k + 1]) != s:
            return False
        self.j = self.k - n
        return True

    def set_to(self, s: str) -> None:
        del self.b[self.j + 1 :]
        self.b.extend(s)
        self.k = self.j + len(s)

    def replace(self, s: str) -> None:
        if self.m() > 0:
            self.set_to(s)

    def text(self) -> str:
        return "".join(self.b[: self.k + 1])


# Step 2 (the reference implementation's list: note -bli and -logi), keyed by the penultimate letter.
_STEP2 = {
    "a": (("ational", "ate"), ("tional", "tion")),
    "c": (("enci", "ence"), ("anci", "ance")),
    "e": (("izer", "ize"),),
    "l": (("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous")),
    "o": (("ization", "ize"), ("ation", "ate"), ("ator", "ate")),
    "s": (("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous")),
    "t": (("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")),
    "g": (("logi", "log"),),
}
# Step 3, keyed by the last letter.
_STEP3 = {
    "e": (("icate", "ic"), ("ative", ""), ("alize", "al")),
    "i": (("iciti", "ic"),),
    "l": (("ical", "ic"), ("ful", "")),
    "s": (("ness", ""),),
}
# Step 4 suffixes removed when m > 1, keyed by the penultimate letter.
_STEP4 = {
    "a": ("al",),
    "c": ("ance", "ence"),
    "e": ("er",),
    "i": ("ic",),
    "l": ("able", "ible"),
    "n": ("ant", "ement", "ment", "ent"),
    "o": ("ion", "ou"),
    "s": ("ism",),
    "t": ("ate", "iti"),
    "u": ("ous",),
    "v": ("ive",),
    "z": ("ize",),
}


def _step1ab(w: _Word) -> None:
    if w.b[w.k] == "s":
        if w.ends("sses"):
            w.k -= 2
        elif w.ends("ies"):
            w.set_to("i")
        elif w.b[w.k - 1] != "s":
            w.k -= 1
    if w.ends("eed"):
        if w.m() > 0:
            w.k -= 1
    elif (w.ends("ed") or w.ends("ing")) and w.vowel_in_stem():
        w.k = w.j
        if w.ends("at"):
            w.set_to("ate")
        elif w.ends("bl"):
            w.set_to("ble")
        elif w.ends("iz"):
            w.set_to("ize")
        elif w.double_consonant(w.k):
            if w.b[w.k] not in "lsz":
                w.k -= 1
        elif w.m() == 1 and w.cvc(w.k):
            w.set_to("e")


def _step1c(w: _Word) -> None:
    if w.ends("y") and w.vowel_in_stem():
        w.b[w.k] = "i"


def _step_table(w: _Word, table: dict, key_offset: int) -> None:
    if w.k < key_offset:
        return
    for suffix, repl in table.get(w.b[w.k - key_offset], ()):
        if w.ends(suffix):
            w.replace(repl)
            return


def _step4(w: _Word) -> None:
    if w.k == 0:
        return
    for suffix in _STEP4.get(w.b[w.k - 1], ()):
        if w.ends(suffix):
            if suffix == "ion" and not (w.j >= 0 and w.b[w.j] in "st"):
                continue
            if w.m() > 1:
                w.k = w.j
            return


def _step5(w: _Word) -> None:
    w.j = w.k
    if w.b[w.k] == "e":
        a = w.m()
        if a > 1 or (a == 1 and not w.cvc(w.k - 1)):
            w.k -= 1
    if w.b[w.k] == "l" and w.double_consonant(w.k) and w.m() > 1:
        w.k -= 1


@lru_cache(maxsize=200_000)
def porter_stem(word: str) -> str:
    """Stem of a lowercased word, identical to Lucene's PorterStemmer."""
    if len(word) <= 2:
        return word
    w = _Word(word)
    _step1ab(w)
    _step1c(w)
    _step_table(w, _STEP2, 1)
    _step_table(w, _STEP3, 0)
    _step4(w)
    _step5(w)
    return w.text()
