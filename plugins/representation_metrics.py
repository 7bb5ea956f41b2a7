"""Built-in representation metrics: seed 003's "data manifold" vocabulary as numbers measured on every trial.

Each metric reads a trained model's :class:`~iasf_search.components.Representations` on the space's
fixed validation batch (``metrics.batch``, default 256 samples) and records one number
(``metric.<name>``) plus its per-node values (``metric_details.<name>``):

* ``attention_entropy``: Shannon entropy of each query's attention distribution, in nats, averaged
  over samples, heads and queries, then over the attention nodes (per node in the details);
  ``attention_entropy_norm`` divides each query's entropy by the log of its visible keys (keys with
  non-zero probability: masked keys have exactly 0), so 1 means uniform over what it may see and 0 one
  key (queries seeing a single key are left out). Neither applies to a graph without attention.
* ``attention_distance``: mean distance between a query and the keys it attends to, weighted by the
  attention probabilities, in token positions of the stem's grid (Euclidean on image grids, where a
  token is a patch), averaged like the entropy.
* ``oversmoothing``: mean cosine similarity between the distinct tokens of one sample, averaged over
  samples (1: every token the same direction, the over-smoothing of deep attention stacks). The
  number is the head's input (``output``); every node and the stem (``input``) in the details.
* ``effective_rank``: Roy & Vetterli's effective rank of each sample's ``(T, D)`` token matrix (exp of
  the entropy of its singular values normalised to sum 1; tokens not centred), averaged over samples;
  the number at ``output``, every node in the details.
* ``intrinsic_dimension``: TwoNN (Facco et al., 2017) maximum-likelihood estimate ``(n - 1) / sum(log mu)``
  with ``mu`` each point's second- over first-nearest-neighbour distance (points at distance 0 of
  another are left out): of the pooled embedding the head classifies; of each node's token mean in the details.
* ``persistence_h0``, ``persistence_h1`` (``pip install 'iasf-search[topology]'``: ripser): total
  persistence (sum of death - birth over the finite intervals) of the Vietoris-Rips H0 and H1 diagrams
  of the pooled embedding, on ``subsample`` points drawn with ``seed`` (both recorded in the details).
  Not recorded by default.

Default directions as objectives (a space may give either): entropy, distance, effective rank and
persistence ``maximize``; over-smoothing and intrinsic dimension ``minimize``.
"""

from __future__ import annotations

import importlib.util
import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from iasf_search import hookimpl
from iasf_search.components import Measurement, RepresentationMetric, Representations
from iasf_search.graph import OUTPUT
from iasf_search.params import Param

TOPOLOGY_EXTRA = "pip install 'iasf-search[topology]'"


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _per_node(values: Mapping[str, float], reps: Representations) -> dict[str, Any]:
    return {"per_node": {n: _round(v) for n, v in values.items()}, "level": {n: reps.levels[n] for n in values if n in reps.levels}}


# -- attention ------------------------------------------------------------------------------------


def entropy_nats(a: torch.Tensor) -> torch.Tensor:
    """``-sum p log p`` over the last axis (0 log 0 = 0): each query's entropy, ``(B, heads, T)``."""
    return -(a * torch.log(a.clamp_min(1e-30))).sum(-1)


def normalised_entropy(a: torch.Tensor, entropy: torch.Tensor | None = None) -> float | None:
    """Mean of each query's entropy (``entropy``, default :func:`entropy_nats`) over log(its visible keys),
    over queries that see 2 keys or more."""
    visible = (a > 0).sum(-1)
    keep = visible > 1
    if not bool(keep.any()):
        return None
    entropy = entropy_nats(a) if entropy is None else entropy
    return float((entropy[keep] / torch.log(visible[keep].float())).mean())


def attention_distance(a: torch.Tensor, coordinates: torch.Tensor) -> float:
    """Attention-weighted mean query-key distance over the token grid (``coordinates``: ``(T, axes)``)."""
    c = coordinates.float()
    distance = torch.cdist(c, c)  # (T, T) Euclidean, in token positions
    return float((a * distance).sum(-1).mean())


