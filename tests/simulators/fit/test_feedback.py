"""Feedback text: the synthetic generator, topic features (TF-IDF + NMF), segment topics."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from campaignrl.simulators.fit.feedback import (
    TOPIC_VOCABULARY,
    TopicSummary,
    segment_topics,
    synthetic_feedback,
    topic_features,
)

N_SEG = 5
"""segments of the recovery test (as many as the retail preset has)"""
N_TOPICS = 8


def _segments(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, N_SEG, size=n)


def _ids(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def _clusters(features: np.ndarray) -> np.ndarray:
    """K-means labels (one thread: on a busy machine OpenMP's spinning threads make this
    small fit take seconds instead of a tenth of one; the labels are the same)."""
    with threadpool_limits(1):
        return KMeans(N_SEG, n_init=10, random_state=0).fit_predict(features)


@pytest.fixture(scope="module")
def recovery() -> dict[str, Any]:
    """3,000 customers of 5 segments, 1.5 texts each on average, topics by segment."""
    seg = _segments(3_000)
    feedback = synthetic_feedback(seg, np.random.default_rng(1), topic_strength=0.8)
    features, summary = topic_features(feedback, _ids(seg.size), n_topics=N_TOPICS, seed=0)
    return {"seg": seg, "feedback": feedback, "features": features, "summary": summary}


# ---------------------------------------------------------------------- the generator


def test_the_generator_is_deterministic_by_its_rng():
    seg = _segments(200)
    a = synthetic_feedback(seg, np.random.default_rng(5))
    b = synthetic_feedback(seg, np.random.default_rng(5))
    c = synthetic_feedback(seg, np.random.default_rng(6))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert list(a.columns) == ["customer_id", "text"]
    assert all(isinstance(t, str) and t.endswith(".") for t in a["text"])


def test_the_generator_writes_the_segment_topics_and_the_counts_asked_for():
    seg = np.repeat(np.arange(3), 2_000)
    fb = synthetic_feedback(
        seg,
        np.random.default_rng(0),
        customer_ids=[f"c{i}" for i in range(seg.size)],
        texts_per_customer=2.0,
        topic_strength=1.0,
        words_per_text=(10, 10),
    )
    # Poisson(2) texts per customer: mean 2 with sd sqrt(2 / 6000) = 0.018; 6 sd
    assert abs(len(fb) / seg.size - 2.0) < 6 * np.sqrt(2.0 / seg.size)
    # some customers write nothing: P(0) = e^-2 = 0.135
    assert fb["customer_id"].nunique() < seg.size
    assert set(fb["customer_id"]) <= {f"c{i}" for i in range(seg.size)}
    assert (fb["text"].str.split().str.len() == 10).all()
    # with topic_strength 1 a segment's topic words come from its two topics only (Dirichlet
    # floor 1e-3 of 20 aside): segment 0 writes price (2/3) and delivery (1/3) words
    topic_of = {w: t for t, words in TOPIC_VOCABULARY.items() for w in words}
    seg_of = dict(zip([f"c{i}" for i in range(seg.size)], seg, strict=True))
    counts: dict[int, dict[str, int]] = {0: {}, 1: {}, 2: {}}
    for cid, text in fb.itertuples(index=False):
        for word in text.rstrip(".").lower().split():
            if word in topic_of:
                bucket = counts[seg_of[cid]]
                bucket[topic_of[word]] = bucket.get(topic_of[word], 0) + 1
    names = list(TOPIC_VOCABULARY)
    for k in range(3):
        total = sum(counts[k].values())
        own = counts[k].get(names[k], 0) + counts[k].get(names[k + 1], 0)
        assert own / total > 0.99
        # 2/3 on the primary topic; customers' mixes vary (Dirichlet 20): the mean is 2/3
        # with sd about 0.1 / sqrt(2000) per customer: 0.05 is tens of sd
        assert abs(counts[k][names[k]] / total - 2 / 3) < 0.05


BAD_GENERATOR_ARGS = [
    ({"segments": np.array([0.5, 1.0])}, ValueError, "`segments` must be a 1D array of integers"),
    ({"segments": np.array([[0, 1]])}, ValueError, "`segments` must be a 1D array"),
    ({"segments": np.array([0, -1])}, ValueError, "`segments` must be >= 0, got -1"),
    ({"rng": 3}, TypeError, "`rng` must be a numpy.random.Generator, got int"),
    ({"texts_per_customer": 0.0}, ValueError, "`texts_per_customer` must be > 0.0"),
    ({"topic_strength": 1.5}, ValueError, r"`topic_strength` must be <= 1.0, got 1.5"),
    ({"words_per_text": (5, 2)}, ValueError, r"`words_per_text` must be a \(low, high\) pair"),
    ({"customer_ids": ["a"]}, ValueError, "`customer_ids` must name the 2 customers, got 1"),
]


@pytest.mark.parametrize(("changes", "err", "match"), BAD_GENERATOR_ARGS)
def test_the_generator_refuses_bad_arguments_by_name(changes, err, match):
    kwargs: dict[str, Any] = {"segments": np.array([0, 1]), "rng": np.random.default_rng(0)}
    kwargs |= changes
    with pytest.raises(err, match=match):
        synthetic_feedback(**kwargs)


# ---------------------------------------------------------------------- topic features


def test_features_are_topic_shares_and_silent_customers_get_the_mean(recovery):
    features, summary = recovery["features"], recovery["summary"]
    n = recovery["seg"].size
    assert features.shape == (n, N_TOPICS) and features.dtype == np.float64
    assert (features >= 0).all()
    np.testing.assert_allclose(features.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    writers = set(recovery["feedback"]["customer_id"])
    np.testing.assert_array_equal(summary.has_text, [str(i) in writers for i in range(n)])
    silent = ~summary.has_text
    assert silent.any()  # Poisson(1.5): e^-1.5 = 22% write nothing
    mean = features[summary.has_text].mean(axis=0)
    np.testing.assert_allclose(features[silent], np.broadcast_to(mean, features[silent].shape))
    np.testing.assert_allclose(summary.topic_share, mean)
    assert summary.n_texts == summary.n_texts_used == len(recovery["feedback"])
    assert summary.n_unknown_texts == summary.n_blank == 0
    json.dumps(summary.to_dict())  # plain JSON types


def test_topics_are_the_generator_vocabularies(recovery):
    """Each generator topic is found: some learned topic's top words are mostly its words."""
    summary: TopicSummary = recovery["summary"]
    for name in list(TOPIC_VOCABULARY)[:N_SEG]:  # the topics the 5 segments write about
        vocab = set(TOPIC_VOCABULARY[name])
        best = max(sum(w in vocab for w in words) for words in summary.top_words)
        assert best >= 6, (name, summary.top_words)  # 6 of the 8 top words


