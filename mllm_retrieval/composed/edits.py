"""Edit-aware composition of "like this photo, but …" queries, with rules only (no LLM).

`parse_edit` reads a modification text into words to add and words to remove:

- negation: "without X", "no X", "not X", "remove (the) X", "get rid of X", "X removed", "doesn't have X",
  "no longer X" -> remove X. The negated span is a short noun phrase: it stops at a preposition, a comma
  or a conjunction, so "a dog with no leash on the grass" removes only "leash" and adds dog and grass.
  A bare noun joined by "and"/"or" right after a negation shares it: "without the dog or cat". A negated
  action negates only the verb: "one without touching the water" removes "touching", not the water
  (possession and sight verbs pass the negation on: "without wearing a hat", "without seeing the sky").
- replacement: "X instead of Y", "change Y to X", "turn Y into X", "replace Y with X", "swap Y for X",
  "Y -> X" -> remove Y, add X. "not blue but red" is a negation clause then an addition clause.
- addition: "add X", "with X", "plus X" and plain words -> add. "make the dress red" adds dress and red
  (keeps the dress: it is not read as a replacement).
- keep hints: "keep the X", "same X", "X stays" -> X is added and listed in `keep_hint`, and never removed.

`compose` applies an edit to the reference image's text (tags or caption): the reference words minus the
removed ones, plus the added ones. Reference words weigh REF_WEIGHT (0.5) against 1.0 for the words of
the modification, because the modification says what the target must show and the reference only what
it probably shares; removed words become `exclude` (evaluate.py demotes, not drops, images holding them).
All words are `text.tokenize` tokens (lowercase, no stopwords, singular).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..search.text import surface_words, tokenize

REF_WEIGHT = 0.5  # weight of a kept reference word; modification words weigh 1.0

_ARTICLE = r"(?:(?:the|a|an|any|some|all|of)\s+)*"
_NEG_PREFIX = (r"without|with\s+no|with\s+out|no\s+longer(?:\s+(?:has|have|is|are|shows?))?|no|not|never|"
               r"nothing\s+but|remove|removes|removed|removing|get\s+rid\s+of|take\s+away|take\s+out|"
               r"delete|exclude|minus|lacks?|lacking|free\s+of|"
               r"(?:does|do|did|is|are|was|were|has|have|should|must|can)\s*(?:not|n't)"
               r"(?:\s+(?:have|has|show|contain|include|be|feature|wear))?|"
               r"(?:doesnt|dont|isnt|arent|hasnt|havent|wont|cant|shouldnt)"
               r"(?:\s+(?:have|has|show|contain|include|be|feature|wear))?")
_NEG = re.compile(rf"\b(?:{_NEG_PREFIX})\s+{_ARTICLE}")
_POST_NEG = re.compile(r"\s+(?:is\s+|are\s+)?(?:removed|gone|missing|taken\s+away|deleted|absent)\b")
# where a negated noun phrase ends
_BOUNDARY = frozenset("""on in at into onto near by beside behind under over above below with from for to
    of and or but while which that who where when next around inside outside instead than is are was were
    has have having holding wearing sitting standing lying like as""".split())
# "remove two of the laptops", "remove most of the trees": a count changes, the thing stays
_QUANTIFIERS = frozenset("""one two three four five six seven eight nine ten most half few several many
    much part some extra""".split())
_REPLACE = [  # (pattern, group holding the new thing, group holding the old thing)
    (re.compile(r"^(?:has\s+|have\s+|is\s+|are\s+|with\s+|show\s+|shows\s+)?(?P<new>.+?)\s+instead\s+of\s+"
                r"(?P<old>.+)$"), "new", "old"),
    (re.compile(r"^(?:please\s+)?(?:change|turn|switch|convert)\s+(?P<old>.+?)\s+(?:to|into|for)\s+"
                r"(?P<new>.+)$"), "new", "old"),
    (re.compile(r"^(?:please\s+)?(?:replace|swap|substitute)\s+(?P<old>.+?)\s+(?:with|by|for)\s+"
                r"(?P<new>.+)$"), "new", "old"),
    (re.compile(r"^(?P<old>.+?)\s*(?:->|→|=>)\s*(?P<new>.+)$"), "new", "old"),
    (re.compile(r"^(?P<old>.+?)\s+(?:replaced|changed|turned)\s+(?:with|by|to|into)\s+(?P<new>.+)$"),
     "new", "old"),
]
_KEEP = re.compile(r"\b(?:keep(?:ing)?|same|retain(?:ing)?|still)\s+" + _ARTICLE + r"(?P<x>[\w' -]+?)$"
                   r"|^(?P<y>[\w' -]+?)\s+(?:stays?|remains?|unchanged)\b")
_CLAUSE = re.compile(r"\s*(?:[,;.!?]+|\bbut\b|\band\b|\bor\b|\bnor\b|\bwhile\b|\bthough\b|\balthough\b)\s*")
_CONJ_INHERIT = {"and", "or", "nor", ","}
# instruction words of a modification that say nothing about the target's content
FILLER = frozenset("""add adding added make making put show showing change changed turn want wanted let please
    instead replace replaced switch swap keep same image picture photo one ones target like other""".split())
_LEAD_VERBS = frozenset("""wearing having holding showing containing including featuring carrying seeing
    wear have hold show contain include feature carry any""".split())
# -ing words that are things, not actions ("no railing" removes the railing)
_ING_NOUNS = frozenset("""building clothing ceiling painting ring earring string king wing railing awning
    icing frosting lighting bedding pudding stuffing morning evening spring swing thing sibling seating
    fencing flooring sling topping wedding dumpling clothing stocking stockings""".split())


@dataclass(frozen=True)
class Edit:
    """What a modification text asks for, as tokens."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    keep_hint: tuple[str, ...] = ()  # words the text says to keep ("same colour", "keep the dog")


