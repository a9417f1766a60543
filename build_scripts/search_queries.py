"""The search query sets, generated from the catalogue with a fixed seed, each with a fixed
tuning/evaluation split: fusion parameters are chosen on tuning queries only, and every reported
number is measured on evaluation queries.

- typo_title: a title as people type it ("The Shawshank Redemption") with 1 or 2 typos of five
  kinds (adjacent swap, deletion, insertion, keyboard-neighbour substitution, doubled letter) → that item
- partial_title: a contiguous part of a title of two or more words ("Shawshank") → that item
- year_genre: "comedy from 1995", "1995 thriller movies" → items of that genre and year
- genre_description: a genre in other words than its name ("cowboys and gunslingers") → its items

Known-item queries of one item (typo and partial) fall on the same side of the split, so no
evaluation item was seen while tuning."""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass

import numpy as np

from build_scripts.movielens import GENRES, Catalogue
from python_backend.lexical import normalise

SEED = 20240518
TUNING_SHARE = 0.4
KNOWN_ITEM = ("typo_title", "partial_title")
SET_NAMES = ("typo_title", "partial_title", "year_genre", "genre_description")
TYPO_KINDS = ("swap", "delete", "insert", "substitute", "double")
_ARTICLES = {"the", "a", "an", "il", "la", "le", "les", "das", "der", "die", "el"}

# Four descriptions per genre that avoid the genre's name; the first of each is the one the model
# zoo has always reported. Descriptions 0 and 1 are evaluation queries, 2 and 3 tuning queries.
GENRE_DESCRIPTIONS = {
    "Action": ("explosions, car chases and fist fights", "a hero shooting his way out of trouble",
               "high-octane stunts and shootouts", "non-stop fighting and gunfire"),
    "Adventure": ("an epic quest to a far-away land", "explorers hunting for lost treasure",
                  "a daring journey through the jungle", "swashbuckling expeditions"),
    "Animation": ("cartoons", "hand-drawn animated characters", "a movie made of drawings",
                  "animated feature with talking animals"),
    "Children's": ("something for little kids to watch", "a family film for young children",
                   "movies for a child's birthday party", "safe viewing for kids"),
    "Comedy": ("funny films that make you laugh", "a hilarious farce",
               "jokes, gags and silly situations", "lighthearted humour"),
    "Crime": ("gangsters, heists and the mob", "police chasing a killer",
              "a bank robbery gone wrong", "drug dealers and corrupt cops"),
    "Documentary": ("non-fiction about real people and events", "a true story filmed as it happened",
                    "interviews and archive footage", "a film that reports on reality"),
    "Drama": ("serious, emotional stories about people's lives", "a moving tale of loss and grief",
              "characters facing hard choices", "a tearjerker"),
    "Fantasy": ("wizards, magic and mythical creatures", "dragons and enchanted kingdoms",
                "a fairy tale world", "sorcery and spells"),
    "Film-Noir": ("hard-boiled 1940s detectives", "a femme fatale and a private eye",
                  "shadowy black and white crime stories", "cynical gumshoes in a dark city"),
    "Horror": ("scary films with monsters and blood", "a haunted house and ghosts",
               "a slasher killer stalking teenagers", "terrifying nightmares"),
    "Musical": ("singing and dancing on stage", "a movie full of songs",
                "Broadway show tunes", "dance numbers and a big chorus"),
    "Mystery": ("a whodunit puzzle to solve", "a detective unravelling clues",
                "who committed the murder", "secrets and a baffling case"),
    "Romance": ("love stories", "two people falling in love", "a passionate affair",
                "a couple kissing in the rain"),
    "Sci-Fi": ("aliens, spaceships and the future", "robots and time travel",
               "life on another planet", "futuristic technology in outer space"),
    "Thriller": ("suspense that keeps you on the edge of your seat", "a tense cat and mouse chase",
                 "a conspiracy and a race against time", "nail-biting danger"),
    "War": ("soldiers on the battlefield", "the second world war", "army platoon in combat",
            "troops fighting in vietnam"),
    "Western": ("cowboys and gunslingers in the wild west", "a sheriff and outlaws on the frontier",
                "gunfights in a dusty frontier town", "horses, saloons and the cattle drive"),
}
GENRE_WORDS = {"Children's": "children's", "Film-Noir": "film noir", "Sci-Fi": "sci-fi"}
YEAR_GENRE_TEMPLATES = ("{genre} from {year}", "{year} {genre} movies", "{genre} films of {year}")
_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


@dataclass(frozen=True)
class QuerySet:
    name: str
    texts: tuple[str, ...]
    relevant: tuple[np.ndarray, ...]  # int64 item ids relevant to each query
    tuning: np.ndarray                # bool per query: True = tuning, False = evaluation
    # known-item sets made from a title alone: per query, how many catalogue items have that title
    # (remakes, MovieLens' duplicate entries); the query cannot tell them apart
    twins: np.ndarray | None = None

    def __post_init__(self):
        if not len(self.texts) == len(self.relevant) == len(self.tuning):
            raise ValueError(f"query set {self.name}: texts, relevant and split differ in length")
        if self.twins is not None and len(self.twins) != len(self.texts):
            raise ValueError(f"query set {self.name}: texts and twins differ in length")

    @property
    def known_item(self) -> bool:
        return all(r.size == 1 for r in self.relevant)

    def split(self, tuning: bool) -> "QuerySet":
        keep = np.flatnonzero(self.tuning == tuning)
        return QuerySet(self.name, tuple(self.texts[i] for i in keep),
                        tuple(self.relevant[i] for i in keep), self.tuning[keep],
                        None if self.twins is None else self.twins[keep])


