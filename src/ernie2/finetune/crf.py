"""A linear-chain CRF: sequence log-likelihood by the forward algorithm, best path by Viterbi."""

from __future__ import annotations

import torch
from torch import nn


class LinearChainCRF(nn.Module):
    """Scores a tag path y over emissions e as
    `start[y0] + sum_t e[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_last]`.

    Emissions are [B, T, K]; `mask` [B, T] marks real positions, which must be a prefix of each
    row (padding only at the end) and hold at least one position per row.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"emissions must be [B, T, {self.num_tags}], got "
                             f"{tuple(emissions.shape)}")
        if mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        mask = mask.bool()
        if not bool(mask[:, 0].all()):
            raise ValueError("every sequence needs at least one unmasked first position")
        return mask

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalized score of the given tag paths: [B]."""
        mask = self._check(emissions, mask)
        m = mask.to(emissions.dtype)
        tags = tags.masked_fill(~mask, 0)
        emit = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # [B, T]
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # [B, T-1]
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return (self.start[tags[:, 0]] + (emit * m).sum(1) + (trans * m[:, 1:]).sum(1)
                + self.end[last])

    def log_partition(self, emissions: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """log Z: log-sum-exp of the scores of every path, by the forward algorithm: [B]."""
        mask = self._check(emissions, mask)
        alpha = self.start + emissions[:, 0]  # [B, K]
        for t in range(1, emissions.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t:t + 1], nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor,
            mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood of the gold paths (mean over the batch by default)."""
        loss = self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)
        if reduction == "mean":
            return loss.mean()
        if reduction == "sum":
            return loss.sum()
        if reduction == "none":
            return loss
        raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor,
                mask: torch.Tensor | None = None) -> list[list[int]]:
        """The best path of each sequence (length = its number of unmasked positions)."""
        mask = self._check(emissions, mask)
        b, t_len, _ = emissions.shape
        score = self.start + emissions[:, 0]
        back = []
        for t in range(1, t_len):
            cand = score.unsqueeze(2) + self.transitions  # [B, from, to]
            best, idx = cand.max(dim=1)
            back.append(idx)
            score = torch.where(mask[:, t:t + 1], best + emissions[:, t], score)
        score = score + self.end
        lengths = mask.sum(1).tolist()
        last = score.argmax(1).tolist()
        paths = []
        for i in range(b):
            path = [last[i]]
            for t in range(lengths[i] - 1, 0, -1):
                path.append(int(back[t - 1][i, path[-1]]))
            paths.append(path[::-1])
        return paths
