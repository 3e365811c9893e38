"""`kefu kb check` and `kefu kb lint`: validate the FAQ files before they reach the bot."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli import add_config_option, load_cli_settings, shown_path
from intents.prediction import Thresholds
from kb.learned import learned_paths
from kb.lint import lint_kb
from kb.loader import LoadResult, load_kb
from kb.model import KnowledgeBase, Problem
from kb.slots import trial_problems

if TYPE_CHECKING:
    from gateway.actions.settings import ActionsSettings
    from gateway.settings import Settings

__all__ = ["DEFAULT_FAQ_PATH", "format_problem", "register"]

DEFAULT_FAQ_PATH = "config/faq"


def register(subparsers: Any) -> None:
    """Add `kb check`, `kb lint` and `kb calibrate` to the `kefu` command."""
    kb_parser = subparsers.add_parser("kb", help="check and lint the FAQ knowledge base")
    kb_parser.set_defaults(func=lambda args: _print_help(kb_parser))
    kb_sub = kb_parser.add_subparsers(dest="kb_command", metavar="COMMAND")

    check = kb_sub.add_parser(
        "check",
        help="validate FAQ files; exit 1 on any error",
        description="Load the FAQ files as the gateway would and print every error as file:line.",
    )
    _add_common(check)
    check.set_defaults(func=run_check)

    lint = kb_sub.add_parser(
        "lint",
        help="check, then warn about replies that break customer-service norms",
        description="Check the FAQ files, then print style warnings (vague, bare or overlong replies, "
        "too few similar questions). Exit 1 on errors, or on warnings with --strict.",
    )
    _add_common(lint)
    lint.add_argument("--strict", action="store_true", help="exit 1 on warnings too (for CI)")
    lint.set_defaults(func=run_lint)

    calibrate = kb_sub.add_parser(
        "calibrate",
        help="show the answer/suggest thresholds calibrated on this kb and the evidence behind them",
        description="Build the matcher as `kefu serve` would (matcher.* of the config) and print the "
        "thresholds it calibrated by leave-one-out over the kb's own questions.",
    )
    _add_common(calibrate)
    calibrate.add_argument("--semantic-model", metavar="MODEL", help="override matcher.semantic.model")
    calibrate.set_defaults(func=run_calibrate, answer_threshold=None, suggest_threshold=None)


def _paths(args: argparse.Namespace) -> tuple[list[str], Settings] | None:
    """The FAQ paths the server would load (kb.paths), or the ones named on the command line; the settings."""
    settings = load_cli_settings(args, {"kb.paths": args.paths or None}, warn_about=("kb.", "actions."))
    if settings is None:
        return None
    # Named paths as typed; the server's own (with the learned file, once written) otherwise.
    served = learned_paths(settings.kb.paths, settings.kb.learned)
    return list(args.paths) or [shown_path(Path(p)) for p in served], settings


def run_check(args: argparse.Namespace) -> int:
    """`kefu kb check`: print every error and a summary; 1 when there are errors (2: bad config)."""
    found = _paths(args)
    if found is None:
        return 2
    paths, settings = found
    result = load_kb(paths)
    for problem in result.problems:
        print(format_problem(problem))
    # Custom actions: slot regexes on 10 kB inputs, entry actions against the configured action set.
    action_problems = trial_problems(result.kb.slots) if result.kb is not None else []
    action_problems += _action_problems(result.kb, settings.actions)
    for problem in action_problems:
        print(format_problem(problem))
    errors = [p for p in action_problems if p.severity == "error"]
    if errors and result.kb is not None:
        print(f"{' '.join(paths)}: {len(errors)} action error{'s' if len(errors) != 1 else ''} — FAILED")
        return 1
    print(_summary(paths, result))
    return 0 if result.ok else 1


def _action_problems(kb: KnowledgeBase | None, actions: ActionsSettings) -> list[Problem]:
    """Entry actions checked against the config's action set (modules or the server's GET /actions)."""
    if kb is None or not (any(e.action for e in kb.entries) or any(i.custom_action for i in kb.intents)):
        return []
    import asyncio

    from gateway.actions.check import check_actions

    return asyncio.run(check_actions(kb, actions))


def run_lint(args: argparse.Namespace) -> int:
    """`kefu kb lint`: errors, then warnings; 1 on errors (or on warnings with --strict)."""
    found = _paths(args)
    if found is None:
        return 2
    paths, settings = found
    result = load_kb(paths)
    for problem in result.problems:
        print(format_problem(problem))
    if result.kb is None:
        print(_summary(paths, result))
        return 1
    warnings = lint_kb(result.kb)
    for problem in warnings:
        print(format_problem(problem))
    failed = args.strict and bool(warnings)
    print(_summary(paths, result, warnings=len(warnings), strict_failed=failed))
    return 1 if failed else 0


def run_calibrate(args: argparse.Namespace) -> int:
    """`kefu kb calibrate`: the per-kb thresholds; 2 when the kb has errors or none could be built."""
    from gateway.cli.ask import builder, load_kb_or_report  # the matcher is only needed here

    found = builder(args, args.paths)
    kb = load_kb_or_report(found[1]) if found is not None else None
    if found is None or kb is None:
        return 2
    build, paths = found
    classifier = build(kb)
    th = classifier.thresholds
    found = classifier.calibration
    print(f"{' '.join(paths)}: {_counts(kb)}, version {kb.version}")
    if found is None:
        source = "configured" if classifier.semantic is None and th != Thresholds() else "defaults"
        print(
            f"lexical matcher only: thresholds answer {th.answer}, suggest {th.suggest} ({source}, not calibrated)"
        )
        return 0
    print(
        f"thresholds: answer {th.answer}, suggest {th.suggest}"
        + (
            ""
            if th == found.thresholds
            else f" (configured; calibrated: {found.thresholds.answer}, {found.thresholds.suggest})"
        )
    )
    print(f"target precision {found.target_precision}; semantic weight {found.semantic_weight}")
    print(
        f"leave-one-out: {found.in_scope_trials} in-scope trials (top-1 {found.in_scope_top1:.3f}), "
        f"{found.near_miss_trials} near misses (entry removed)"
    )
    print("  t       precision  answered(in scope)  near misses answered")
    for t, precision, answered, near in found.curve:
        mark = "  ← answer" if abs(t - round(th.answer, 3)) < 1e-9 else ""
        print(f"  {t:<7.3f} {precision:>9.3f}  {answered:>18.3f}  {near:>20.3f}{mark}")
    return 0


def format_problem(problem: Problem) -> str:
    """`file:line: entry <id>: message`, with `warning: ` before the message of a warning."""
    if problem.severity == "warning":
        problem = dataclasses.replace(problem, message=f"warning: {problem.message}")
    return str(problem)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help=f"FAQ directories or YAML files (default: kb.paths of the config, {DEFAULT_FAQ_PATH})",
    )
    add_config_option(parser)


def _summary(paths: list[str], result: LoadResult, *, warnings: int = 0, strict_failed: bool = False) -> str:
    label = " ".join(paths)
    if result.kb is None:
        errors = len(result.problems)
        return f"{label}: {errors} error{'s' if errors != 1 else ''} — FAILED"
    text = f"{label}: {_counts(result.kb)}, version {result.kb.version}"
    if warnings:
        noun = "warning" if warnings == 1 else "warnings"
        return f"{text} — {'FAILED (--strict)' if strict_failed else 'OK'}, {warnings} {noun}"
    return f"{text} — OK"


def _counts(kb: KnowledgeBase) -> str:
    questions = sum(len(entry.questions) for entry in kb.entries)
    disabled = len(kb.entries) - len(kb.enabled_entries)
    text = f"{len(kb.entries)} entries"
    if disabled:
        text += f" ({disabled} disabled)"
    text += f", {questions} questions"
    if kb.intents:
        text += f", {len(kb.intents)} intent{'s' if len(kb.intents) != 1 else ''}"
    return text


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