def natural_title(title: str) -> str:
    """'Shawshank Redemption, The (1994)' → 'The Shawshank Redemption': how people type it."""
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip()
    m = re.match(r"^(.*), (The|A|An|Il|La|Le|Les|Das|Der|Die|El)$", t)
    return f"{m.group(2)} {m.group(1)}" if m else t


def _neighbours(ch: str) -> str:
    for row in _KEYBOARD:
        i = row.find(ch)
        if i >= 0:
            return row[max(0, i - 1):i] + row[i + 1:i + 2]
    return ""


def typo(word: str, kind: str, rng: np.random.Generator) -> str:
    """One typo of `kind` inside a word (never at its first letter, where people rarely slip)."""
    lower = word.lower()
    letters = [i for i in range(1, len(word)) if lower[i].isalpha()]
    if not letters:
        return word
    i = int(rng.choice(letters))
    if kind == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "delete" or kind == "swap":
        return word[:i] + word[i + 1:]
    if kind == "insert":
        return word[:i] + chr(int(rng.integers(ord("a"), ord("z") + 1))) + word[i:]
    if kind == "substitute" and _neighbours(lower[i]):
        return word[:i] + str(rng.choice(list(_neighbours(lower[i])))) + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # "double" (and substitute without a neighbour)


def typed_title(title: str, rng: np.random.Generator) -> str | None:
    """The title with 1 or 2 typos in different words of 4+ characters (None: no such word)."""
    words = title.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4]
    if not candidates:
        return None
    n = min(len(candidates), 1 + int(rng.random() < 0.5))
    for i in rng.choice(candidates, size=n, replace=False):
        words[i] = typo(words[i], str(rng.choice(TYPO_KINDS)), rng)
    return " ".join(words)


def partial_title(title: str, rng: np.random.Generator) -> str | None:
    """A contiguous run of about half the words (at least one of 4+ letters), article dropped."""
    words = title.split(" ")
    if words and words[0].lower() in _ARTICLES:
        words = words[1:]
    if len(words) < 2:
        return None
    size = max(1, len(words) // 2)
    starts = [s for s in range(len(words) - size + 1)
              if any(len(re.sub(r"\W", "", w)) >= 4 for w in words[s:s + size])]
    if not starts:
        return None
    s = int(rng.choice(starts))
    return " ".join(words[s:s + size])


def _item_split(n_items: int, rng: np.random.Generator) -> np.ndarray:
    """tuning[item_id] for ids 1..n (index 0 unused)."""
    tuning = np.zeros(n_items + 1, bool)
    order = rng.permutation(np.arange(1, n_items + 1))
    tuning[order[:int(round(TUNING_SHARE * n_items))]] = True
    return tuning


def query_sets(c: Catalogue, years: np.ndarray, seed: int = SEED) -> dict[str, QuerySet]:
    """All four sets; `years` = release year per item id (search_model.release_years)."""
    rng = np.random.default_rng(seed)
    item_tuning = _item_split(c.n_items, rng)
    ids = np.arange(1, c.n_items + 1, dtype=np.int64)
    titles = {int(i): natural_title(c.item_title[i]) for i in ids}
    same_title = collections.Counter(normalise(t) for t in titles.values())
    out = {}
    for name, make in (("typo_title", typed_title), ("partial_title", partial_title)):
        texts, rel = [], []
        for i in ids:
            q = make(titles[int(i)], rng)
            if q is not None:
                texts.append(q)
                rel.append(np.array([i], np.int64))
        out[name] = QuerySet(name, tuple(texts), tuple(rel),
                             np.array([item_tuning[r[0]] for r in rel], bool),
                             np.array([same_title[normalise(titles[int(r[0])])] for r in rel]))
    out["year_genre"] = _year_genre(c, years, rng)
    out["genre_description"] = _genre_descriptions(c)
    return out


def _year_genre(c: Catalogue, years: np.ndarray, rng: np.random.Generator,
                min_items: int = 3) -> QuerySet:
    texts, rel = [], []
    for g, genre in enumerate(GENRES):
        if genre == "unknown":
            continue
        for year in sorted({y for y in years if y}):
            items = np.flatnonzero((years == year) & (c.item_genres[:, g] > 0)).astype(np.int64)
            items = items[items > 0]
            if items.size >= min_items:
                template = YEAR_GENRE_TEMPLATES[int(rng.integers(len(YEAR_GENRE_TEMPLATES)))]
                word = GENRE_WORDS.get(genre, genre.lower())
                texts.append(template.format(genre=word, year=year))
                rel.append(items)
    tuning = np.zeros(len(texts), bool)
    tuning[rng.permutation(len(texts))[:int(round(TUNING_SHARE * len(texts)))]] = True
    return QuerySet("year_genre", tuple(texts), tuple(rel), tuning)


def _genre_descriptions(c: Catalogue) -> QuerySet:
    texts, rel, tuning = [], [], []
    for genre, descriptions in GENRE_DESCRIPTIONS.items():
        items = np.flatnonzero(c.item_genres[:, GENRES.index(genre)] > 0).astype(np.int64)
        for j, d in enumerate(descriptions):
            texts.append(d)
            rel.append(items[items > 0])
            tuning.append(j >= 2)
    return QuerySet("genre_description", tuple(texts), tuple(rel), np.array(tuning, bool))
