"""A word n-gram language model with modified Kneser-Ney smoothing, stored as an ARPA file.

The beam search of :mod:`decoding` asks this model how likely each next word is. It is trained
from the training transcripts only (never the test split) and is written in the ARPA text format
that KenLM, SRILM and pyctcdecode read.

Smoothing: interpolated modified Kneser-Ney (Chen & Goodman 1998), the recipe of KenLM's lmplz:

* the highest order uses raw counts; lower orders use *continuation* counts (how many distinct
  words precede the n-gram), except n-grams starting with ``<s>``, which keep raw counts because
  nothing can precede the sentence start;
* each order n has three discounts D1, D2, D3+ from its counts-of-counts t1..t4:
  ``Y = t1 / (t1 + 2 t2)``, ``Dk = k - (k + 1) Y t(k+1) / tk``;
* ``p(w | h) = (a(hw) - D(a(hw))) / S(h) + gamma(h) p(w | h')`` with
  ``gamma(h) = (D1 N1(h) + D2 N2(h) + D3+ N3+(h)) / S(h)``, and the unigrams interpolate with
  the uniform distribution over the vocabulary (``<unk>`` included, ``<s>`` excluded: it is never
  predicted, so its ARPA probability is the conventional -99); with the closed vocabulary of
  :meth:`NGramLM.train_tokens` (the character LM's), over that vocabulary and ``</s>``, and
  ``<unk>`` is never predicted either.

Interpolated probabilities of the seen n-grams plus ``gamma(h)`` as the backoff weight give the
backoff form an ARPA file holds; :meth:`NGramLM.log10_prob` evaluates exactly that form, so a model
read back from its file scores like the one that wrote it. All probabilities are log10 (the ARPA
convention); the decoder converts to natural log.

On tiny corpora a counts-of-counts can be zero (lmplz refuses such data); then that discount
falls back to ``Y`` clipped to ``(0, k]`` (absolute discounting), or 0.5 when ``Y`` is undefined.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ctclab.data.descriptors import read_texts

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NEVER_LOG10 = -99.0  # ARPA convention for "never predicted" (the sentence start)


class ARPAFormatError(ValueError):
    """An ARPA file that cannot be parsed; the message names the file, line and problem."""


def modified_kneser_ney_discounts(count_of_counts: Counter) -> tuple[float, float, float]:
    """D1, D2, D3+ of one order from its counts-of-counts ``{k: number of n-grams seen k times}``.

    Falls back to ``Y = t1 / (t1 + 2 t2)`` (or 0.5) for a discount whose formula needs a zero
    count or leaves the valid range ``(0, k]``.
    """
    t = [count_of_counts.get(k, 0) for k in range(5)]  # t[k]: n-grams with adjusted count k
    y = t[1] / (t[1] + 2 * t[2]) if t[1] + 2 * t[2] > 0 and t[1] > 0 else None
    discounts = []
    for k in (1, 2, 3):
        value = k - (k + 1) * y * t[k + 1] / t[k] if y is not None and t[k] > 0 else math.nan
        if not 0 < value <= k:
            value = min(float(k), y) if y is not None else 0.5
        discounts.append(value)
    return discounts[0], discounts[1], discounts[2]


def tokenize(text: str) -> list[str]:
    """Words of a transcript: lower case, split on whitespace."""
    return text.lower().split()


class NGramLM:
    """A backoff word n-gram model: log10 probabilities and backoff weights per n-gram.

    Build one with :meth:`train` or :meth:`load_arpa`.

    Attributes:
        order: n, the longest n-gram.
        log10_probs: per order (index 0 = unigrams), n-gram tuple -> log10 p(last word | rest).
        log10_backoffs: n-gram tuple (order < n) -> log10 backoff weight when it is a context.
    """

    def __init__(self, order: int, log10_probs: list[dict], log10_backoffs: dict):
        if order < 1 or len(log10_probs) != order:
            raise ValueError(f"order {order} needs {order} n-gram tables, got {len(log10_probs)}")
        self.order = order
        self.log10_probs = log10_probs
        self.log10_backoffs = log10_backoffs
        self.vocabulary = frozenset(word for (word,) in log10_probs[0])
        self.words = self.vocabulary - {BOS, EOS, UNK}  # the real words
        self.word_prefixes = frozenset(word[:end] for word in self.words for end in range(1, len(word) + 1))
        self._memo: dict[tuple, float] = {}  # (word, context) -> log10 p: the decoder asks often
        self._tries: dict[str, np.ndarray] = {}  # alphabet characters -> spelling trie
        if UNK not in self.vocabulary:
            raise ValueError(f"a language model needs an {UNK} unigram; vocabulary has {len(self.vocabulary)} words")

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, texts: Iterable[str], order: int = 3) -> NGramLM:
        """Fit an interpolated modified Kneser-Ney model to transcripts.

        Args:
            texts: one sentence per item; words are split on whitespace.
            order: n of the n-grams (1 = unigram model).

        Raises:
            ValueError: for order < 1 or no words in ``texts``.
        """
        return cls.train_tokens([tokenize(text) for text in texts], order)

    @classmethod
    def train_tokens(
        cls, tokenized: Iterable[Sequence[str]], order: int = 3, closed_vocabulary: Iterable[str] | None = None
    ) -> NGramLM:
        """Fit the model to sentences already split into tokens (words, or characters for a character LM).

        Args:
            tokenized: one token sequence per sentence, without ``<s>`` / ``</s>``.
            order: n of the n-grams (1 = unigram model).
            closed_vocabulary: every token the model can predict besides ``</s>``; the unigrams
                interpolate with the uniform distribution over these and ``</s>``, and ``<unk>`` is
                never predicted (-99, like ``<s>``). None: the tokens seen, plus ``<unk>``.

        Raises:
            ValueError: for order < 1, no tokens, or a token outside ``closed_vocabulary``.
        """
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        sentences = [[BOS, *tokens, EOS] for tokens in tokenized]
        sentences = [sentence for sentence in sentences if len(sentence) > 2]
        if not sentences:
            raise ValueError("no words to train a language model on (every text is empty)")
        counts = _adjusted_counts(sentences, order)
        vocabulary = sorted({word for sentence in sentences for word in sentence} | {UNK})
        predicted = [word for word in vocabulary if word != BOS]  # words a model can output
        if closed_vocabulary is not None:
            closed = set(closed_vocabulary)
            outside = sorted(set(vocabulary) - closed - {BOS, EOS, UNK})
            if outside:
                raise ValueError(f"tokens {outside!r} are outside the closed vocabulary")
            predicted = sorted((closed - {BOS, UNK}) | {EOS})

        log10_probs: list[dict] = []
        log10_backoffs: dict = {}
        lower: dict[tuple, float] = {}  # interpolated probabilities of the order below
        for n in range(1, order + 1):
            grams = counts[n - 1]
            discounts = modified_kneser_ney_discounts(Counter(grams.values()))
            totals: defaultdict[tuple, int] = defaultdict(int)
            buckets: defaultdict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
            for gram, count in grams.items():
                totals[gram[:-1]] += count
                buckets[gram[:-1]][min(count, 3) - 1] += 1
            gammas = {
                context: sum(d * b for d, b in zip(discounts, buckets[context])) / total
                for context, total in totals.items()
            }
            probabilities = {}
            if n == 1:  # interpolate with the uniform distribution over the predicted words
                gamma = gammas[()]
                for word in predicted:
                    count = grams.get((word,), 0)
                    discounted = max(count - discounts[min(count, 3) - 1], 0.0) if count else 0.0
                    probabilities[(word,)] = discounted / totals[()] + gamma / len(predicted)
            else:
                for gram, count in grams.items():
                    discounted = count - discounts[min(count, 3) - 1]
                    probabilities[gram] = discounted / totals[gram[:-1]] + gammas[gram[:-1]] * lower[gram[1:]]
            table = {gram: math.log10(p) for gram, p in probabilities.items()}
            if n == 1:
                table[(BOS,)] = NEVER_LOG10
                if closed_vocabulary is not None:
                    table[(UNK,)] = NEVER_LOG10
            log10_probs.append(table)
            for context, gamma in gammas.items():
                if context:  # the empty context (unigrams) has no ARPA line
                    log10_backoffs[context] = math.log10(gamma) if gamma > 0 else 0.0
            lower = probabilities
        return cls(order, log10_probs, log10_backoffs)

    @classmethod
    def from_descriptors(cls, desc_file: str | Path, order: int = 3) -> NGramLM:
        """Train on the ``text`` of every line of a JSON-lines descriptor file (the training split)."""
        return cls.train(read_texts(desc_file), order)

    # ------------------------------------------------------------------ queries

    def log10_prob(self, word: str, context: tuple[str, ...] = ()) -> float:
        """log10 p(word | context) by backoff; unknown words (in either place) count as ``<unk>``.

        Args:
            word: the next word (``</s>`` for the sentence end).
            context: preceding words, oldest first; ``("<s>", ...)`` for a sentence start. Only
                the last ``order - 1`` are used.
        """
        context = context[-(self.order - 1) :] if self.order > 1 else ()
        key = (word, context)
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = self._backoff_log10_prob(word, context)
        return value

    def _backoff_log10_prob(self, word: str, context: tuple[str, ...]) -> float:
        word = word if word in self.vocabulary else UNK
        context = tuple(w if w in self.vocabulary else UNK for w in context)
        penalty = 0.0
        while True:
            value = self.log10_probs[len(context)].get((*context, word))
            if value is not None:
                return penalty + value
            penalty += self.log10_backoffs.get(context, 0.0)
            context = context[1:]

    def spelling_trie(self, characters: str) -> np.ndarray:
        """Child table of the trie of vocabulary spellings, for a decoder that spells words.

        Node 0 is the empty word, nodes 1..N-1 the other prefixes of vocabulary words; row and
        value N stand for "begins no vocabulary word" (the dead node, its own child).

        Args:
            characters: the alphabet, index order.

        Returns:
            (N + 1, len(characters)) int32: ``table[node, c]`` is the node of prefix + c.
        """
        if characters not in self._tries:
            nodes = {"": 0}
            for prefix in sorted(self.word_prefixes, key=lambda text: (len(text), text)):
                if all(ch in characters for ch in prefix):
                    nodes[prefix] = len(nodes)
            table = np.full((len(nodes) + 1, len(characters)), len(nodes), np.int32)
            for prefix, node in nodes.items():
                for index, character in enumerate(characters):
                    table[node, index] = nodes.get(prefix + character, len(nodes))
            self._tries[characters] = table
        return self._tries[characters]

    def clear_cache(self) -> None:
        """Forget the remembered (word, context) scores (benchmarks start every decoder cold)."""
        self._memo.clear()

    def score_sentence(self, text: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a whole transcript (with ``<s>`` / ``</s>`` when asked)."""
        context: tuple[str, ...] = (BOS,) if bos else ()
        total = 0.0
        for word in tokenize(text) + ([EOS] if eos else []):
            total += self.log10_prob(word, context)
            context = (*context, word)[-(self.order - 1) :] if self.order > 1 else ()
        return total

    def counts(self) -> list[int]:
        """Number of n-grams of each order (the ARPA header)."""
        return [len(table) for table in self.log10_probs]

    # ------------------------------------------------------------------ ARPA files

    def save_arpa(self, path: str | Path) -> Path:
        """Write the model as an ARPA file (log10 probabilities, tab separated, sorted)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["", "\\data\\"] + [f"ngram {n}={count}" for n, count in enumerate(self.counts(), start=1)]
        for n, table in enumerate(self.log10_probs, start=1):
            lines += ["", f"\\{n}-grams:"]
            for gram in sorted(table):
                row = f"{table[gram]:.7f}\t{' '.join(gram)}"
                if n < self.order:  # every lower-order line carries a backoff, as lmplz writes them
                    row += f"\t{self.log10_backoffs.get(gram, 0.0):.7f}"
                lines.append(row)
        lines += ["", "\\end\\", ""]
        path.write_text("\n".join(lines))
        return path

    @classmethod
    def load_arpa(cls, path: str | Path) -> NGramLM:
        """Read an ARPA file (ours or another tool's).

        Raises:
            ARPAFormatError: a missing header or section, a malformed line, or a section whose
                number of lines differs from its header count; the message names file and line.
        """
        path = Path(path)
        if not path.is_file():
            raise ARPAFormatError(f"{path}: ARPA file does not exist")
        header: dict[int, int] = {}
        tables: list[dict] = []
        backoffs: dict = {}
        section: str | int | None = None  # "data", or the n of the n-gram section being read
        for line_number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.strip()
            where = f"{path}:{line_number}"
            if not line:
                continue
            if line == "\\data\\":
                section = "data"
            elif line == "\\end\\":
                break
            elif match := re.fullmatch(r"\\(\d+)-grams:", line):
                section = int(match.group(1))
                if section != len(tables) + 1:
                    raise ARPAFormatError(f"{where}: section {line!r} out of order")
                tables.append({})
            elif section == "data":
                match = re.fullmatch(r"ngram (\d+)\s*=\s*(\d+)", line)
                if not match:
                    raise ARPAFormatError(f"{where}: expected 'ngram N=COUNT' in \\data\\, got {line!r}")
                header[int(match.group(1))] = int(match.group(2))
            elif isinstance(section, int):
                fields = line.split()
                if len(fields) not in (section + 1, section + 2):
                    raise ARPAFormatError(
                        f"{where}: a {section}-gram line needs {section + 1} or {section + 2} fields, got {line!r}"
                    )
                try:
                    values = [float(fields[0])] + ([float(fields[-1])] if len(fields) == section + 2 else [])
                except ValueError as error:
                    raise ARPAFormatError(f"{where}: bad number in {line!r}") from error
                gram = tuple(fields[1 : section + 1])
                tables[-1][gram] = values[0]
                if len(values) == 2:
                    backoffs[gram] = values[1]
            else:
                raise ARPAFormatError(f"{where}: text before the \\data\\ header: {line!r}")
        if not header:
            raise ARPAFormatError(f"{path}: no \\data\\ header")
        for n, expected in header.items():
            found = len(tables[n - 1]) if n <= len(tables) else 0
            if found != expected:
                raise ARPAFormatError(f"{path}: header says ngram {n}={expected} but the file has {found}")
        return cls(len(tables), tables, backoffs)


def _adjusted_counts(sentences: list[list[str]], order: int) -> list[dict[tuple, int]]:
    """Kneser-Ney adjusted counts of every order (index n - 1 holds the n-grams).

    The highest order and n-grams beginning with ``<s>`` keep raw counts; every other lower-order
    n-gram counts the distinct words seen just before it. The unigram ``<s>`` is left out (never
    predicted).
    """
    raw: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
    for sentence in sentences:
        for n in range(1, order + 1):
            for start in range(len(sentence) - n + 1):
                raw[n - 1][tuple(sentence[start : start + n])] += 1
    adjusted: list[dict[tuple, int]] = [dict() for _ in range(order)]
    adjusted[-1] = dict(raw[-1])
    for n in range(order - 1, 0, -1):
        left_extensions = Counter(gram[1:] for gram in raw[n])  # distinct (v, gram) -> count per gram
        for gram, count in raw[n - 1].items():
            adjusted[n - 1][gram] = count if gram[0] == BOS else left_extensions[gram]
    adjusted[0].pop((BOS,), None)
    return adjusted
