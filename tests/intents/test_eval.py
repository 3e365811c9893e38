import contextlib
import io
import json
from pathlib import Path

import pytest

from intents.evaluation import METRIC_KEYS, evaluate, read_tsv
from intents.prediction import Candidate, Decision, Prediction
from kb.model import FaqEntry

EVAL_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "eval"


class ScriptedClassifier:
    """Returns a fixed prediction and ranking per text, so each metric's definition is checked exactly."""

    def __init__(self, script):
        self.script = script

    def classify(self, text, *, memo=True):  # same signature as intents.matcher.Classifier.classify
        decision, entry_id, _ = self.script[text]
        entry = (
            FaqEntry(id=entry_id, question="q", answer="a")
            if decision is Decision.ANSWER and entry_id
            else None
        )
        return Prediction(decision=decision, confidence=0.5, entry=entry)

    def rank(self, text, k=3):
        return tuple(Candidate(e, "q", 0.5) for e in self.script[text][2][:k])


def test_metric_definitions_are_exact():
    A, S, H, T = Decision.ANSWER, Decision.SUGGEST, Decision.HANDOFF, Decision.SMALLTALK
    script = {
        # in scope (expected id in the row)
        "q1": (A, "a", ["a", "b"]),  # answered right, top-1
        "q2": (A, "b", ["b", "a"]),  # answered wrong, top-3 only
        "q3": (S, None, ["c", "x", "a"]),  # suggested, top-3 only
        "q4": (H, None, ["x", "y", "z"]),  # handed off, not in top-3
        "q5": (A, "b", ["b"]),  # answered right, top-1
        # must not answer
        "o1": (A, "a", ["a"]),  # answered anyway
        "o2": (T, None, []),
        "o3": (H, None, ["a"]),
    }
    rows = [
        ("q1", "a"),
        ("q2", "a"),
        ("q3", "a"),
        ("q4", "a"),
        ("q5", "b"),
        ("o1", "-"),
        ("o2", "-"),
        ("o3", "-"),
    ]
    m = evaluate(ScriptedClassifier(script), rows)
    assert set(METRIC_KEYS) <= set(m)
    assert (m["n"], m["n_in_scope"], m["n_must_not_answer"]) == (8, 5, 3)
    assert m["top1_accuracy"] == 0.4  # q1, q5
    assert m["top3_accuracy"] == 0.8  # q1, q2, q3, q5
    assert m["answer_rate"] == 0.6  # q1, q2, q5 of 5
    assert m["answer_precision"] == 0.6667  # q1, q5 of 3
    assert m["oos_answer_rate"] == 0.3333  # o1 of 3
    assert m["suggest_rate"] == 0.125  # q3 of 8
    assert m["handoff_rate"] == 0.25  # q4, o3 of 8
    assert m["smalltalk_rate"] == 0.125
    assert 0 <= m["p50_us"] <= m["p99_us"]


def test_read_tsv_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("怎么退货\treturn-how\n\n只有文字没有标签\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:3"):
        read_tsv(path)


def test_tiny_kb_end_to_end(shop):
    rows = [
        ("怎么退货", "return-how"),
        ("退款几天能到", "refund-time"),
        ("包邮吗", "shipping-fee"),
        ("怎么开发票", "invoice"),
        ("明天上海会下雨吗", "-"),
        ("你好", "-"),
    ]
    m = evaluate(shop, rows)
    assert m["top1_accuracy"] == 1.0
    assert m["answer_rate"] == 1.0
    assert m["answer_precision"] == 1.0
    assert m["oos_answer_rate"] == 0.0
    assert m["smalltalk_rate"] == round(1 / 6, 4)
    assert m["handoff_rate"] == round(1 / 6, 4)


