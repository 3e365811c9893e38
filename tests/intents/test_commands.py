import json

import pytest

from gateway.cli import main
from gateway.cli.ask import thresholds_from_config
from intents.evaluation import METRIC_KEYS, wrapped
from intents.prediction import Thresholds

FAQ = """\
faqs:
  - id: return-how
    question: 怎么退货
    similar: [我想退货, 退货流程是什么]
    answer: 您好，收到商品7天内可在「我的订单」申请退货。
  - id: invoice
    question: 怎么开发票
    similar: [能开发票吗, 电子发票在哪里下载]
    answer: 您好，下单时勾选发票即可，电子发票在订单详情页下载。
"""


@pytest.fixture
def kb_dir(tmp_path):
    folder = tmp_path / "faq"
    folder.mkdir()
    (folder / "shop.yaml").write_text(FAQ, encoding="utf-8")
    return folder


@pytest.fixture
def no_config(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("{}\n", encoding="utf-8")
    return str(path)


def test_ask_prints_decision_candidates_and_tokens(kb_dir, no_config, capsys):
    assert main(["ask", "怎麼退貨？", "--kb", str(kb_dir), "--config", no_config]) == 0
    out = capsys.readouterr().out
    assert "answer" in out
    assert "return-how" in out
    assert "怎么 / 退货" in out
    assert "收到商品7天内" in out


def test_ask_shows_handoff_for_a_human_request(kb_dir, no_config, capsys):
    assert main(["ask", "转人工", "--kb", str(kb_dir), "--config", no_config]) == 0
    out = capsys.readouterr().out
    assert "handoff" in out and "asked_human" in out


def test_eval_json_prints_one_object_with_every_key(kb_dir, no_config, tmp_path, capsys):
    data = tmp_path / "test.tsv"
    data.write_text("我想退货\treturn-how\n电子发票在哪下载\tinvoice\n明天会下雨吗\t-\n", encoding="utf-8")
    code = main(["eval", "--kb", str(kb_dir), "--data", str(data), "--json", "--config", no_config])
    out = capsys.readouterr().out
    assert code == 0
    metrics = json.loads(out)  # exactly one JSON document on stdout
    assert list(metrics) == list(METRIC_KEYS)
    assert metrics["n"] == 3 and metrics["top1_accuracy"] == 1.0 and metrics["oos_answer_rate"] == 0.0


def test_eval_wrap_measures_questions_wrapped_in_courtesy(kb_dir, no_config, tmp_path, capsys):
    data = tmp_path / "test.tsv"
    data.write_text("我想退货\treturn-how\n能开发票吗\tinvoice\n明天会下雨吗\t-\n", encoding="utf-8")
    args = ["eval", "--kb", str(kb_dir), "--data", str(data), "--config", no_config]
    assert main([*args, "--wrap"]) == 0
    assert "wrapped in courtesy" in capsys.readouterr().out
    assert main([*args, "--wrap", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["answer_rate"] == 1.0 and metrics["answer_precision"] == 1.0
    assert metrics["oos_answer_rate"] == 0.0


def test_wrapped_rows_keep_the_question_and_its_label():
    rows = [("我想退货", "return-how"), ("明天会下雨吗", "-")] * 20
    out = wrapped(rows)
    assert [label for _, label in out] == [label for _, label in rows]
    assert all(question in text for (text, _), (question, _) in zip(out, rows, strict=True))
    assert sum(text != question for (text, _), (question, _) in zip(out, rows, strict=True)) > 30
    assert out == wrapped(rows)  # seeded: every run measures the same texts


def test_eval_table_is_readable(kb_dir, no_config, tmp_path, capsys):
    data = tmp_path / "test.tsv"
    data.write_text("我想退货\treturn-how\n", encoding="utf-8")
    assert main(["eval", "--kb", str(kb_dir), "--data", str(data), "--config", no_config]) == 0
    out = capsys.readouterr().out
    assert "top-1 accuracy" in out and "answer precision" in out


def test_thresholds_come_from_config_and_flags_override(kb_dir, tmp_path, capsys):
    config = tmp_path / "gateway.yaml"
    config.write_text("matcher:\n  answer_threshold: 0.99\n  suggest_threshold: 0.5\n", encoding="utf-8")
    assert thresholds_from_config(config) == Thresholds(answer=0.99, suggest=0.5)
    assert thresholds_from_config(tmp_path / "absent.yaml") is None  # calibrated on the kb

    main(["ask", "我想退货吧", "--kb", str(kb_dir), "--config", str(config)])
    assert "suggest" in capsys.readouterr().out.split("决定")[1].split("\n")[0]
    main(["ask", "我想退货吧", "--kb", str(kb_dir), "--config", str(config), "--answer-threshold", "0.3"])
    assert "answer (faq)" in capsys.readouterr().out


def test_broken_kb_is_reported_not_a_traceback(tmp_path, no_config, capsys):
    folder = tmp_path / "faq"
    folder.mkdir()
    (folder / "bad.yaml").write_text("faqs:\n  - id: x\n", encoding="utf-8")
    assert main(["ask", "怎么退货", "--kb", str(folder), "--config", no_config]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_missing_explicit_config_is_an_error(kb_dir, tmp_path, capsys):
    assert main(["ask", "怎么退货", "--kb", str(kb_dir), "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_eval_prints_the_curve_and_where_the_thresholds_sit(kb_dir, no_config, tmp_path, capsys):
    data = tmp_path / "test.tsv"
    data.write_text("我想退货\treturn-how\n电子发票在哪下载\tinvoice\n明天会下雨吗\t-\n", encoding="utf-8")
    assert main(["eval", "--kb", str(kb_dir), "--data", str(data), "--config", no_config]) == 0
    out = capsys.readouterr().out
    assert "precision-coverage" in out
    assert "answer threshold" in out and "suggest threshold" in out


def test_eval_learn_teaches_n_rows_and_evaluates_on_the_rest(kb_dir, no_config, tmp_path, capsys):
    data = tmp_path / "test.tsv"
    data.write_text("退个货\treturn-how\n我要退货怎么弄\treturn-how\n明天会下雨吗\t-\n", encoding="utf-8")
    args = ["eval", "--kb", str(kb_dir), "--data", str(data), "--json", "--config", no_config]
    assert main([*args, "--learn", "1"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert (m["n"], m["n_in_scope"], m["n_must_not_answer"]) == (2, 1, 1)
    # The same held-out rows, before the question was taught: the gain is a measured figure.
    assert (m["before"]["n"], m["before"]["n_in_scope"]) == (2, 1)
    assert main([*args[:-3], "--config", no_config, "--learn", "1"]) == 0
    out = capsys.readouterr().out
    assert "learning from agents: 1 labelled questions taught" in out
    assert "before" in out and "after" in out and "answer threshold" in out


def test_kb_calibrate_shows_the_per_kb_thresholds(kb_dir, no_config, capsys):
    assert main(["kb", "calibrate", str(kb_dir), "--config", no_config]) == 0
    out = capsys.readouterr().out
    assert "thresholds: answer" in out and "leave-one-out" in out and "near misses" in out
    assert main(["kb", "calibrate", str(kb_dir), "--config", no_config, "--semantic-model", "none"]) == 0
    assert "lexical matcher only" in capsys.readouterr().out