def test_topic_features_recover_the_true_segments(recovery):
    """Clustering on the topic features alone recovers the segments the texts came from.

    The adjusted Rand index is 0 in expectation for labels unrelated to the segments, with a
    spread of about 1e-3 at this size (checked below on shuffled segments); 1 is a perfect
    recovery. 0.5 asks that the clustering be right about most pairs of customers, far
    above chance. Customers without text carry the mean mix (no information): they are
    scored apart, and only required to sit in some cluster.
    """
    seg, features, summary = recovery["seg"], recovery["features"], recovery["summary"]
    wrote = summary.has_text
    labels = _clusters(features[wrote])
    ari = adjusted_rand_score(seg[wrote], labels)
    assert ari > 0.5, ari
    null = [
        adjusted_rand_score(np.random.default_rng(s).permutation(seg[wrote]), labels)
        for s in range(10)
    ]
    assert max(abs(v) for v in null) < 0.02


def test_texts_without_segment_topics_carry_no_segment_signal():
    """topic_strength = 0: every segment writes alike, so no clustering can find them."""
    seg = _segments(1_500)  # NMF is slow to settle on structureless text: fewer customers
    fb = synthetic_feedback(seg, np.random.default_rng(1), topic_strength=0.0)
    features, summary = topic_features(fb, _ids(seg.size), n_topics=N_TOPICS, seed=0)
    wrote = summary.has_text
    labels = _clusters(features[wrote])
    # chance level: |ARI| of unrelated labels at this size is a few 1e-3
    assert abs(adjusted_rand_score(seg[wrote], labels)) < 0.02