# The targets of issue 12, measured with `kefu eval` at the default settings (semantic stage on,
# thresholds calibrated on each kb: held-out, the eval queries are never seen by the calibration).
AT_LEAST, AT_MOST = ">=", "<="
TARGETS = {
    "atec-huabei": {
        "top1_accuracy": (AT_LEAST, 0.45),
        "top3_accuracy": (AT_LEAST, 0.72),
        "oos_answer_rate": (AT_MOST, 0.15),
        "answer_precision": (AT_LEAST, 0.70),
        "answer_rate": (AT_LEAST, 0.30),
    },
    "smp2017": {
        "top1_accuracy": (AT_LEAST, 0.875),
        "oos_answer_rate": (AT_MOST, 0.06),
        "answer_precision": (AT_LEAST, 0.95),
        "answer_rate": (AT_LEAST, 0.75),
    },
    "dialogflow-support": {
        "top1_accuracy": (AT_LEAST, 0.88),
        "oos_answer_rate": (AT_MOST, 0.05),
        "answer_precision": (AT_LEAST, 0.92),
        "answer_rate": (AT_LEAST, 0.80),
    },
}
# Targets not reached yet, with a floor just under today's figure (a regression below it fails). Not
# strict: they are a question or two from their bar. Move a target out once it passes.
NOT_YET = {
    ("atec-huabei", "answer_rate"): 0.175,  # 0.178 (see README: needs better scores, not a threshold)
}
_measured: dict[str, dict[str, float]] = {}


def _measure(name: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    if not EVAL_ROOT.is_dir():
        pytest.skip("../shared/eval not present (a user's clone)")
    folder = EVAL_ROOT / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    if name not in _measured:
        from gateway.cli import main

        config = tmp_path_factory.mktemp("cfg") / "gateway.yaml"
        config.write_text("{}\n", encoding="utf-8")  # no matcher section: the default settings
        args = ["eval", "--kb", str(folder / "faq"), "--data", str(folder / "test.tsv"), "--json"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*args, "--config", str(config)]) == 0
        _measured[name] = json.loads(out.getvalue())
    return _measured[name]


def _cases():
    for name, targets in sorted(TARGETS.items()):
        for metric, (op, bar) in targets.items():
            marks = []
            if (name, metric) in NOT_YET:
                marks = [
                    pytest.mark.xfail(strict=False, reason=f"issue 12 target {op} {bar} not reached yet")
                ]
            yield pytest.param(name, metric, op, bar, marks=marks, id=f"{name}-{metric}")


def _meets(value: float, op: str, bar: float) -> bool:
    return value >= bar if op == AT_LEAST else value <= bar


@pytest.mark.eval
@pytest.mark.parametrize(("name", "metric", "op", "bar"), list(_cases()))
def test_issue_targets_on_the_shared_sets(name, metric, op, bar, tmp_path_factory):
    m = _measure(name, tmp_path_factory)
    assert _meets(m[metric], op, bar), f"{name} {metric} = {m[metric]} (target {op} {bar})"


@pytest.mark.eval
@pytest.mark.parametrize(("name", "metric"), sorted(NOT_YET))
def test_unreached_targets_do_not_regress(name, metric, tmp_path_factory):
    op = TARGETS[name][metric][0]
    m = _measure(name, tmp_path_factory)
    assert _meets(m[metric], op, NOT_YET[name, metric]), f"{name} {metric} = {m[metric]}"


@pytest.mark.eval
def test_learning_from_agents_is_measured(tmp_path, capsys):
    """`kefu eval --learn N` teaches N test questions and evaluates on the rest: it must not lose."""
    folder = EVAL_ROOT / "dialogflow-support"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    from gateway.cli import main

    config = tmp_path / "gateway.yaml"
    config.write_text("{}\n", encoding="utf-8")
    args = ["eval", "--kb", str(folder / "faq"), "--data", str(folder / "test.tsv"), "--json"]
    assert main([*args, "--config", str(config), "--learn", "40"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n_in_scope"] == 99 - 40 and m["n_must_not_answer"] == 300
    assert m["top1_accuracy"] >= 0.88