class _AttentionMetric(RepresentationMetric):
    """Averaged over the attention nodes; None without any."""

    default = True

    @abstractmethod
    def per_node(self, a: torch.Tensor, reps: Representations) -> float | None:
        """The metric of one attention node's probabilities ``(B, heads, T, T)``; None where it does not apply."""

    def measure(self, reps: Representations, options: Mapping[str, Any]) -> Measurement | None:
        values = {node: v for node, a in reps.attention.items() if (v := self.per_node(a, reps)) is not None}
        if not values:
            return None
        return Measurement(_round(sum(values.values()) / len(values)), _per_node(values, reps))


def query_entropy(a: torch.Tensor, reps: Representations) -> torch.Tensor:
    """:func:`entropy_nats` of ``a``, computed once per attention tensor for both entropy metrics."""
    key = ("query_entropy", id(a))
    if key not in reps.cache:
        reps.cache[key] = entropy_nats(a)
    return reps.cache[key]


class AttentionEntropy(_AttentionMetric):
    name = "attention_entropy"
    description = "entropy of the attention distributions in nats (mean over attention nodes, heads, queries)"

    def per_node(self, a: torch.Tensor, reps: Representations) -> float | None:
        return float(query_entropy(a, reps).mean())


class AttentionEntropyNorm(_AttentionMetric):
    name = "attention_entropy_norm"
    description = "attention entropy over log(visible keys): 1 uniform, 0 one key"

    def per_node(self, a: torch.Tensor, reps: Representations) -> float | None:
        return normalised_entropy(a, query_entropy(a, reps))


class AttentionDistance(_AttentionMetric):
    name = "attention_distance"
    description = "attention-weighted mean query-key distance in token positions of the stem's grid"

    def per_node(self, a: torch.Tensor, reps: Representations) -> float | None:
        return attention_distance(a, reps.layout.coordinates())


# -- every node -----------------------------------------------------------------------------------


def oversmoothing_index(tokens: torch.Tensor) -> float | None:
    """Mean pairwise cosine similarity of the distinct tokens of each sample ``(B, T, D)``; None for one token.

    The sum over ordered pairs ``i != j`` of ``cos(x_i, x_j)`` is ``|sum_i x_i / |x_i||^2 - T``: O(T D), not O(T^2 D).
    """
    T = tokens.shape[1]
    if T < 2:
        return None
    total = F.normalize(tokens, dim=-1).sum(1)  # (B, D)
    return float((((total * total).sum(-1) - T) / (T * (T - 1))).mean())


def effective_rank(tokens: torch.Tensor) -> float | None:
    """Mean over samples of exp(entropy of the normalised singular values) of each ``(T, D)`` token matrix.

    The singular values are the square roots of the eigenvalues of the smaller Gram matrix (``X X^T`` or ``X^T X``)."""
    x = tokens
    gram = x @ x.transpose(1, 2) if x.shape[1] <= x.shape[2] else x.transpose(1, 2) @ x
    s = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()  # (B, min(T, D))
    total = s.sum(-1, keepdim=True)
    keep = total.squeeze(-1) > 0
    if not bool(keep.any()):
        return None
    p = s[keep] / total[keep]
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum(-1)).mean())


def two_nn(points: torch.Tensor) -> float | None:
    """TwoNN intrinsic dimension (maximum likelihood) of ``(N, F)`` points; None with fewer than 3 usable points."""
    x = points.double().flatten(1)
    d = torch.cdist(x, x)
    d.fill_diagonal_(math.inf)
    nearest = d.topk(2, dim=-1, largest=False).values  # (N, 2): first and second neighbour
    usable = nearest[:, 0] > 0
    log_mu = torch.log(nearest[usable, 1] / nearest[usable, 0])
    if len(log_mu) < 3 or float(log_mu.sum()) <= 0:
        return None
    return float((len(log_mu) - 1) / log_mu.sum())