def test_topic_features_are_deterministic_by_seed():
    seg = _segments(400)
    fb = synthetic_feedback(seg, np.random.default_rng(2))
    a, sa = topic_features(fb, _ids(400), n_topics=4, seed=3)
    b, sb = topic_features(fb, _ids(400), n_topics=4, seed=3)
    np.testing.assert_array_equal(a, b)
    assert sa.top_words == sb.top_words


def test_unknown_customers_and_blank_texts_are_skipped_and_reported():
    fb = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "zz", "zz", "yy", "c", 7],
            "text": [
                "late delivery parcel",
                "parcel courier tracking late",
                "discount coupon price deal",
                "discount coupon",
                "late parcel",
                "quality fabric",
                "   ",
                None,
            ],
        }
    )
    features, summary = topic_features(fb, ["a", "b", "c", "d", "7"], n_topics=2, seed=0)
    assert summary.n_texts == 8 and summary.n_texts_used == 3
    assert summary.n_unknown_texts == 3 and summary.n_unknown_customers == 2
    assert summary.unknown_examples == ("zz", "yy")
    assert summary.n_blank == 2  # a blank string and a missing text
    assert summary.has_text.tolist() == [True, True, False, False, False]  # ids compared as str
    notes = " ".join(summary.describe())
    assert "3 texts of 2 customer ids that are not in the log were skipped" in notes
    assert "2 missing or blank texts were skipped" in notes
    # "a" wrote about delivery, "b" about price: two different topics dominate
    assert features[0].argmax() != features[1].argmax()


