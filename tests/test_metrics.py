"""Fine-tuning metrics against scikit-learn, scipy and seqeval on random predictions."""

import warnings

import numpy as np
import pytest
from scipy import stats
from seqeval import metrics as seqeval_metrics
from seqeval.scheme import IOB2, IOBES
from sklearn import metrics as sk

from ernie2.finetune import metrics as M

RNG = np.random.default_rng(1234)


def _random_labels(n_cases=150):
    for _ in range(n_cases):
        k = int(RNG.integers(2, 6))
        n = int(RNG.integers(1, 50))
        yield k, RNG.integers(0, k, n), RNG.integers(0, k, n)


def test_accuracy_precision_recall_f1_match_sklearn():
    for k, t, p in _random_labels():
        assert M.accuracy(t, p) == pytest.approx(sk.accuracy_score(t, p))
        for average in ("binary", "macro", "micro", "weighted"):
            if average == "binary" and k > 2:
                continue
            ref = sk.precision_recall_fscore_support(t, p, average=average, zero_division=0)[:3]
            assert M.precision_recall_f1(t, p, average) == pytest.approx(ref), (average, t, p)


def test_binary_scores_follow_the_positive_label():
    t, p = ["pos", "neg", "pos", "pos"], ["pos", "pos", "neg", "pos"]
    ref = sk.precision_recall_fscore_support(t, p, average="binary", pos_label="neg",
                                             zero_division=0)[:3]
    assert M.precision_recall_f1(t, p, "binary", pos_label="neg") == pytest.approx(ref)
    assert M.precision_recall_f1(t, p, "binary", pos_label="unseen") == (0.0, 0.0, 0.0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn on a single-label case
def test_matthews_matches_sklearn():
    for _, t, p in _random_labels():
        assert M.matthews_corrcoef(t, p) == pytest.approx(sk.matthews_corrcoef(t, p), abs=1e-12)
    assert M.matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0  # undefined: sklearn says 0 too


def test_pearson_spearman_match_scipy_with_ties():
    for _ in range(100):
        n = int(RNG.integers(3, 60))
        x = RNG.normal(size=n)
        y = RNG.integers(0, 5, n).astype(float)  # many ties
        if y.std() == 0:
            continue
        assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
        assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
        assert np.allclose(M.rankdata(y), stats.rankdata(y))


def _tag_seqs(prefixes, n_seqs, rng):
    def tag():
        pre = rng.choice(list(prefixes))
        return "O" if pre == "O" else f"{pre}-{rng.choice(['PER', 'LOC', 'ORG'])}"
    return [[tag() for _ in range(int(rng.integers(1, 15)))] for _ in range(n_seqs)]


@pytest.mark.parametrize("scheme,prefixes", [("BIO", "BIO"), ("IOB", "BIO"), ("IOBES", "BIOES")])
def test_chunk_scores_match_seqeval(scheme, prefixes):
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(150):
            truth = _tag_seqs(prefixes, 6, rng)
            # Predictions: the truth with some tags changed, so there are real matches.
            pred = [[t if rng.random() < 0.7 else _tag_seqs(prefixes, 1, rng)[0][0] for t in s]
                    for s in truth]
            got = M.chunk_scores(truth, pred, scheme)
            assert got["f1"] == pytest.approx(
                seqeval_metrics.f1_score(truth, pred, zero_division=0))
            assert got["precision"] == pytest.approx(
                seqeval_metrics.precision_score(truth, pred, zero_division=0))
            assert got["recall"] == pytest.approx(
                seqeval_metrics.recall_score(truth, pred, zero_division=0))
            if scheme != "IOB":
                strict = M.chunk_scores(truth, pred, scheme, strict=True)
                ref = seqeval_metrics.f1_score(truth, pred, mode="strict", zero_division=0,
                                               scheme={"BIO": IOB2, "IOBES": IOBES}[scheme])
                assert strict["f1"] == pytest.approx(ref)


def test_chunks_read_each_scheme_by_hand():
    assert M.chunks(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # IOB (IOB1): I- is the default inside; B- only splits two adjacent chunks of one type.
    assert M.chunks(["I-PER", "I-PER", "B-PER", "O"], "IOB") == [("PER", 0, 1), ("PER", 2, 2)]
    assert M.chunks(["S-LOC", "B-ORG", "I-ORG", "E-ORG"], "IOBES") == [("LOC", 0, 0),
                                                                       ("ORG", 1, 3)]
    # Strict BIO drops a chunk that starts with I-.
    assert M.chunks(["O", "I-PER", "B-LOC"], "BIO", strict=True) == [("LOC", 2, 2)]
    with pytest.raises(ValueError, match="not of the BIO scheme"):
        M.chunks(["B-PER", "E-PER"], "BIO")


def test_mrr_matches_sklearn_with_one_relevant_per_group():
    for _ in range(50):
        n_groups, size = int(RNG.integers(1, 10)), int(RNG.integers(2, 6))
        scores = RNG.normal(size=(n_groups, size))
        truth = np.zeros((n_groups, size), dtype=int)
        truth[np.arange(n_groups), RNG.integers(0, size, n_groups)] = 1
        qids = np.repeat(np.arange(n_groups), size)
        # Shuffle rows: groups need not be contiguous.
        order = RNG.permutation(n_groups * size)
        got = M.mean_reciprocal_rank(qids[order], truth.ravel()[order], scores.ravel()[order])
        assert got == pytest.approx(sk.label_ranking_average_precision_score(truth, scores))


def test_mrr_counts_groups_without_a_relevant_answer_as_zero():
    # q1: relevant ranked 2nd -> 1/2; q2: no relevant -> 0.
    assert M.mean_reciprocal_rank(["q1", "q1", "q2"], [0, 1, 0], [0.9, 0.5, 0.3]) == 0.25


@pytest.mark.parametrize("pred,golds,em,f1", [
    ("北京", ["北京"], 1.0, 1.0),
    ("北京天安门", ["北京"], 0.0, 2 * (2 / 5) * 1 / (2 / 5 + 1)),  # LCS 2: P 2/5, R 1
    ("在北京。", ["北京"], 0.0, 2 * (2 / 3) * 1 / (2 / 3 + 1)),  # punctuation dropped
    ("京北", ["北京"], 0.0, 2 * 0.5 * 0.5 / 1.0),  # longest common substring is 1 character
    ("上海", ["北京", "上海"], 1.0, 1.0),  # best over gold answers
    ("The Eiffel tower", ["eiffel tower"], 1.0, 1.0),  # SQuAD: case, articles
    ("the big red tower", ["red tower today"], 0.0, 2 * (2 / 3) * (2 / 3) / (4 / 3)),
    ("", ["北京"], 0.0, 0.0),
])
def test_answer_em_f1_hand_worked(pred, golds, em, f1):
    assert M.answer_em_f1(pred, golds) == pytest.approx((em, f1))


def test_mrc_scores_average_in_percent_and_need_every_prediction():
    got = M.mrc_scores({"a": "北京", "b": "上"}, {"a": ["北京"], "b": ["上海"]})
    assert got == pytest.approx({"em": 50.0, "f1": 100 * (1 + 2 * 1 * 0.5 / 1.5) / 2})
    with pytest.raises(ValueError, match="no prediction"):
        M.mrc_scores({}, {"a": ["x"]})


def test_classification_scores_use_macro_f1_beyond_two_labels():
    t, p = [0, 1, 2, 2], [0, 2, 2, 1]
    got = M.classification_scores(t, p, 3)
    assert got["f1"] == pytest.approx(sk.f1_score(t, p, average="macro"))
    assert got["mcc"] == pytest.approx(sk.matthews_corrcoef(t, p))
