"""The benches' environment knobs refuse what they cannot use, naming the variable."""

from __future__ import annotations

import pytest

from bench.knobs import knob


def test_a_knob_reads_its_variable_or_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEFU_BENCH_X", raising=False)
    assert knob("KEFU_BENCH_X", 5, 1, 10) == 5
    monkeypatch.setenv("KEFU_BENCH_X", " 7 ")
    assert knob("KEFU_BENCH_X", 5, 1, 10) == 7
    monkeypatch.setenv("KEFU_BENCH_X", "")
    assert knob("KEFU_BENCH_X", 5, 1, 10) == 5
    monkeypatch.setenv("SOAK_MINUTES", "0.5")
    assert knob("SOAK_MINUTES", 20.0, 0.1, 1440.0) == 0.5


@pytest.mark.parametrize("text", ["abc", "0", "11", "2.5", "9" * 5000, "-3"])
def test_a_knob_refuses_what_a_whole_number_knob_cannot_use(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("KEFU_BENCH_X", text)
    with pytest.raises(SystemExit) as refused:
        knob("KEFU_BENCH_X", 5, 1, 10)
    message = str(refused.value)
    assert message.startswith("KEFU_BENCH_X=") and "from 1 to 10" in message
    assert len(message) < 200  # a 5,000-digit value is not echoed whole


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "1e9", "soon"])
def test_a_knob_refuses_what_a_number_knob_cannot_use(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("SOAK_MINUTES", text)
    with pytest.raises(SystemExit, match="SOAK_MINUTES="):
        knob("SOAK_MINUTES", 20.0, 0.1, 1440.0)
