"""The scenario table: registration, options, results and the printed table."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# Columns every scenario reports (a scenario leaves out what it does not measure).
COLUMNS = (
    "inputs",
    "lost",
    "doubled",
    "never_answered",
    "5xx",
    "tracebacks",
    "hangs>5s",
    "rss_before_mb",
    "rss_after_mb",
)
# Columns that must be 0 for a scenario to pass.
MUST_BE_ZERO = ("lost", "never_answered", "5xx", "tracebacks", "hangs>5s", "failed_checks")


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line chose: size of the run, the seed, where to keep logs."""

    count: int = 10_000
    seed: int = 13
    concurrency: int = 16
    workdir: str | None = None  # None: a temporary directory, removed afterwards
    examples: int = 200  # schemathesis examples per operation (the long run of `make chaos`)


@dataclass(slots=True)
class Result:
    """One scenario's counts (COLUMNS), plus examples of what went wrong."""

    counts: dict[str, float] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(not self.counts.get(name) for name in MUST_BE_ZERO)


Scenario = Callable[[Options], Awaitable[Result]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {}


def scenario(name: str, description: str) -> Callable[[Scenario], Scenario]:
    """Register an async scenario under `name` (the table's first column)."""

    def register(func: Scenario) -> Scenario:
        SCENARIOS[name] = (description, func)
        return func

    return register


async def run(names: list[str], options: Options) -> dict[str, Result]:
    """Run the named scenarios one after another (they share the machine, not a gateway)."""
    results: dict[str, Result] = {}
    for name in names:
        started = time.monotonic()
        result = await SCENARIOS[name][1](options)
        result.seconds = round(time.monotonic() - started, 1)
        results[name] = result
    return results


def table(results: dict[str, Result]) -> str:
    """The results as a Markdown table (pasted into README's reliability section)."""
    head = ["scenario", *COLUMNS, "seconds", "ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, result in results.items():
        cells = [name]
        for column in COLUMNS:
            value = result.counts.get(column)
            cells.append("–" if value is None else f"{value:g}")
        cells += [f"{result.seconds:g}", "yes" if result.ok else "**NO**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict[str, Result], *, examples: int = 5, reported: tuple[str, ...] = ()) -> int:
    """Print the table (and `reported` counts as a second table), each scenario's other counts and first
    examples; the exit code: 0 when every row is ok."""
    print(table(results))
    if reported:
        print("| scenario | " + " | ".join(reported) + " |")
        for name, result in results.items():
            print(f"| {name} | " + " | ".join(f"{result.counts.get(c, 0):g}" for c in reported) + " |")
    for name, result in results.items():
        extra = {k: v for k, v in result.counts.items() if k not in COLUMNS and k not in reported}
        print(f"  {name}: {extra}")
        for example in result.examples[:examples]:
            print(f"  {name}: {example}")
    return 0 if all(r.ok for name, r in results.items() if name in SCENARIOS) else 1
