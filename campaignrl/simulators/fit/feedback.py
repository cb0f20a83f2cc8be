"""Customer feedback text as topic features: TF-IDF + NMF, a synthetic generator, segment topics.

Reviews and survey answers (a table of ``customer_id, text``) say what a customer cares
about: price, delivery, quality, rewards, the app... A topic model turns them into a few
numbers per customer that join the segmentation (``campaignrl fit-sim --feedback``), and the
fidelity report shows each segment's top topics and words.

The topic model is scikit-learn's: :class:`~sklearn.feature_extraction.text.TfidfVectorizer`
(English stop words removed, sublinear term frequency) and non-negative matrix factorization
(:class:`~sklearn.decomposition.NMF`, ``X ~ W H`` with ``W, H >= 0``; Lee and Seung, "Learning
the parts of objects by non-negative matrix factorization", Nature 401, 1999). NMF on TF-IDF
is the usual choice for short texts (scikit-learn's "Topic extraction with NMF and LDA"
example): its topics are sharper than LDA's on a few words per document, and it is
deterministic given its seed. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar

__all__ = [
    "FEEDBACK_COLUMNS",
    "TOPIC_VOCABULARY",
    "TopicSummary",
    "segment_topics",
    "synthetic_feedback",
    "topic_features",
]

FEEDBACK_COLUMNS: tuple[str, ...] = ("customer_id", "text")
"""the columns of a feedback table"""

TOPIC_VOCABULARY: dict[str, tuple[str, ...]] = {
    "price": ("price", "discount", "coupon", "expensive", "cheap", "deal", "sale", "bargain",
              "savings", "promo", "voucher", "pricey"),
    "delivery": ("delivery", "shipping", "courier", "late", "parcel", "arrived", "tracking",
                 "dispatch", "package", "delayed", "postage", "doorstep"),
    "quality": ("quality", "material", "fabric", "durable", "broke", "sturdy", "stitching",
                "flimsy", "craftsmanship", "lasted", "defect", "premium"),
    "loyalty": ("points", "rewards", "member", "loyalty", "tier", "birthday", "perks",
                "membership", "redeem", "exclusive", "bonus", "vip"),
    "app": ("app", "notifications", "login", "crash", "update", "password", "checkout",
            "website", "button", "slow", "screen", "account"),
    "service": ("support", "agent", "refund", "return", "helpful", "rude", "chat", "replied",
                "complaint", "resolved", "exchange", "hotline"),
    "sustainability": ("packaging", "plastic", "recycled", "eco", "sustainable", "organic",
                       "carbon", "ethical", "waste", "environment", "green", "fairtrade"),
    "range": ("selection", "stock", "sizes", "colours", "variety", "range", "brands",
              "collection", "restock", "styles", "choice", "catalogue"),
}  # fmt: skip
"""the synthetic generator's topics and their words (disjoint vocabularies)"""

_SHARED_WORDS: tuple[str, ...] = (
    "order", "store", "bought", "item", "week", "really", "good", "think", "service",
    "customer", "product", "time", "experience", "shop", "overall", "thing", "recommend",
    "nice", "okay", "great",
)  # fmt: skip
"""words every customer uses, whatever their concerns (they carry no segment signal)"""

_SHARED_RATE = 0.3
"""share of a text's words drawn from :data:`_SHARED_WORDS`"""
_NOISE_RATE = 0.1
"""share of a text's words that are noise tokens (typos, names, codes)"""
_N_NOISE_TOKENS = 400
"""size of the noise vocabulary: rare tokens, as typos and order codes are"""
_CUSTOMER_CONCENTRATION = 20.0
"""Dirichlet concentration of a customer's topic mix around the segment's: customers of a
segment share concerns, but not exactly"""
_TOP_WORDS = 8
"""words kept per topic in the summary"""
_MIN_DF_FROM = 50
"""from this many texts on, a word must occur in two texts to count (drops typos and ids)"""


# --------------------------------------------------------------------------------------------
# Synthetic feedback
# --------------------------------------------------------------------------------------------


