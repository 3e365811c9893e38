"""`kefu shifts check` (排班 coverage gaps) and `kefu report agents` (绩效), on the server's database."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from datetime import UTC, datetime, time, timedelta
from typing import Any

from gateway.cli import add_config_option, load_cli_settings
from handoff.reports import parse_bound

__all__ = ["register", "report_agents"]


def register(subparsers: Any) -> None:
    """Add `shifts check` to the kefu CLI (`report agents` hangs off `kefu report`)."""
    shifts = subparsers.add_parser("shifts", help="排班: check the schedule against business hours")
    shifts.set_defaults(func=lambda args: (shifts.print_help(), 2)[1])
    sub = shifts.add_subparsers(dest="shifts_command", metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="list business hours with nobody of a group on shift; exit 1 when there are gaps",
        description="Coverage check: for each skill group, the business hours (business_hours:) in the "
        "range with no agent of the group on shift, e.g. 周六 21:00–22:00 售后组无人值班.",
    )
    add_config_option(check)
    check.add_argument("--from", dest="start", metavar="WHEN", help="default: next Monday")
    check.add_argument(
        "--to", dest="end", metavar="WHEN", help="a date counts as the whole day (default: +7 days)"
    )
    check.add_argument("--group", help="only this skill group")
    check.set_defaults(func=_check)


def _settings(args: argparse.Namespace) -> Any:
    return load_cli_settings(args, warn_about=("database.", "business_hours.", "handoff.", "shifts.", "qa."))


async def _shifts(url: str, start: datetime, end: datetime) -> list[Any]:
    from gateway.storage import Store
    from gateway.storage.shifts_store import list_shifts

    store = Store.from_url(url)
    try:
        await store.create_all()
        return await list_shifts(store, start, end)
    finally:
        await store.dispose()


def _check(args: argparse.Namespace) -> int:
    from gateway.kpi_report import group_names_of
    from gateway.norms import group_hours
    from handoff.shifts import coverage_gaps

    settings = _settings(args)
    if settings is None:
        return 2
    hours = group_hours(settings)
    tz = hours.default.timezone
    today = datetime.now(UTC).astimezone(tz).date()
    monday = today + timedelta(days=7 - today.weekday())
    try:
        start = parse_bound(args.start, tz, end=False) or datetime.combine(monday, time(0), tzinfo=tz)
        end = parse_bound(args.end, tz, end=True) or start + timedelta(days=7)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if start >= end:
        print("--from must be before --to", file=sys.stderr)
        return 2
    groups = group_names_of(settings)
    if args.group:
        if args.group not in groups:
            print(f"unknown group {args.group!r}; known: {', '.join(groups)}", file=sys.stderr)
            return 2
        groups = [args.group]
    rows = asyncio.run(_shifts(settings.database.url, start, end))
    gaps = coverage_gaps([r.span for r in rows], hours, groups, start, end)
    for gap in gaps:
        print(gap.date_text)
    period = f"{start.astimezone(tz):%Y-%m-%d} – {(end - timedelta(seconds=1)).astimezone(tz):%Y-%m-%d}"
    if gaps:
        print(f"{len(gaps)} 处无人值班（{len(rows)} 个班次，{period}）", file=sys.stderr)
        return 1
    print(f"排班已覆盖全部服务时间（{len(rows)} 个班次，{period}）")
    return 0


async def _kpis(settings: Any, start: datetime, end: datetime, now: datetime) -> Any:
    from gateway.kpi_report import build_kpi_report, group_names_of
    from gateway.storage import Store

    store = Store.from_url(settings.database.url)
    try:
        await store.create_all()
        return await build_kpi_report(
            store, settings, start, end, now=now, group_names=group_names_of(settings)
        )
    finally:
        await store.dispose()


def report_agents(args: argparse.Namespace) -> int:
    """`kefu report agents`: the 绩效 table (default yesterday) as CSV, XLSX or JSON."""
    from gateway.kpi_report import kpi_csv, kpi_xlsx
    from gateway.norms import group_hours

    settings = _settings(args)
    if settings is None:
        return 2
    tz = group_hours(settings).default.timezone
    now = datetime.now(UTC)
    yesterday = now.astimezone(tz).date() - timedelta(days=1)
    try:
        start = parse_bound(args.start, tz, end=False) or datetime.combine(yesterday, time(0), tzinfo=tz)
        end = parse_bound(args.end, tz, end=True) or start + timedelta(days=1)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if start >= end:
        print("--from must be before --to", file=sys.stderr)
        return 2
    output = args.output or ""
    fmt = args.format or ("xlsx" if output.lower().endswith(".xlsx") else "csv")
    if fmt == "xlsx" and not output and sys.stdout.isatty():
        print("an .xlsx file is binary: pass --output FILE (or redirect stdout)", file=sys.stderr)
        return 2
    report = asyncio.run(_kpis(settings, start, end, now))
    if fmt == "xlsx":
        buffer = io.BytesIO()
        kpi_xlsx(report, buffer)
        data = buffer.getvalue()
    elif fmt == "json":
        data = json.dumps(report.as_json(), ensure_ascii=False, indent=2).encode("utf-8")
    else:
        data = kpi_csv(report)
    if output:
        with open(output, "wb") as fh:
            fh.write(data)
    else:
        sys.stdout.buffer.write(data) if hasattr(sys.stdout, "buffer") else sys.stdout.write(
            data.decode("utf-8")
        )
    print(f"{len(report.agents)} agents, {start.isoformat()} – {end.isoformat()}", file=sys.stderr)
    return 0
