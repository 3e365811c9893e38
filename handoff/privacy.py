"""Masking personal numbers in text that leaves the database: logs, report exports, CSV/XLSX files.

The full text stays in the database so the agent can still call the customer back; whatever is
written elsewhere goes through `mask_sensitive` first. What is masked, and how (decided on purpose):

- Mainland mobile numbers (1[3-9]x, 11 digits), also written ``138 1234 5678``, ``138-1234-5678``,
  ``138.1234.5678``, ``+86 138…``, ``86-138…``, and glued to letters (``tel13812345678``): the middle four
  digits become ``****`` (``138****5678``); separators and the country code are kept so the shape stays
  readable.
- 18-character resident ID numbers (region, a plausible birth date 18xx–20xx, sequence, check digit 0–9/X):
  the first 6 (region) and the last 4 stay, the 8 birth-date digits are hidden: ``110105********002X``.
  The check digit is *not* verified, so a mistyped ID is masked too. Old 15-digit IDs (region, YYMMDD,
  sequence) keep region and sequence: ``110105******001``, unless named as an order/message number.
- Bank card numbers, 16–19 digits: every digit but the last 4 becomes ``*``, separators kept
  (``6222 0212 3456 7890 123`` → ``**** **** **** ***0 123``). A number written in groups of four is
  always a card. An unbroken 16–19 digit run is a card only when it starts with 62 (UnionPay, the
  usual card here) or passes the Luhn check, and not when the words just before it name an order,
  waybill, ticket or message id (订单号/单号/运单/快递/物流/工单/order/no./MsgId): agents need
  order numbers in the 受理记录 to follow up, and logs need platform message ids. Trade-off: a bare 16–19 digit order number with no such words still has a
  one-in-ten chance of passing Luhn and being masked — masking too much is the safe side.
- Full-width digits (``１３８…``) are folded to ASCII first, so they are caught as well; the masked text
  therefore shows them half-width.
Landlines, e-mail addresses and names are not masked.
"""

from __future__ import annotations

import re

__all__ = ["mask_sensitive"]

# Full-width digits, X, +, -, and the ideographic space fold to ASCII so one set of patterns sees them.
_FOLD = str.maketrans(
    {
        **{0xFF10 + i: str(i) for i in range(10)},
        0xFF38: "X",
        0xFF58: "x",
        0xFF0B: "+",
        0xFF0D: "-",
        0x3000: " ",
    }
)

# Digits, letters and an earlier mask are word characters here: a match must not start or end inside one.
_ID_CARD = re.compile(
    r"(?<![0-9A-Za-z*])"
    r"([1-8][0-9]{5})( ?)"  # region
    r"((?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))( ?)"  # birth date
    r"([0-9]{3}[0-9Xx])"  # sequence + check digit
    r"(?![0-9A-Za-z*])"
)
# 16–19 digits, single spaces or dashes allowed between them.
_CARD = re.compile(r"(?<![0-9A-Za-z*])[0-9](?:[ -]?[0-9]){15,18}(?![0-9A-Za-z*])")
# Words that name the number as something else: order, waybill, ticket, and platform message ids in logs.
_ORDER_CONTEXT = re.compile(
    r"(?:订单|单号|运单|快递|物流|工单|编号|order|no\.?|#|msg_?id|message_?id)\s*(?:号|号码|编号|id|no\.?)?\s*[:：#=]?\s*$",
    re.IGNORECASE,
)
# Letters may touch a phone number (tel13812345678, 电话:13812345678): only digits and masks may not.
_PHONE = re.compile(r"(?<![0-9*])((?:\+?86[ -]?)?1[3-9][0-9])([ .-]?)([0-9]{4})([ .-]?)([0-9]{4})(?![0-9*])")
_ID_CARD_15 = re.compile(
    r"(?<![0-9A-Za-z*])"
    r"([1-8][0-9]{5})"  # region
    r"([0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))"  # birth date YYMMDD
    r"([0-9]{3})"  # sequence
    r"(?![0-9A-Za-z*])"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _mask_id(match: re.Match[str]) -> str:
    region, sep1, birth, sep2, tail = match.groups()
    return f"{region}{sep1}{'*' * len(birth)}{sep2}{tail}"


def _is_card(candidate: str, before: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    if digits != candidate:
        # Written in groups: a card when every group but the last has four digits (4-4-4-4-x).
        groups = re.split(r"[ -]", candidate)
        return all(len(g) == 4 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 4
    if _ORDER_CONTEXT.search(before):
        return False
    return digits.startswith("62") or _luhn_ok(digits)


def _mask_digits_but_last4(candidate: str) -> str:
    total = sum(ch.isdigit() for ch in candidate)
    seen = 0
    out = []
    for ch in candidate:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > total - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_sensitive(text: str) -> str:
    """The text with mobile, resident-ID and bank-card numbers masked (see the module doc for the rules)."""
    if not text:
        return text
    text = text.translate(_FOLD)
    text = _ID_CARD.sub(_mask_id, text)

    def card(match: re.Match[str]) -> str:
        candidate = match.group(0)
        before = text[max(0, match.start() - 12) : match.start()]
        return _mask_digits_but_last4(candidate) if _is_card(candidate, before) else candidate

    text = _CARD.sub(card, text)

    def old_id(match: re.Match[str]) -> str:
        if _ORDER_CONTEXT.search(text[max(0, match.start() - 12) : match.start()]):
            return match.group(0)
        return f"{match.group(1)}******{match.group(3)}"

    text = _ID_CARD_15.sub(old_id, text)
    return _PHONE.sub(lambda m: f"{m.group(1)}{m.group(2)}****{m.group(4)}{m.group(5)}", text)