def synthetic_feedback(
    segments: np.ndarray,
    rng: np.random.Generator,
    *,
    customer_ids: Sequence[str] | None = None,
    texts_per_customer: float = 1.5,
    topic_strength: float = 0.8,
    words_per_text: tuple[int, int] = (8, 20),
) -> pd.DataFrame:
    """Feedback texts whose topics depend on each customer's true segment (tests, benchmarks).

    Segment ``k`` cares about two topics of :data:`TOPIC_VOCABULARY`: topic ``k mod T``
    (weight 2/3) and topic ``(k + 1 + k // T) mod T`` (weight 1/3), so neighbouring segments
    share a secondary concern; ``topic_strength`` of its topic mass sits on them and the rest
    spreads evenly over all ``T`` topics. Each customer's mix is a Dirichlet draw around the
    segment's (concentration 20). Each text has ``U(words_per_text)`` words: 30% shared
    words (:data:`_SHARED_WORDS`), 10% noise tokens, the rest drawn from the customer's
    topics. The number of texts per customer is Poisson, so some customers write nothing.

    Args:
        segments: ``(n,)`` true segment index of each customer (integers >= 0).
        rng: The only source of randomness: the same seed gives the same table.
        customer_ids: Id of each customer (default ``"0"``, ``"1"``, ...).
        texts_per_customer: Mean number of texts per customer (Poisson), > 0.
        topic_strength: Share of the topic words drawn from the segment's own topics, in
            [0, 1]; 0 makes every segment write alike (no signal).
        words_per_text: Smallest and largest number of words in a text.

    Returns:
        A DataFrame with columns ``customer_id`` (str) and ``text`` (str), one row per text,
        customers in order.

    Examples:
        >>> fb = synthetic_feedback(np.array([0, 1, 1]), np.random.default_rng(0))
        >>> list(fb.columns), fb["customer_id"].isin(["0", "1", "2"]).all()
        (['customer_id', 'text'], np.True_)
    """
    seg = np.asarray(segments)
    if seg.ndim != 1 or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(
            f"`segments` must be a 1D array of integers, got {seg.dtype} of shape {seg.shape}"
        )
    if seg.size and seg.min() < 0:
        raise ValueError(f"`segments` must be >= 0, got {int(seg.min())}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator, got {type(rng).__name__}")
    check_scalar(texts_per_customer, "texts_per_customer", (int, float), min_val=0.0,
                 min_inclusive=False)  # fmt: skip
    check_scalar(topic_strength, "topic_strength", (int, float), min_val=0.0, max_val=1.0)
    lo, hi = _check_word_range(words_per_text)
    n = seg.shape[0]
    ids = [str(i) for i in range(n)] if customer_ids is None else [str(c) for c in customer_ids]
    if len(ids) != n:
        raise ValueError(f"`customer_ids` must name the {n} customers, got {len(ids)} ids")

    topics = list(TOPIC_VOCABULARY.values())
    n_topics = len(topics)
    n_seg = int(seg.max()) + 1 if n else 0
    mix = np.full((n_seg, n_topics), (1.0 - topic_strength) / n_topics)
    for k in range(n_seg):
        mix[k, k % n_topics] += topic_strength * 2.0 / 3.0
        mix[k, (k + 1 + k // n_topics) % n_topics] += topic_strength / 3.0
    # noise tokens: random lowercase strings, fixed by the rng like everything else
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    noise = np.array(["".join(rng.choice(letters, size=6)) for _ in range(_N_NOISE_TOKENS)])
    shared = np.array(_SHARED_WORDS)

    counts = rng.poisson(float(texts_per_customer), size=n)
    # A customer's topic mix: Dirichlet(20 * segment mix), drawn as normalized gammas (the
    # floor keeps every shape > 0 when topic_strength = 1 leaves a topic at zero).
    gamma = rng.standard_gamma(_CUSTOMER_CONCENTRATION * mix[seg] + 1e-3) if n else mix[seg]
    customer_mix = gamma / np.maximum(gamma.sum(axis=1, keepdims=True), 1e-300)

    # Every word of every text at once: its text, its kind, and the word itself.
    owner = np.repeat(np.arange(n), counts)  # (texts,) customer of each text
    n_words = rng.integers(lo, hi + 1, size=owner.size)
    word_text = np.repeat(np.arange(owner.size), n_words)  # (words,) text of each word
    word_owner = owner[word_text]
    kind = rng.random(word_text.size)
    cum = np.cumsum(customer_mix, axis=1)
    u = rng.random(word_text.size)[:, None] * cum[word_owner, -1:]
    topic = np.minimum((cum[word_owner] < u).sum(axis=1), n_topics - 1)  # inverse CDF
    pick = rng.integers(0, 1 << 30, size=word_text.size)
    table = np.array([w for words in topics for w in words] + list(shared) + list(noise))
    start = np.cumsum([0] + [len(words) for words in topics])
    sizes = np.diff(start)
    word = start[topic] + pick % sizes[topic]  # a word of its topic
    is_shared = kind < _SHARED_RATE
    word = np.where(is_shared, start[-1] + pick % len(shared), word)
    is_noise = ~is_shared & (kind < _SHARED_RATE + _NOISE_RATE)
    word = np.where(is_noise, start[-1] + len(shared) + pick % len(noise), word)
    tokens = table[word]
    ends = np.cumsum(n_words)
    texts = [
        " ".join(tokens[e - k : e].tolist()).capitalize() + "."
        for e, k in zip(ends.tolist(), n_words.tolist(), strict=True)
    ]
    return pd.DataFrame(
        {
            "customer_id": pd.Series([ids[i] for i in owner.tolist()], dtype=object),
            "text": pd.Series(texts, dtype=object),
        }
    )


def _check_word_range(words_per_text: Any) -> tuple[int, int]:
    ok = (
        isinstance(words_per_text, tuple)
        and len(words_per_text) == 2
        and all(isinstance(w, int) and not isinstance(w, bool) for w in words_per_text)
        and 1 <= words_per_text[0] <= words_per_text[1]
    )
    if not ok:
        raise ValueError(
            f"`words_per_text` must be a (low, high) pair of integers with 1 <= low <= high, "
            f"got {words_per_text!r}"
        )
    return int(words_per_text[0]), int(words_per_text[1])


# --------------------------------------------------------------------------------------------
# Topic features
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TopicSummary:
    """What the topic model found, and what it did with the input (for the report)."""

    n_topics: int
    """number of topics"""
    top_words: tuple[tuple[str, ...], ...]
    """the highest-weight words of each topic (rows of ``H``), strongest first"""
    topic_share: tuple[float, ...]
    """mean share of each topic over the customers with text"""
    has_text: np.ndarray = field(repr=False)
    """(n,) bool: the customer wrote at least one non-blank text (others got the mean)"""
    n_texts: int
    """rows of the feedback table"""
    n_texts_used: int
    """texts the model was fitted on (non-blank, of a known customer)"""
    n_blank: int
    """texts that were missing or blank (skipped)"""
    n_unknown_texts: int
    """texts of customers not in ``customer_ids`` (skipped)"""
    n_unknown_customers: int
    """distinct customer ids of the feedback not in ``customer_ids``"""
    unknown_examples: tuple[str, ...]
    """a few of those ids, for the message"""
    vocabulary_size: int
    """words the TF-IDF kept"""

    def describe(self) -> list[str]:
        """One plain sentence per thing the user should know (skipped texts, coverage)."""
        n = int(self.has_text.shape[0])
        with_text = int(self.has_text.sum())
        notes = [
            f"feedback: {self.n_texts_used:,} texts of {with_text:,} of {n:,} customers "
            f"({with_text / max(n, 1):.0%}) -> {self.n_topics} topics over "
            f"{self.vocabulary_size:,} words; customers without text get the mean topic mix"
        ]
        if self.n_unknown_texts:
            examples = ", ".join(repr(e) for e in self.unknown_examples)
            notes.append(
                f"feedback: {self.n_unknown_texts:,} texts of {self.n_unknown_customers:,} "
                f"customer ids that are not in the log were skipped (e.g. {examples})"
            )
        if self.n_blank:
            notes.append(f"feedback: {self.n_blank:,} missing or blank texts were skipped")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (the per-customer ``has_text`` as its count only)."""
        return {
            "n_topics": self.n_topics,
            "top_words": [list(w) for w in self.top_words],
            "topic_share": list(self.topic_share),
            "n_customers": int(self.has_text.shape[0]),
            "n_customers_with_text": int(self.has_text.sum()),
            "n_texts": self.n_texts,
            "n_texts_used": self.n_texts_used,
            "n_blank": self.n_blank,
            "n_unknown_texts": self.n_unknown_texts,
            "n_unknown_customers": self.n_unknown_customers,
            "unknown_examples": list(self.unknown_examples),
            "vocabulary_size": self.vocabulary_size,
        }


def topic_features(
    feedback: pd.DataFrame,
    customer_ids: Sequence[Any] | np.ndarray,
    *,
    n_topics: int = 8,
    seed: int = 0,
) -> tuple[np.ndarray, TopicSummary]:
    """Each customer's topic mix from their feedback texts (TF-IDF, then NMF).

    The texts are the documents: ``X`` (texts x words) is their TF-IDF matrix
    (``tf * idf`` with sublinear ``tf = 1 + log(count)`` and smooth ``idf = 1 + log((1 + N) /
    (1 + df))``, rows L2-normalized) and NMF finds ``X ~ W H``, ``W, H >= 0``, minimizing
    ``||X - W H||_F^2`` (Lee and Seung, Nature 401, 1999; ``nndsvda`` start, seeded).
    A customer's features are the sum of their texts' rows of ``W``, divided by its total:
    the **share** of each topic in what they wrote, so a customer who writes a lot weighs as
    much as one who writes little.

    Customers without text get the **mean** share of the customers with text, not zeros:
    zeros would put every silent customer at one corner of topic space, and a clustering on
    these features would then split writers from non-writers instead of finding segments;
    the mean is the least informative point, so the other features place those customers.
    ``TopicSummary.has_text`` says who wrote.

    Missing or blank texts are skipped; texts of customers not in ``customer_ids`` are skipped
    and counted (:meth:`TopicSummary.describe` says so). Ids are compared as strings.

    Args:
        feedback: Table with columns ``customer_id`` and ``text`` (strings; missing texts
            allowed); other columns are ignored.
        customer_ids: The customers to describe, in the order of the rows returned (unique).
        n_topics: Number of topics (NMF components), >= 1.
        seed: Seed of the NMF start (``random_state``); the same seed gives the same result.

    Returns:
        ``(features, summary)``: ``(len(customer_ids), n_topics)`` float64 topic shares (each
        row sums to 1), and the :class:`TopicSummary`.

    Raises:
        TypeError: If ``feedback`` is not a DataFrame.
        ValueError: On a missing column, a missing customer id, a text that is not a string
            (naming the row and value), duplicate ``customer_ids``, no usable text of a known
            customer, or too few texts or words for ``n_topics`` topics.

    Examples:
        >>> fb = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
        ...                    "text": ["late delivery again", "parcel delivery late",
        ...                             "great discount price", None]})
        >>> feats, summary = topic_features(fb, ["a", "b", "c", "d"], n_topics=2)
        >>> feats.shape, summary.has_text.tolist(), summary.n_blank
        ((4, 2), [True, True, False, False], 1)
        >>> np.allclose(feats.sum(axis=1), 1.0)
        True
    """
    from sklearn.decomposition import NMF
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not isinstance(feedback, pd.DataFrame):
        raise TypeError(f"`feedback` must be a pandas DataFrame, got {type(feedback).__name__}")
    check_scalar(n_topics, "n_topics", int, min_val=1)
    check_scalar(seed, "seed", int, min_val=0)
    missing = [c for c in FEEDBACK_COLUMNS if c not in feedback.columns]
    if missing:
        raise ValueError(
            f"feedback is missing column(s) {missing}: it needs `customer_id` and `text`, "
            f"got columns {[str(c) for c in feedback.columns][:10]}"
        )
    if len(feedback) == 0:
        raise ValueError("feedback is empty: it has no rows (texts)")
    ids = [str(c) for c in np.asarray(customer_ids, dtype=object).ravel()]
    index = pd.Index(ids)
    if not index.is_unique:
        dup = str(index[index.duplicated()][0])
        raise ValueError(f"`customer_ids` must be unique, got {dup!r} twice")
    n = len(ids)

    who = feedback["customer_id"].reset_index(drop=True)
    text = feedback["text"].reset_index(drop=True)
    absent = who.isna().to_numpy()
    if absent.any():
        row = int(np.argmax(absent))
        raise ValueError(f"column `customer_id` must not be missing: row {row} has {who[row]!r}")
    blank = text.isna().to_numpy().copy()
    is_str = np.fromiter((isinstance(t, str) for t in text.tolist()), dtype=bool, count=len(text))
    bad = ~(is_str | blank)
    if bad.any():
        row = int(np.argmax(bad))
        value = repr(text[row])
        value = value if len(value) <= 60 else value[:57] + "..."
        raise ValueError(f"column `text` must hold strings: row {row} has {value}")
    blank |= is_str & (text.where(is_str, "").str.strip() == "").to_numpy()
    who_str = who.astype(str)
    position = index.get_indexer(who_str)  # -1: not a customer of the log
    unknown = position < 0
    unknown_ids = pd.unique(who_str[unknown])
    use = ~blank & ~unknown
    if not use.any():
        if unknown.all():
            examples = ", ".join(repr(u) for u in unknown_ids[:3])
            raise ValueError(
                f"no feedback text belongs to a customer of the log: its {len(unknown_ids):,} "
                f"customer ids (e.g. {examples}) are all unknown"
            )
        raise ValueError(
            "feedback has no text to learn from: every text of a known customer is blank"
        )
    docs = text[use].tolist()
    owner = position[use]

    vectorizer = TfidfVectorizer(
        stop_words="english",
        sublinear_tf=True,
        lowercase=True,
        # a word in one text only is a typo, a name or an id once there are enough texts
        min_df=2 if len(docs) >= _MIN_DF_FROM else 1,
        max_df=0.95,
        max_features=20_000,
    )
    try:
        x = vectorizer.fit_transform(docs)
    except ValueError:  # sklearn: "empty vocabulary; perhaps the documents only contain stop words"
        raise ValueError(
            f"feedback has no usable words: its {len(docs):,} texts hold only stop words, "
            "numbers or one-letter tokens"
        ) from None
    words = vectorizer.get_feature_names_out()
    if n_topics > min(x.shape):
        raise ValueError(
            f"`n_topics` = {n_topics} needs at least that many texts and distinct words, got "
            f"{x.shape[0]:,} texts and {x.shape[1]:,} words: lower it"
        )
    # tol 1e-3: the topics (and the clustering on them) are settled long before the default
    # 1e-4 is met, which takes ten times the iterations
    nmf = NMF(n_components=n_topics, init="nndsvda", random_state=seed, tol=1e-3, max_iter=400)
    w = nmf.fit_transform(x)  # (texts, topics)

    totals = np.zeros((n, n_topics))
    np.add.at(totals, owner, w)
    mass = totals.sum(axis=1)
    # a text whose words all fell outside the vocabulary has an all-zero row: no topic said
    has_text = mass > 0.0
    features = np.empty((n, n_topics))
    features[has_text] = totals[has_text] / mass[has_text, None]
    mean_share = (
        features[has_text].mean(axis=0) if has_text.any() else np.full(n_topics, 1.0 / n_topics)
    )
    features[~has_text] = mean_share
    top = tuple(
        tuple(str(words[j]) for j in np.argsort(-row, kind="stable")[:_TOP_WORDS] if row[j] > 0)
        for row in nmf.components_
    )
    has_text.setflags(write=False)
    summary = TopicSummary(
        n_topics=n_topics,
        top_words=top,
        topic_share=tuple(float(s) for s in mean_share),
        has_text=has_text,
        n_texts=len(feedback),
        n_texts_used=int(use.sum()),
        n_blank=int(blank.sum()),
        n_unknown_texts=int((unknown & ~blank).sum()),
        n_unknown_customers=len(unknown_ids),
        unknown_examples=tuple(str(u) for u in unknown_ids[:3]),
        vocabulary_size=len(words),
    )
    return features, summary


# --------------------------------------------------------------------------------------------
# Segment topics (the fidelity report)
# --------------------------------------------------------------------------------------------


def segment_topics(
    features: np.ndarray,
    segments: np.ndarray,
    summary: TopicSummary,
    *,
    segment_names: Sequence[str] | None = None,
    n_top: int = 3,
) -> pd.DataFrame:
    """Each segment's top topics: mean share among its customers who wrote, and top words.

    Topics are ranked by their mean share in the segment; ``lift`` is that share divided by
    the topic's mean share over all customers with text (above 1: the segment talks about
    it more than the average customer). Customers without text (given the mean mix by
    :func:`topic_features`) are left out, so they do not pull every segment to the average.

    Args:
        features: ``(n, n_topics)`` topic shares from :func:`topic_features`.
        segments: ``(n,)`` segment index of each customer (fitted labels).
        summary: The :class:`TopicSummary` returned with ``features``.
        segment_names: Name of each segment index (default ``segment<k>``).
        n_top: Topics listed per segment.

    Returns:
        One row per segment and rank: ``segment``, ``rank`` (1 = top), ``topic``, ``share``,
        ``lift``, ``words`` (comma-separated top words) and ``n_with_text`` (customers of the
        segment who wrote). A segment in which nobody wrote has no rows.

    Examples:
        >>> fb = pd.DataFrame({"customer_id": ["a", "b"],
        ...                    "text": ["late delivery parcel", "discount coupon price"]})
        >>> feats, summary = topic_features(fb, ["a", "b"], n_topics=2)
        >>> table = segment_topics(feats, np.array([0, 1]), summary, n_top=1)
        >>> table[["segment", "rank", "n_with_text"]].values.tolist()
        [['segment0', 1, 1], ['segment1', 1, 1]]
    """
    feats = np.asarray(features, dtype=np.float64)
    seg = np.asarray(segments)
    n = summary.has_text.shape[0]
    if feats.shape != (n, summary.n_topics):
        raise ValueError(
            f"`features` must have shape ({n}, {summary.n_topics}) like the summary, "
            f"got {feats.shape}"
        )
    if seg.shape != (n,) or not np.issubdtype(seg.dtype, np.integer) or (seg < 0).any():
        raise ValueError(
            f"`segments` must be ({n},) non-negative integers, got {seg.dtype} {seg.shape}"
        )
    check_scalar(n_top, "n_top", int, min_val=1)
    n_seg = int(seg.max()) + 1 if n else 0
    names = (
        [f"segment{k}" for k in range(n_seg)]
        if segment_names is None
        else [str(s) for s in segment_names]
    )
    if len(names) < n_seg:
        raise ValueError(f"`segment_names` must name the {n_seg} segments, got {len(names)} names")
    wrote = summary.has_text
    overall = feats[wrote].mean(axis=0) if wrote.any() else np.zeros(summary.n_topics)
    rows: list[dict[str, Any]] = []
    for k in range(n_seg):
        members = wrote & (seg == k)
        if not members.any():
            continue
        share = feats[members].mean(axis=0)
        for rank, t in enumerate(np.argsort(-share, kind="stable")[:n_top], start=1):
            rows.append(
                {
                    "segment": names[k],
                    "rank": rank,
                    "topic": int(t),
                    "share": float(share[t]),
                    "lift": float(share[t] / overall[t]) if overall[t] > 0 else float("nan"),
                    "words": ", ".join(summary.top_words[t][:5]),
                    "n_with_text": int(members.sum()),
                }
            )
    columns = ["segment", "rank", "topic", "share", "lift", "words", "n_with_text"]
    return pd.DataFrame(rows, columns=columns)
