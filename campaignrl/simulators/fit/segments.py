"""The segment model and the recommendation model, fitted with scikit-learn.

Segments: K-Means on customer features; tastes: a factorization of the customer x offer
score matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

__all__ = ["Segmentation", "Tastes", "cluster", "factorize"]

K_RANGE: tuple[int, int] = (2, 8)
"""segment counts ``segments="auto"`` tries, inclusive"""
_SILHOUETTE_SAMPLE = 5_000
"""customers the silhouette is computed on (it costs O(n^2))"""


@dataclass(frozen=True)
class Segmentation:
    """Segment labels and how K was chosen."""

    labels: np.ndarray
    """(E,) segment of each customer, 0..K-1"""
    k: int
    """number of segments"""
    scores: dict[int, float]
    """silhouette of each K tried (empty when K was given)"""
    columns: tuple[str, ...]
    """the customer features clustered on"""


def cluster(
    features: np.ndarray, columns: tuple[str, ...], segments: int | str, seed: int
) -> Segmentation:
    """K-Means (k-means++, 4 starts) on standardized customer features.

    With ``segments="auto"``, K is the one of ``K_RANGE`` with the highest mean silhouette
    coefficient ``s = (b - a) / max(a, b)`` (``a`` the mean distance to the own cluster, ``b``
    to the nearest other), computed on a seeded sample of 5,000 customers.
    Reference: Rousseeuw, *J. Comput. Appl. Math.* 20 (1987) 53-65.
    """
    x = StandardScaler().fit_transform(features)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    scores: dict[int, float] = {}
    if segments == "auto":
        # K is chosen on a sample (K-Means and the silhouette on all customers cost minutes
        # on a million-row log and choose the same K); the final fit uses everyone.
        sample = x[rng.choice(n, size=min(n, _SILHOUETTE_SAMPLE), replace=False)]
        best_k, best = K_RANGE[0], -np.inf
        for k in range(K_RANGE[0], min(K_RANGE[1], sample.shape[0] - 1) + 1):
            labels = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(sample).labels_
            if np.unique(labels).size < 2:
                continue
            score = float(silhouette_score(sample, labels))
            scores[k] = score
            if score > best + 1e-12:
                best_k, best = k, score
        k = best_k
    else:
        k = int(segments)
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    return Segmentation(np.asarray(km.labels_, dtype=np.int64), k, scores, columns)


@dataclass(frozen=True)
class Tastes:
    """Customer and offer taste vectors: ``affinity = taste . offer``."""

    customer: np.ndarray
    """(E, K) taste vector of each customer"""
    offer: np.ndarray
    """(O, K) taste vector of each offer"""
    segment_mean: np.ndarray
    """(S, K) centre of each segment's tastes"""
    noise: float
    """standard deviation of a customer's taste around the centre (each axis)"""
    explained: float
    """share of the score matrix's sum of squares the K factors reproduce"""


def factorize(
    scores: np.ndarray, labels: np.ndarray, n_seg: int, seed: int, *, min_explained: float = 0.995
) -> Tastes:
    """Factorize the customer x offer score matrix into taste vectors (truncated SVD).

    ``A ~ U_K S_K V_K^T``: customer tastes ``U_K S_K``, offer tastes ``V_K``; ``K`` is the
    smallest rank reproducing ``min_explained`` of ``||A||_F^2`` (at most ``O - 1``, which
    :class:`~sklearn.decomposition.TruncatedSVD` allows). The simulator draws tastes as
    ``centre[s] + noise * N(0, I)``, so the tastes are then whitened: with ``Sigma_w`` the
    pooled within-segment covariance and ``Sigma_w / sigma^2 = L L^T`` (Cholesky,
    ``sigma^2 = tr(Sigma_w) / K``), tastes become ``T L^-T`` and offers ``V_K L``, which
    leaves every affinity ``taste . offer`` unchanged and makes the within-segment spread
    ``sigma`` on every axis. Reference: Koren, Bell & Volinsky, *Matrix factorization
    techniques for recommender systems*, IEEE Computer 42(8), 2009.
    """
    n_offers = scores.shape[1]
    rank = max(1, min(n_offers - 1, scores.shape[0] - 1))
    svd = TruncatedSVD(n_components=rank, algorithm="randomized", n_iter=7, random_state=seed)
    svd.fit(scores)
    sing = np.asarray(svd.singular_values_)
    total = float(np.sum(scores**2))
    share = np.cumsum(sing**2) / max(total, 1e-300)
    k = int(min(rank, np.searchsorted(share, min_explained) + 1))
    v = np.asarray(svd.components_[:k]).T  # (O, K), orthonormal columns
    taste = scores @ v  # = U_K S_K
    centre = np.zeros((n_seg, k))
    resid = np.zeros_like(taste)
    for s in range(n_seg):
        rows = labels == s
        if rows.any():
            centre[s] = taste[rows].mean(axis=0)
            resid[rows] = taste[rows] - centre[s]
    cov = resid.T @ resid / max(taste.shape[0] - n_seg, 1)
    sigma2 = float(np.trace(cov)) / k
    if sigma2 <= 1e-12:
        return Tastes(taste, v, centre, 0.0, float(share[k - 1]))
    chol = np.linalg.cholesky(cov / sigma2 + 1e-9 * np.eye(k))
    inv_t = np.linalg.inv(chol).T
    return Tastes(
        customer=taste @ inv_t,
        offer=v @ chol,
        segment_mean=centre @ inv_t,
        noise=float(np.sqrt(sigma2)),
        explained=float(share[k - 1]),
    )
