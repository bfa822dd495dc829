"""Baselines a fine-tuned model should beat, trained on the same training split: TF-IDF features
with a linear model for texts (logistic regression for classify, pair and rank; ridge regression
for regress) and a memorize-the-training-tags tagger for ner. Their predictions are in the task
type's own format and scored by its own metric, so the numbers sit beside the model's."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from ernie2.finetune.readers import Labels
from ernie2.finetune.task_types import TaskOptions, TaskType

DESCRIPTIONS = {
    "classify": "TF-IDF + logistic regression",
    "pair": "TF-IDF of both texts + logistic regression",
    "rank": "TF-IDF of both texts + logistic regression",
    "regress": "TF-IDF + ridge regression",
    "ner": "each token's most frequent training tag",
}


def has_baseline(task: TaskType) -> bool:
    return task.name in DESCRIPTIONS


class TextFeatures:
    """TF-IDF of word uni/bigrams and character 1-3-grams (the latter serve Chinese, which has no
    spaces); a pair is both texts' vectors, their product and their difference."""

    def __init__(self, train_texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        self.vectorizer = FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                      token_pattern=r"(?u)\b\w+\b")),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)),
        ]).fit(train_texts)

    def __call__(self, examples) -> object:
        from scipy.sparse import hstack

        a = self.vectorizer.transform([ex.text_a for ex in examples])
        if not examples or examples[0].text_b is None:
            return a
        b = self.vectorizer.transform([ex.text_b or "" for ex in examples])
        return hstack([a, b, a.multiply(b), abs(a - b)]).tocsr()


def _texts(examples) -> list[str]:
    return [t for ex in examples for t in (ex.text_a, ex.text_b) if t]


def _fit_classes(train, labels: Labels, seed: int):
    from sklearn.linear_model import LogisticRegression

    features = TextFeatures(_texts(train))
    y = [labels.id(str(ex.label), ex.source) for ex in train]
    if len(set(y)) < 2:
        raise ValueError("the baseline needs at least two labels in the training split")
    model = LogisticRegression(C=10.0, solver="liblinear", random_state=seed).fit(
        features(train), y)

    def predict(examples) -> list[dict]:
        probs = model.predict_proba(features(examples))
        out = []
        for ex, row in zip(examples, probs):
            full = dict.fromkeys(labels.names, 0.0)
            for cls, p in zip(model.classes_, row):
                full[labels[int(cls)]] = float(p)
            pred = {"label": max(full, key=full.get), "probs": full}
            if ex.qid is not None:
                pred["qid"] = ex.qid
            out.append(pred)
        return out
    return predict


def _fit_regression(train, labels, seed: int):
    from sklearn.linear_model import Ridge

    features = TextFeatures(_texts(train))
    model = Ridge(alpha=1.0, random_state=seed).fit(features(train),
                                                    [float(ex.label) for ex in train])
    return lambda examples: [{"score": float(s)} for s in model.predict(features(examples))]


def _fit_tags(train, labels, seed: int):
    counts: dict[str, Counter] = defaultdict(Counter)
    for ex in train:
        for tok, tag in zip(ex.tokens, ex.labels):
            counts[tok][tag] += 1
    best = {tok: c.most_common(1)[0][0] for tok, c in counts.items()}

    def tags_of(tokens: list[str]) -> list[str]:
        tags = [best.get(t, "O") for t in tokens]
        for i, tag in enumerate(tags):  # an inside tag cannot open an entity: begin it
            if tag.startswith("I-") and (i == 0 or tags[i - 1][2:] != tag[2:]):
                tags[i] = "B-" + tag[2:]
        return tags
    return lambda examples: [{"tokens": ex.tokens, "tags": tags_of(ex.tokens)}
                             for ex in examples]


_FIT = {"classify": _fit_classes, "pair": _fit_classes, "rank": _fit_classes,
        "regress": _fit_regression, "ner": _fit_tags}


def run_baseline(task: TaskType, train, splits: dict[str, list], labels: Labels | None,
                 opts: TaskOptions, seed: int = 0) -> dict:
    """Fit the task's baseline on `train` and score it on every labeled split:
    {"name": description, "scores": {split: {metric: value}}, "predictions": {split: [...]}}."""
    if not has_baseline(task):
        raise ValueError(f"no baseline for task type {task.name} (there is one for "
                         f"{', '.join(DESCRIPTIONS)})")
    predict = _FIT[task.name](train, labels, seed)
    out: dict = {"name": DESCRIPTIONS[task.name], "scores": {}, "predictions": {}}
    for split, examples in splits.items():
        if not examples:
            continue
        preds = predict(examples)
        out["predictions"][split] = preds
        out["scores"][split] = task.score(examples, preds, labels, opts)
    return out
