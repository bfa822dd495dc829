"""Reading comprehension: sliding windows, answer labels, n-best span search, SQuAD reading."""

import json

import numpy as np
import pytest

from ernie2.finetune import mrc
from ernie2.finetune.readers import DataError, read_squad
from ernie2.finetune.task_types import TaskOptions, get_task_type
from ernie2.tokenizer import ErnieTokenizer
from ernie2.tokenizer.vocab import SPECIAL_TOKENS

CLS, SEP = 1, 2


def test_window_starts_cover_the_context_with_the_stride():
    assert mrc.window_starts(20, 8, 6) == [(0, 8), (6, 8), (12, 8)]
    assert mrc.window_starts(5, 8, 3) == [(0, 5)]
    assert mrc.window_starts(9, 8, 3) == [(0, 8), (3, 6)]
    with pytest.raises(ValueError, match="no room"):
        mrc.window_starts(5, 0, 3)


def test_max_context_prefers_the_window_with_most_context_on_both_sides():
    flags = mrc.max_context_flags([(0, 8), (6, 8), (12, 8)])
    # Token 7: position 7 of window 0 (no right context) or 1 of window 1 (1 each side).
    assert flags[0][7] is False and flags[1][1] is True
    # Every token has exactly one best window.
    owners = {}
    for w, (start, length) in enumerate([(0, 8), (6, 8), (12, 8)]):
        for k in range(length):
            if flags[w][k]:
                assert start + k not in owners
                owners[start + k] = w
    assert sorted(owners) == list(range(20))


def _hand_windows(answer=None):
    """20 context tokens, one character each: token i covers characters [i, i+1)."""
    context = "abcdefghijklmnopqrst"
    ids = list(range(100, 120))
    spans = [(i, i + 1) for i in range(20)]
    # Question of 2 tokens: budget = 13 - 2 - 3 = 8 context tokens per window, stride 6.
    return context, mrc.make_windows(0, [50, 51], ids, spans, CLS, SEP, 13, 6, answer)


def test_windows_label_an_answer_crossing_a_boundary_only_where_it_is_whole():
    context, wins = _hand_windows(answer=(7, 10))  # tokens 7..9: crosses window 0's end (8)
    assert [w.input_ids[:4] for w in wins] == [[CLS, 50, 51, SEP]] * 3
    assert [len(w.token_spans) for w in wins] == [8, 8, 8]
    assert (wins[0].start_position, wins[0].end_position) == (0, 0)  # cut: [CLS]
    # Window 1 starts at token 6; the head is 4 ids, so token 7 sits at 4 + 1.
    assert (wins[1].start_position, wins[1].end_position) == (5, 7)
    assert wins[1].input_ids[5:8] == [107, 108, 109]
    assert (wins[2].start_position, wins[2].end_position) == (0, 0)
    assert wins[1].sent_ids == [0] * 4 + [1] * 9


def _logits(win, start_token, end_token, high=5.0):
    s, e = np.zeros(len(win)), np.zeros(len(win))
    if start_token is not None:
        s[win.context_offset + start_token] = high
        e[win.context_offset + end_token] = high
    return s, e


def test_best_span_comes_from_the_window_that_holds_the_answer_whole():
    context, wins = _hand_windows()
    # Window 0 points at the answer's start (token 7) but its end lies outside window 0:
    # the best it can do with token 7 is a span ending at 7, scored low on the end side.
    s0, e0 = _logits(wins[0], 7, 7)
    e0[wins[0].context_offset + 7] = -1.0
    s1, e1 = _logits(wins[1], 1, 3)  # tokens 7..9 of the context
    s2, e2 = np.zeros(len(wins[2])), np.zeros(len(wins[2]))
    best = mrc.best_spans(wins, [s0, s1, s2], [e0, e1, e2], context,
                          mrc.AnswerSearch(n_best=5, max_answer_len=5))
    assert (best[0].text, best[0].start, best[0].end, best[0].window) == ("hij", 7, 10, 1)
    assert best[0].probability > best[1].probability
    assert sum(p.probability for p in best) == pytest.approx(1.0)
    assert len({(p.start, p.end) for p in best}) == len(best)  # no repeated spans