# (case, feedback, customer ids, kwargs, error, message)
BAD_TOPIC_INPUT = [
    ("not a frame", [("a", "x")], ["a"], {}, TypeError, "`feedback` must be a pandas DataFrame"),
    ("no text column", pd.DataFrame({"customer_id": ["a"], "review": ["x"]}), ["a"], {},
     ValueError, r"feedback is missing column\(s\) \['text'\].*got columns \['customer_id', "
     r"'review'\]"),
    ("no id column", pd.DataFrame({"text": ["x"]}), ["a"], {}, ValueError,
     r"missing column\(s\) \['customer_id'\]"),
    ("empty", pd.DataFrame({"customer_id": [], "text": []}), ["a"], {}, ValueError,
     "feedback is empty: it has no rows"),
    ("number text", pd.DataFrame({"customer_id": ["a", "b"], "text": ["fine", 3.5]}), ["a"], {},
     ValueError, r"column `text` must hold strings: row 1 has 3.5"),
    ("list text", pd.DataFrame({"customer_id": ["a", "b"], "text": ["ok", ["x"]]}), ["a"], {},
     ValueError, r"column `text` must hold strings: row 1 has \['x'\]"),
    ("bytes text", pd.DataFrame({"customer_id": ["a"], "text": [b"late"]}), ["a"], {},
     ValueError, r"column `text` must hold strings: row 0 has b'late'"),
    ("missing id", pd.DataFrame({"customer_id": ["a", None], "text": ["x", "y"]}), ["a"], {},
     ValueError, r"column `customer_id` must not be missing: row 1 has (None|nan)"),
    ("all unknown", pd.DataFrame({"customer_id": ["q", "r"], "text": ["late", "price"]}),
     ["a", "b"], {}, ValueError,
     r"no feedback text belongs to a customer of the log: its 2 customer ids \(e.g. 'q', 'r'\)"),
    ("all blank", pd.DataFrame({"customer_id": ["a"], "text": [" "]}), ["a"], {}, ValueError,
     "every text of a known customer is blank"),
    ("stop words only", pd.DataFrame({"customer_id": ["a"], "text": ["the and of it"]}), ["a"],
     {}, ValueError, "feedback has no usable words"),
    ("too many topics", pd.DataFrame({"customer_id": ["a", "b"], "text": ["late parcel", "deal"]}),
     ["a", "b"], {"n_topics": 3}, ValueError,
     r"`n_topics` = 3 needs at least that many texts and distinct words, got 2 texts"),
    ("duplicate ids", pd.DataFrame({"customer_id": ["a"], "text": ["late"]}), ["a", "a"], {},
     ValueError, "`customer_ids` must be unique, got 'a' twice"),
    ("zero topics", pd.DataFrame({"customer_id": ["a"], "text": ["late"]}), ["a"],
     {"n_topics": 0}, ValueError, "`n_topics` must be >= 1, got 0"),
    ("negative seed", pd.DataFrame({"customer_id": ["a"], "text": ["late"]}), ["a"],
     {"seed": -1}, ValueError, "`seed` must be >= 0, got -1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("feedback", "ids", "kwargs", "err", "match"),
    [b[1:] for b in BAD_TOPIC_INPUT],
    ids=[b[0] for b in BAD_TOPIC_INPUT],
)
def test_bad_feedback_is_refused_naming_column_row_and_value(feedback, ids, kwargs, err, match):
    with pytest.raises(err, match=match):
        topic_features(feedback, ids, **kwargs)


# ---------------------------------------------------------------------- segment topics


def test_each_segment_tops_with_its_own_topic(recovery):
    seg, features, summary = recovery["seg"], recovery["features"], recovery["summary"]
    names = [f"s{k}" for k in range(N_SEG)]
    table = segment_topics(features, seg, summary, segment_names=names, n_top=2)
    assert list(table.columns) == [
        "segment", "rank", "topic", "share", "lift", "words", "n_with_text"
    ]  # fmt: skip
    assert table["segment"].tolist() == [s for s in names for _ in range(2)]
    assert table["rank"].tolist() == [1, 2] * N_SEG
    top = table[table["rank"] == 1]
    vocab = list(TOPIC_VOCABULARY.values())
    for k, row in enumerate(top.itertuples(index=False)):
        # segment k's top topic is its primary one: its top words are that vocabulary's
        words = row.words.split(", ")
        assert sum(w in vocab[k] for w in words) >= 4, (k, words)
        assert row.lift > 1.0  # it talks about it more than the average customer
        assert row.n_with_text == int((summary.has_text & (seg == k)).sum())
    # the top topics of different segments differ
    assert top["topic"].nunique() == N_SEG
    # shares are ranked
    for _, group in table.groupby("segment"):
        assert group["share"].is_monotonic_decreasing


def test_segment_topics_by_hand():
    """Known answer: three customers, two topics, shares given."""
    summary = TopicSummary(
        n_topics=2,
        top_words=(("late", "parcel"), ("price", "deal")),
        topic_share=(0.5, 0.5),
        has_text=np.array([True, True, True, False]),
        n_texts=3,
        n_texts_used=3,
        n_blank=0,
        n_unknown_texts=0,
        n_unknown_customers=0,
        unknown_examples=(),
        vocabulary_size=4,
    )
    features = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    table = segment_topics(features, np.array([0, 0, 1, 0]), summary, n_top=2)
    # segment 0: customers 0 and 1 (customer 3 wrote nothing): shares (0.8, 0.2);
    # all writers: (0.6, 0.4); lifts 0.8 / 0.6 and 0.2 / 0.4
    expected = pd.DataFrame(
        {
            "segment": ["segment0", "segment0", "segment1", "segment1"],
            "rank": [1, 2, 1, 2],
            "topic": [0, 1, 1, 0],
            "share": [0.8, 0.2, 0.8, 0.2],
            "lift": [0.8 / 0.6, 0.2 / 0.4, 0.8 / 0.4, 0.2 / 0.6],
            "words": ["late, parcel", "price, deal", "price, deal", "late, parcel"],
            "n_with_text": [2, 2, 1, 1],
        }
    )
    pd.testing.assert_frame_equal(table, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": np.zeros((3, 2))}, r"`features` must have shape \(4, 2\)"),
        ({"segments": np.array([0, 1, 2])}, r"`segments` must be \(4,\) non-negative integers"),
        ({"segments": np.array([0.0, 1.0, 0.0, 0.0])}, "`segments` must be"),
        ({"segment_names": ["one"]}, "`segment_names` must name the 2 segments, got 1"),
        ({"n_top": 0}, "`n_top` must be >= 1"),
    ],
)
def test_segment_topics_refuses_bad_arguments(kwargs, match):
    fb = pd.DataFrame({"customer_id": ["a", "b", "c"], "text": ["late parcel", "deal", "price"]})
    features, summary = topic_features(fb, ["a", "b", "c", "d"], n_topics=2)
    args: dict[str, Any] = {
        "features": features,
        "segments": np.array([0, 1, 0, 0]),
        "summary": summary,
    } | kwargs
    with pytest.raises(ValueError, match=match):
        segment_topics(**args)
