"""`kefu report` (the 受理记录 as CSV or XLSX) and `kefu purge` (the retention setting), on the server's DB."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from gateway.cli import add_config_option, load_cli_settings
from handoff.reports import parse_bound

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `report` and `purge` to the kefu CLI."""
    report = subparsers.add_parser(
        "report",
        help="export the 受理记录 (one row per conversation) as CSV or XLSX",
        description="受理记录: one row per conversation opened in the range, times in the business-hours "
        "time zone, phone/ID/bank-card numbers masked unless privacy.mask_exports is false.",
    )
    add_config_option(report)
    report.add_argument(
        "what",
        nargs="?",
        choices=("records", "agents"),
        default="records",
        help="records (受理记录, the default) or agents (绩效: one row per agent, default yesterday)",
    )
    report.add_argument(
        "--from",
        dest="start",
        metavar="WHEN",
        help="start: 2026-11-24 or 2026-11-24T09:00 (default today 00:00)",
    )
    report.add_argument(
        "--to", dest="end", metavar="WHEN", help="end: a date counts as the whole day (default now)"
    )
    report.add_argument(
        "--format",
        choices=("csv", "xlsx", "json"),
        default=None,
        help="default csv, or from --output's suffix (json: agents only)",
    )
    report.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    report.add_argument("--summary", action="store_true", help="CSV only: the aggregates instead of the rows")
    report.set_defaults(func=_report)

    purge = subparsers.add_parser(
        "purge",
        help="delete conversations older than privacy.retention_days (or --days)",
        description="Deletes finished conversations whose last activity is older than the retention, with "
        "their messages, assignments, notes, ratings and 留言. Queued or assigned ones are kept.",
    )
    add_config_option(purge)
    purge.add_argument("--days", type=int, help="override privacy.retention_days")
    purge.add_argument(
        "--before", metavar="WHEN", help="instead of days: a date or time (business-hours time zone)"
    )
    purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    purge.set_defaults(func=_purge)


def _settings(args: argparse.Namespace) -> Any:
    return load_cli_settings(args, warn_about=("database.", "business_hours.", "sla.", "privacy.", "kb."))


def _entries(settings: Any) -> Any:
    """The FAQ for entry questions/categories; the report still works (with ids) when it does not load."""
    from gateway.norms import entry_lookup
    from kb.loader import load_kb

    try:
        result = load_kb([str(p) for p in settings.kb.paths], strict=False)
    except Exception as exc:  # a missing directory: the ids are still in the report
        print(f"warning: FAQ not loaded ({exc}); FAQ条目 shows entry ids", file=sys.stderr)
        return entry_lookup(None)
    return entry_lookup(result.kb)


async def _records(url: str, start: datetime, end: datetime, entries: Any) -> list[Any]:
    from gateway.storage import Store
    from gateway.storage.report_queries import conversation_records

    store = Store.from_url(url)
    try:
        await store.create_all()  # a report before the server ever ran is empty, not an error
        return await conversation_records(store, start, end, entries=entries)
    finally:
        await store.dispose()


def _report(args: argparse.Namespace) -> int:
    from gateway.norms import group_hours, sla_policy
    from gateway.report_files import write_records_xlsx
    from handoff.reports import build_rows, summarize, summary_table, write_records_csv
    from intents.normalize import normalize

    if args.what == "agents":
        from gateway.cli.supervision import report_agents

        return report_agents(args)
    if args.format == "json":
        print("--format json is for `kefu report agents`; the 受理记录 is csv or xlsx", file=sys.stderr)
        return 2
    settings = _settings(args)
    if settings is None:
        return 2
    hours = group_hours(settings).default
    tz = hours.timezone
    now = datetime.now(UTC)
    try:
        start = parse_bound(args.start, tz, end=False) or datetime.combine(
            now.astimezone(tz).date(), time(0), tzinfo=tz
        )
        end = parse_bound(args.end, tz, end=True) or now
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if start >= end:
        print("--from must be before --to", file=sys.stderr)
        return 2
    fmt = args.format or ("xlsx" if (args.output or "").lower().endswith(".xlsx") else "csv")
    if fmt == "xlsx" and not args.output and sys.stdout.isatty():
        print("an .xlsx file is binary: pass --output FILE (or redirect stdout)", file=sys.stderr)
        return 2
    records = asyncio.run(_records(settings.database.url, start, end, _entries(settings)))
    mask = settings.privacy.mask_exports
    options: dict[str, Any] = {
        "tz": tz,
        "sla": sla_policy(settings),
        "hours": hours,
        "now": now,
        "mask": mask,
    }
    rows = build_rows(records, **options)
    if fmt == "xlsx":
        buffer = io.BytesIO()
        write_records_xlsx(rows, summarize(records, **options, normalize=normalize), buffer)
        data = buffer.getvalue()
        if args.output:
            with open(args.output, "wb") as fh:
                fh.write(data)
        else:
            sys.stdout.buffer.write(data)
    else:
        text = io.StringIO()
        if args.summary:
            import csv

            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(["类别", "项目", "数值"])
            writer.writerows(summary_table(summarize(records, **options, normalize=normalize)))
        else:
            write_records_csv(rows, text)
        if args.output:
            # With a BOM: Excel on Windows otherwise reads UTF-8 Chinese headers as mojibake.
            with open(args.output, "w", encoding="utf-8-sig", newline="") as fh:
                fh.write(text.getvalue())
        else:
            sys.stdout.write(text.getvalue())
    print(f"{len(rows)} conversations, {start.isoformat()} – {end.isoformat()}", file=sys.stderr)
    return 0


async def _run_purge(url: str, cutoff: datetime, dry_run: bool, uploads: Any) -> tuple[Any, int]:
    """The purge's result, and how many unsent uploads (no message uses them) were deleted too."""
    from gateway.media.store import LocalMediaStore
    from gateway.media.sweep import sweep_unsent
    from gateway.storage import Store
    from gateway.storage.report_queries import purge_before

    store = Store.from_url(url)
    files = LocalMediaStore(Path(uploads.dir))
    unsent = 0
    try:
        await store.create_all()
        result = await purge_before(store, cutoff, dry_run=dry_run)
        for key in result.attachment_keys:  # customers' pictures and files go with their messages
            await files.delete(key)
        if not dry_run:
            unsent = await sweep_unsent(store, files, keep_s=uploads.unsent_keep_h * 3600.0)
    finally:
        await store.dispose()
    return result, unsent


def _purge(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    from gateway.norms import group_hours

    days = args.days if args.days is not None else settings.privacy.retention_days
    try:
        cutoff = parse_bound(args.before, group_hours(settings).default.timezone, end=False)
    except ValueError as exc:
        print(str(exc).replace("--from", "--before"), file=sys.stderr)
        return 2
    if cutoff is None:
        if days is None:
            print(
                "no retention set: pass --days N or set privacy.retention_days in the config", file=sys.stderr
            )
            return 2
        if days < 1:
            print(f"--days must be at least 1, got {days}", file=sys.stderr)
            return 2
        cutoff = datetime.now(UTC) - timedelta(days=days)
    result, unsent = asyncio.run(_run_purge(settings.database.url, cutoff, args.dry_run, settings.uploads))
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {result.conversations} conversations and {result.messages} messages "
        f"last active before {cutoff.isoformat(timespec='seconds')}"
        + (
            ""
            if args.dry_run
            else f" ({result.other} related rows, {len(result.attachment_keys)} files,"
            f" {unsent} uploads no message used)"
        )
    )
    return 0