@dataclass(frozen=True)
class ComposedQuery:
    """A reference text edited by a modification: what to rank with and what to demote."""

    terms: tuple[str, ...]  # kept + added, deduplicated, added first
    weights: tuple[float, ...]  # per term: 1.0 for added, REF_WEIGHT for kept reference words
    exclude: tuple[str, ...]  # removed words that the modification does not also add
    kept: tuple[str, ...]  # reference words kept (a word the modification also says is listed as added)
    dropped: tuple[str, ...]  # reference words removed by the edit
    added: tuple[str, ...]  # words from the modification
    shown: tuple[tuple[str, str], ...] = ()  # token -> the word as written (tokens are stems)

    def word(self, token: str) -> str:
        """A token as the reference or the modification wrote it."""
        return dict(self.shown).get(token, token)

    @property
    def text(self) -> str:
        """A plain text for a sentence embedder: the added words, then the kept ones, as written."""
        return " ".join(self.word(t) for t in [*self.added, *(t for t in self.kept if t not in self.added)])


def _negated_phrase(words: list[str]) -> tuple[list[str], list[str]]:
    """Split the words after a negation into (the negated noun phrase, the rest)."""
    while words and words[0] in _LEAD_VERBS:
        words = words[1:]
    for i, w in enumerate(words):
        if i > 0 and w in _BOUNDARY:
            return words[:i], words[i:]
    return words, []


def _is_action(word: str) -> bool:
    """An -ing verb such as touching or facing (not a thing such as a railing)."""
    return len(word) > 4 and word.endswith("ing") and word not in _ING_NOUNS


def _split_clauses(text: str) -> list[tuple[str, str]]:
    """(joining word, clause) pairs; the first clause's joining word is ''."""
    out, pos, joiner = [], 0, ""
    for m in _CLAUSE.finditer(text):
        out.append((joiner, text[pos:m.start()]))
        sep = m.group(0).strip()
        joiner = sep if sep[:1].isalpha() else sep[:1] or " "  # "," may share a negation, "." does not
        pos = m.end()
    out.append((joiner, text[pos:]))
    return [(j, c.strip()) for j, c in out if c.strip()]


