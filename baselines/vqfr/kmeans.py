"""The codebook re-estimation of VQFR's stage 1 (the authors' ``L2VectorQuantizerKmeans``):
a reservoir sample of the encoder's pre-quantisation vectors, clustered by k-means into the
codebook every ``every`` iterations until ``until``.

The authors call ``sklearn.cluster.k_means(x, K, random_state=0)`` (k-means++ seeding, Lloyd,
``n_init`` runs). scikit-learn is not a dependency of this project, so :func:`kmeans` is a small
torch k-means with the same objective: k-means++ seeding (greedy, as sklearn's) and Lloyd
iterations to ``tol``, one run, seeded; an empty cluster is re-seeded with the point farthest
from its centre.
"""
from __future__ import annotations

import torch


class Reservoir:
    """Reservoir sample of at most ``size`` vectors, as the authors' ``NewReservoirSampler``:
    once full, each batch's vectors replace slots drawn uniformly in [0, vectors seen before the
    batch) (a batched algorithm R)."""

    def __init__(self, size: int):
        self.size, self.seen, self.buffer = int(size), 0, None

    def reset(self) -> None:
        self.seen, self.buffer = 0, None

    @torch.no_grad()
    def add(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        x = x.detach().float().cpu()
        if self.buffer is None:
            self.buffer = torch.empty(self.size, x.shape[1])
        free = max(0, self.size - self.seen)
        head = x[:free]
        self.buffer[self.seen:self.seen + len(head)] = head
        self.seen += len(head)
        rest = x[free:]
        if len(rest):
            pos = torch.randint(0, self.seen, (len(rest),), generator=generator)
            keep = pos < self.size
            self.buffer[pos[keep]] = rest[keep]
            self.seen += len(rest)

    def contents(self) -> torch.Tensor:
        if self.buffer is None:
            return torch.empty(0, 0)
        return self.buffer[:min(self.seen, self.size)]

    def state(self) -> dict:
        return {"seen": self.seen, "buffer": self.buffer}

    def load_state(self, s: dict) -> None:
        self.seen, self.buffer = int(s["seen"]), s["buffer"]


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 100, tol: float = 1e-4,
           seed: int = 0) -> torch.Tensor:
    """``k`` centres of ``x [M, D]`` (M >= k)."""
    x = x.float()
    g = torch.Generator().manual_seed(seed)
    m = x.shape[0]
    if m < k:
        raise ValueError(f"k-means: {m} samples for {k} clusters")
    trials = 2 + int(torch.log(torch.tensor(float(k))))  # sklearn's greedy k-means++
    centres = torch.empty(k, x.shape[1])
    centres[0] = x[torch.randint(0, m, (1,), generator=g)]
    d2 = torch.cdist(x, centres[:1]).squeeze(1) ** 2
    for i in range(1, k):
        cand = torch.multinomial(d2 / d2.sum() if d2.sum() > 0 else torch.ones(m), trials,
                                 replacement=True, generator=g)
        cd = torch.minimum(d2[None], torch.cdist(x[cand], x) ** 2)  # [trials, M]
        best = int(torch.argmin(cd.sum(1)))
        centres[i], d2 = x[cand[best]], cd[best]
    scale = x.var(0).mean() * tol
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(1)
        new = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        empty = counts == 0
        new[~empty] /= counts[~empty, None]
        if empty.any():
            far = torch.cdist(x, centres).min(1).values.argsort(descending=True)
            new[empty] = x[far[:int(empty.sum())]]
        shift = ((new - centres) ** 2).sum()
        centres = new
        if shift <= scale:
            break
    return centres
