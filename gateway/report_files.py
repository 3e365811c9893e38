"""The 受理记录 as an Excel workbook (openpyxl): a 受理记录 sheet and a 汇总 sheet.

The rows and the summary are built by `handoff.reports` (pure); this module only lays them out. It lives
in the gateway because `handoff` imports no third-party packages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import IO

from handoff.reports import RECORD_COLUMNS, RecordRow, ReportSummary, spreadsheet_safe, summary_table

__all__ = ["write_records_xlsx"]

_DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # what openpyxl cannot store (ILLEGAL_CHARACTERS_RE)
# Column widths in characters, by header: wide for text, narrow for numbers.
_WIDTHS = {
    "会话编号": 12,
    "受理时间": 20,
    "结束时间": 20,
    "客户": 16,
    "咨询内容": 40,
    "FAQ条目": 30,
    "标签": 20,
}


def write_records_xlsx(
    rows: Sequence[RecordRow], summary: ReportSummary | None, out: str | IO[bytes]
) -> None:
    """Write the rows (and the summary when given) as an .xlsx file to a path or a binary stream."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "受理记录"
    ws.append(list(RECORD_COLUMNS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([_cell(v) for v in row.values])
    for index, header in enumerate(RECORD_COLUMNS, start=1):
        letter = get_column_letter(index)
        ws.column_dimensions[letter].width = _WIDTHS.get(header, max(10, len(header) * 2))
        if header in ("受理时间", "结束时间"):
            for (cell,) in ws.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = _DATETIME_FORMAT
    ws.freeze_panes = "A2"
    if summary is not None:
        sheet = wb.create_sheet("汇总")
        sheet.append(["类别", "项目", "数值"])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for section, item, value in summary_table(summary):
            sheet.append([section, _cell(item), value])
        sheet.column_dimensions["A"].width = 14
        sheet.column_dimensions["B"].width = 40
        sheet.column_dimensions["C"].width = 12
    wb.save(out)


def _cell(value: object) -> object:
    if isinstance(value, str):
        # openpyxl stores a string starting with "=" as a formula: customer text must never run; and it
        # refuses control characters (a customer's "\x1b[31m" would fail the whole export).
        return spreadsheet_safe(_ILLEGAL.sub("", value))
    return value  # datetimes are local and naive already; numbers stay numbers