def parse_edit(modification: str) -> Edit:
    """Words to add and to remove from a free-text modification; never raises."""
    text = " " + (modification or "").lower().replace("’", "'").replace("n't", " not") + " "
    text = re.sub(r"\b(?:ca|wo)\s+not\b", "not", text)  # can't -> ca not -> not
    text = text.replace("&", " and ")
    add: list[str] = []
    remove: list[str] = []
    keep: list[str] = []
    last_negated = False
    for joiner, clause in _split_clauses(text):
        negated_here = False
        # a bare short noun phrase after a negation shares it: "without the dog or cat"
        if (last_negated and joiner in _CONJ_INHERIT and len(clause.split()) <= 3
                and clause.split()[0] not in _BOUNDARY
                and not re.match(r"(?:a|an|add|adding|with|plus|has|have|is|are|make)\b", clause)
                and not _NEG.search(" " + clause + " ")):
            remove += tokenize(clause)
            last_negated = True
            continue
        m = _KEEP.search(clause)
        if m:
            words = tokenize(m.group("x") or m.group("y") or "")
            keep += words
            add += words
            clause = clause[:m.start()] + " " + clause[m.end():]
        for pattern, new, old in _REPLACE:
            m = pattern.search(clause)
            if m:
                new_words = tokenize(m.group(new))
                add += new_words
                remove += [t for t in tokenize(m.group(old)) if t not in new_words]  # shared words stay
                clause = ""
                break
        m = _POST_NEG.search(clause)
        if m and tokenize(clause[:m.start()]) and not _NEG.search(" " + clause[:m.start()] + " "):
            before = clause[:m.start()].split()
            # "with the leash removed": the negated thing is the noun phrase right before the marker
            head = []
            for w in reversed(before):
                if w in _BOUNDARY:
                    break
                head.insert(0, w)
            remove += tokenize(" ".join(head))
            add += tokenize(" ".join(before[: len(before) - len(head)]) + " " + clause[m.end():])
            negated_here = bool(head)
            clause = ""
        while clause:
            m = _NEG.search(" " + clause + " ")
            if not m:
                add += tokenize(clause)
                break
            start, end = max(m.start() - 1, 0), max(m.end() - 1, 0)
            add += tokenize(clause[:start])
            phrase, rest = _negated_phrase(clause[end:].split())
            if phrase and phrase[0] in _QUANTIFIERS:  # fewer of them, not none: the words stay positive
                phrase, rest = [], phrase[1:] + rest
            elif phrase and _is_action(phrase[0]):
                # "not facing the camera", "without touching the water": the action is negated, not the
                # thing, so only the verb is removed and its object is neither removed nor added
                phrase, rest = phrase[:1], rest
            remove += tokenize(" ".join(phrase))
            negated_here = negated_here or bool(tokenize(" ".join(phrase))) and not rest
            clause = " ".join(rest)
        last_negated = negated_here
    kept_set = set(keep)
    remove_final = tuple(t for t in dict.fromkeys(remove) if t not in kept_set and t not in FILLER)
    removed = set(remove_final)
    add_final = tuple(t for t in dict.fromkeys(add)
                      if (t not in removed or t in kept_set) and t not in FILLER)
    return Edit(add=add_final, remove=remove_final, keep_hint=tuple(dict.fromkeys(keep)))


def compose(reference: str, modification: str, ref_weight: float = REF_WEIGHT) -> ComposedQuery:
    """Reference words minus the removed ones plus the added ones (see the module docstring)."""
    edit = parse_edit(modification)
    ref = list(dict.fromkeys(tokenize(reference or "")))
    removed = set(edit.remove)
    added = edit.add
    added_set = set(added)
    kept = tuple(t for t in ref if t not in removed and t not in added_set)  # a word is kept or added
    dropped = tuple(t for t in ref if t in removed)
    terms = tuple(dict.fromkeys([*added, *kept]))
    weights = tuple(1.0 if t in added_set else ref_weight for t in terms)
    exclude = tuple(t for t in edit.remove if t not in added_set)
    shown = tuple(surface_words(f"{reference or ''} {modification or ''}").items())
    return ComposedQuery(terms=terms, weights=weights, exclude=exclude, kept=kept, dropped=dropped,
                         added=added, shown=shown)