def test_span_search_respects_max_answer_len_order_and_max_context():
    context, wins = _hand_windows()
    s = [np.zeros(len(w)) for w in wins]
    e = [np.zeros(len(w)) for w in wins]
    # Best start 7 (window 1, where it has max context) and best end 12: 6 tokens long.
    s[1][wins[1].context_offset + 1] = 9.0
    e[1][wins[1].context_offset + 6] = 9.0
    e[1][wins[1].context_offset + 0] = 8.0  # end before the start: never valid
    got = mrc.best_spans(wins, s, e, context, mrc.AnswerSearch(n_best=3, max_answer_len=6))
    assert got[0].text == "hijklm"
    got = mrc.best_spans(wins, s, e, context, mrc.AnswerSearch(n_best=3, max_answer_len=5))
    assert got[0].text != "hijklm" and all(p.end - p.start <= 5 for p in got)
    assert all(p.end > p.start for p in got)
    # A start token outside its max-context window is never used: token 7 in window 0.
    s0 = [np.zeros(len(w)) for w in wins]
    e0 = [np.zeros(len(w)) for w in wins]
    s0[0][wins[0].context_offset + 7] = 50.0
    e0[0][wins[0].context_offset + 7] = 50.0
    assert all(p.window != 0 or p.start != 7
               for p in mrc.best_spans(wins, s0, e0, context, mrc.AnswerSearch(20, 5)))


def _char_tokenizer(text):
    chars = sorted(set(text.lower()) - {" "})
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)])}
    return ErnieTokenizer(vocab)


def test_oracle_logits_recover_every_chinese_answer_exactly_across_windows(tmp_path):
    context = "新华社北京１２月３１日电，国家主席江泽民发表新年讲话。" * 3 + "联合国秘书长安南表示祝贺。"
    answers = [("江泽民", context.index("江泽民")), ("安南", context.index("安南")),
               ("联合国", context.index("联合国")), ("１２月３１日", 5)]
    data = {"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": f"q{i}", "question": "谁？", "answers": [{"text": t, "answer_start": a}]}
        for i, (t, a) in enumerate(answers)]}]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    examples = read_squad(path)
    task = get_task_type("mrc")
    opts = TaskOptions(max_len=24, stride=7, max_answer_len=10)
    tok = _char_tokenizer(context + "谁？")
    features = task.encode(examples, tok, None, opts)
    assert len(features) > 3 * len(examples)  # long context: many windows each
    results = []
    for f in features:  # logits that point at the labeled answer wherever it is whole
        w = f["_window"]
        s, e = np.zeros(len(w)), np.zeros(len(w))
        if f["start_position"]:
            s[f["start_position"]] = e[f["end_position"]] = 10.0
        results.append((s, e))
    preds = task.decode(examples, features, results, None, opts)
    assert [p["answer"] for p in preds] == [t for t, _ in answers]
    assert [(p["start"], p["end"]) for p in preds] == [(a, a + len(t)) for t, a in answers]
    assert task.score(examples, preds, None, opts) == {"em": 100.0, "f1": 100.0}


def _squad(tmp_path, qas, context="北京是中国的首都。"):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": qas}]}]},
                               ensure_ascii=False), encoding="utf-8")
    return path


def test_squad_reader_reads_and_moves_an_off_by_few_answer_start(tmp_path):
    path = _squad(tmp_path, [{"id": "a", "question": "首都？",
                              "answers": [{"text": "北京", "answer_start": 0}]},
                             {"id": "b", "question": "国家？",
                              "answers": [{"text": "中国", "answer_start": 1}]}])
    ex = read_squad(path)
    assert [(e.qid, e.answers[0].start) for e in ex] == [("a", 0), ("b", 3)]


@pytest.mark.parametrize("qas,match", [
    ([{"id": "a", "question": "q", "answers": [{"text": "上海", "answer_start": 0}]}],
     r"qas\[0\]\.answers\[0\] \(id a\): answer '上海' does not occur"),
    ([{"id": "a", "question": " ", "answers": [{"text": "北京", "answer_start": 0}]}],
     r"qas\[0\] \(id a\): empty question"),
    ([{"id": "a", "question": "q"}], r"qas\[0\] \(id a\): no answers"),
    ([{"question": "q", "answers": []}], r"qas\[0\]: missing 'id'"),
    ([{"id": "a", "question": "q", "answers": [{"text": "北京", "answer_start": "0"}]}],
     r"answer_start: expected int, found str"),
    ([{"id": "a", "question": "q", "answers": [{"text": "北京", "answer_start": 0}]}] * 2,
     r"id a repeats"),
])
def test_squad_reader_errors_name_file_and_place(tmp_path, qas, match):
    path = _squad(tmp_path, qas)
    with pytest.raises(DataError, match=match) as err:
        read_squad(path)
    assert str(path) in str(err.value)


def test_squad_reader_refuses_non_squad_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="'data' list"):
        read_squad(p)
    p.write_text("{\n  \"data\": [,]}", encoding="utf-8")
    with pytest.raises(DataError, match=r"x.json:2: not valid JSON"):
        read_squad(p)
