"""The linear-chain CRF against brute-force enumeration of every tag path on tiny inputs."""

import itertools

import pytest
import torch

from ernie2.finetune.crf import LinearChainCRF


def _crf(num_tags, seed=0):
    torch.manual_seed(seed)
    crf = LinearChainCRF(num_tags)
    with torch.no_grad():  # non-trivial parameters everywhere
        for p in crf.parameters():
            p.normal_()
    return crf


def _brute_score(crf, emissions, path):
    s = crf.start[path[0]] + crf.end[path[-1]]
    for t, y in enumerate(path):
        s = s + emissions[t, y]
        if t:
            s = s + crf.transitions[path[t - 1], y]
    return s


def _all_paths(num_tags, length):
    return list(itertools.product(range(num_tags), repeat=length))


def _batch(num_tags, lengths, seed=1):
    torch.manual_seed(seed)
    emissions = torch.randn(len(lengths), max(lengths), num_tags)
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return emissions, mask


@pytest.mark.parametrize("num_tags,lengths", [(3, [4, 2, 1, 3]), (2, [5, 5]), (4, [1, 3])])
def test_log_partition_matches_enumeration(num_tags, lengths):
    crf = _crf(num_tags)
    emissions, mask = _batch(num_tags, lengths)
    got = crf.log_partition(emissions, mask)
    for i, n in enumerate(lengths):
        scores = torch.stack([_brute_score(crf, emissions[i], p)
                              for p in _all_paths(num_tags, n)])
        assert got[i].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-5)


@pytest.mark.parametrize("num_tags,lengths", [(3, [4, 2, 1, 3]), (4, [3, 3])])
def test_viterbi_finds_the_brute_force_best_path(num_tags, lengths):
    crf = _crf(num_tags, seed=3)
    emissions, mask = _batch(num_tags, lengths, seed=4)
    paths = crf.viterbi(emissions, mask)
    for i, n in enumerate(lengths):
        best = max(_all_paths(num_tags, n), key=lambda p: _brute_score(crf, emissions[i], p))
        assert paths[i] == list(best)
        assert len(paths[i]) == n


def test_path_score_and_nll_match_enumeration():
    num_tags, lengths = 3, [4, 2]
    crf = _crf(num_tags, seed=5)
    emissions, mask = _batch(num_tags, lengths, seed=6)
    tags = torch.tensor([[2, 0, 1, 1], [1, 2, 0, 0]])  # the second row's tail is padding
    got = crf.path_score(emissions, tags, mask)
    for i, n in enumerate(lengths):
        path = tags[i, :n].tolist()
        assert got[i].item() == pytest.approx(_brute_score(crf, emissions[i], path).item(),
                                              abs=1e-5)
    nll = crf.nll(emissions, tags, mask, reduction="none")
    assert torch.allclose(nll, crf.log_partition(emissions, mask) - got)
    assert bool((nll > 0).all())  # a probability below one


def test_gradients_are_finite_and_reach_every_parameter():
    crf = _crf(3)
    emissions, mask = _batch(3, [4, 2])
    emissions.requires_grad_(True)
    crf.nll(emissions, torch.zeros(2, 4, dtype=torch.long), mask).backward()
    for p in [emissions, *crf.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # Padding positions get no gradient.
    assert emissions.grad[1, 2:].abs().sum() == 0


def test_bad_shapes_are_refused():
    crf = LinearChainCRF(3)
    with pytest.raises(ValueError, match=r"\[B, T, 3\]"):
        crf.log_partition(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="first position"):
        crf.viterbi(torch.randn(1, 2, 3), torch.tensor([[False, True]]))