class _NodeMetric(RepresentationMetric):
    """Measured at every node; the number is the head's input (``output``)."""

    default = True

    @abstractmethod
    def at(self, tokens: torch.Tensor) -> float | None:
        """The metric of one node's tokens ``(B, T, D)``; None where it does not apply."""

    def measure(self, reps: Representations, options: Mapping[str, Any]) -> Measurement | None:
        values = {node: v for node, t in reps.tokens.items() if (v := self.at(t)) is not None}
        if OUTPUT not in values:
            return None
        return Measurement(_round(values[OUTPUT]), _per_node(values, reps))


class Oversmoothing(_NodeMetric):
    name = "oversmoothing"
    direction = "minimize"
    description = "mean pairwise cosine similarity of a sample's tokens at the head's input (1: all alike)"

    def at(self, tokens: torch.Tensor) -> float | None:
        return oversmoothing_index(tokens)


class EffectiveRank(_NodeMetric):
    name = "effective_rank"
    description = "effective rank (exp of singular-value entropy) of a sample's token matrix at the head's input"

    def at(self, tokens: torch.Tensor) -> float | None:
        return effective_rank(tokens)


class IntrinsicDimension(RepresentationMetric):
    name = "intrinsic_dimension"
    direction = "minimize"
    default = True
    description = "TwoNN intrinsic dimension of the pooled embedding the head classifies"

    def measure(self, reps: Representations, options: Mapping[str, Any]) -> Measurement | None:
        value = two_nn(reps.pooled)
        if value is None:
            return None
        per_node = {node: v for node, t in reps.tokens.items() if (v := two_nn(t.mean(1))) is not None}
        return Measurement(_round(value), {**_per_node(per_node, reps), "of": "pooled embedding; per node: token mean"})


# -- topology (optional extra) --------------------------------------------------------------------


class _Persistence(RepresentationMetric):
    """Total persistence of one homology dimension of the pooled embedding (ripser, the topology extra)."""

    dimension: int
    params = {
        "subsample": Param(200, int, low=3, help="points of the pooled embedding the diagram is computed on"),
        "seed": Param(0, int, low=0, help="seed of the subsample"),
    }

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("ripser") is None:
            return f"needs the ripser package: {TOPOLOGY_EXTRA}"
        return None

    def measure(self, reps: Representations, options: Mapping[str, Any]) -> Measurement | None:
        points = reps.pooled.double().numpy()
        rng = np.random.default_rng(options["seed"])
        n = min(options["subsample"], len(points))
        chosen = np.sort(rng.choice(len(points), size=n, replace=False))
        key = ("ripser", n, options["seed"])
        if key not in reps.cache:  # H0 and H1 share one diagram computation
            from ripser import ripser

            reps.cache[key] = ripser(points[chosen], maxdim=1)["dgms"]
        diagram = reps.cache[key][self.dimension]
        finite = diagram[np.isfinite(diagram[:, 1])]
        return Measurement(_round(float((finite[:, 1] - finite[:, 0]).sum())),
                           {"subsample": n, "seed": options["seed"], "intervals": len(finite)})


class PersistenceH0(_Persistence):
    name = "persistence_h0"
    dimension = 0
    description = "total persistence of H0 (finite bars) of the pooled embedding, Vietoris-Rips (ripser)"


class PersistenceH1(_Persistence):
    name = "persistence_h1"
    dimension = 1
    description = "total persistence of H1 of the pooled embedding, Vietoris-Rips (ripser)"


@hookimpl
def iasf_register_metrics(registry) -> None:
    for metric in (AttentionEntropy(), AttentionEntropyNorm(), AttentionDistance(), Oversmoothing(), EffectiveRank(),
                   IntrinsicDimension(), PersistenceH0(), PersistenceH1()):
        registry.register(metric)
