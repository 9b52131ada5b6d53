"""Reading a run's traces as a transcript: filters, one-line tool results, and the rich view of `tinyarch trace`.

The same one-liners and the same notion of an error serve the terminal and the HTML report, so both
tell the same story of a run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule
from rich.text import Text

from tinyarch.agents.state import origin_kind
from tinyarch.core.outage import OutageEvent

AGENTS = (
    "designer",
    "critic",
    "chat",
    "recall",
    "human",
    "design",
    "check",
    "evaluate",
    "analyse",
    "explain",
    "critique",
    "remember",
    "finalize",
    "outage",
    "report",
)
"""LLM agents first (`chat` answers questions), then the graph's tools in the order of one iteration (`recall`
brings memory's front into a new run, `human` applies the user's messages); `outage` records each wait for an
unreachable server and its recovery, `report` a failed report."""
PROMPT_LINES = 4
"""Lines of each prompt message shown before folding."""
COMMON_KEYS = {"time", "kind", "iteration", "agent"}


def is_error(record: dict[str, Any]) -> bool:
    """An LLM answer that failed parsing or validation, or a tool result that rejected or failed a candidate."""
    if record.get("kind") == "llm":
        return bool(record.get("errors"))
    return record.get("status") in ("rejected", "failed")


def select(
    records: Iterable[dict[str, Any]],
    iteration: int | None = None,
    agents: Iterable[str] = (),
    errors_only: bool = False,
) -> list[dict[str, Any]]:
    """The records that pass every given filter, in trace order."""
    wanted = set(agents)
    return [
        r
        for r in records
        if (iteration is None or r.get("iteration") == iteration)
        and (not wanted or r.get("agent") in wanted)
        and (not errors_only or is_error(r))
    ]


def by_iteration(records: list[dict[str, Any]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Consecutive records grouped by iteration (traces are appended in order, so this is every group once)."""
    for iteration, group in groupby(records, key=lambda r: r.get("iteration", 0)):
        yield iteration, list(group)


def step_line(record: dict[str, Any]) -> str:
    """One line for a tool result: what the step decided or measured."""
    agent = record.get("agent", "?")
    if agent == "design":
        proposals = record.get("proposals") or []
        kinds = Counter(origin_kind(str(p.get("origin", ""))) for p in proposals if isinstance(p, dict))
        shares = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        line = f"{record.get('strategy', '?')} proposed {len(proposals)} candidate{'s' * (len(proposals) != 1)}"
        return line + f" (attempt {record.get('attempt')})" + (f": {shares}" if shares else "")
    if agent in ("check", "evaluate"):
        line = f"{record.get('id', '?')} {record.get('status', '?')}"
        accuracy = (record.get("metrics") or {}).get("accuracy")
        if accuracy is not None:
            line += f": accuracy {accuracy:.2f} % in {record.get('seconds', 0.0):.1f} s"
        if record.get("recalled"):
            line += f": recalled from run {record['recalled']} (no budget spent)"
        return line + (f": {record['reason']}" if record.get("reason") else "")
    if agent == "recall":
        recalled = record.get("recalled") or []
        return f"recalled memory's front: {len(recalled)} of {record.get('known', 0)} known under these settings"
    if agent == "analyse":
        front = record.get("front") or []
        return f"front of {len(front)} [{', '.join(front)}], hypervolume {record.get('hypervolume', 0.0):.4f}"
    if agent == "explain":
        lines = str(record.get("summary", "")).splitlines() or [""]
        return lines[0] + (f" (+{len(lines) - 1} lines)" if len(lines) > 1 else "")
    if agent == "critique":
        return f"decision {record.get('decision', '?')}" + (f": {record['reason']}" if record.get("reason") else "")
    if agent == "finalize":
        return f"finalized [{', '.join(record.get('final') or [])}]" + (
            f": {record['reason']}" if record.get("reason") else ""
        )
    if agent == "outage":
        return OutageEvent.from_record(record).text()
    if agent == "human":
        return f"applied {record.get('message', '?')}" + (f": {record['text']}" if record.get("text") else "")
    payload = {k: v for k, v in record.items() if k not in COMMON_KEYS}
    return json.dumps(payload, default=str)[:300]


def llm_title(record: dict[str, Any]) -> str:
    """Which try, whether it was valid, how long and how many tokens, and which model answered."""
    errors = record.get("errors") or []
    verdict = f"{len(errors)} error{'s' * (len(errors) != 1)}" if errors else "valid"
    return (
        f"attempt {record.get('attempt', '?')} · {verdict} · "
        f"{record.get('latency_s', 0.0):.1f} s · {record.get('prompt_tokens', 0)} prompt + "
        f"{record.get('completion_tokens', 0)} completion tokens · {record.get('backend', '?')}"
    )


def fold(text: str, lines: int | None) -> tuple[str, int]:
    """The first `lines` lines of `text` (all when None) and how many were left out."""
    all_lines = text.splitlines()
    if lines is None or len(all_lines) <= lines:
        return text, 0
    return "\n".join(all_lines[:lines]), len(all_lines) - lines


def _folded(text: str, lines: int | None, style: str = "") -> Text:
    shown, hidden = fold(text, lines)
    out = Text(shown, style=style)
    if hidden:
        out.append(f"\n({hidden} more lines, --full to show)", style="dim italic")
    return out


def _llm_panel(record: dict[str, Any], full: bool, started: float) -> Panel:
    parts: list[Any] = []
    for message in record.get("messages") or []:
        parts.append(Text(f"[{message.get('role', '?')}]", style="bold cyan"))
        parts.append(_folded(str(message.get("content", "")), None if full else PROMPT_LINES))
    parts.append(Text("[answer]", style="bold green"))
    parts.append(Text(str(record.get("raw", ""))))
    for error in record.get("errors") or []:
        parts.append(Text(f"error: {error}", style="red"))
    title = f"{_clock(record, started)} {record.get('agent', '?')} · {llm_title(record)}"
    return Panel(Group(*parts), title=escape(title), title_align="left", border_style="red" if is_error(record) else "")


def _clock(record: dict[str, Any], started: float) -> str:
    seconds = max(0.0, float(record.get("time", started)) - started)
    return f"+{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def render(console: Console, records: list[dict[str, Any]], started: float, full: bool = False) -> None:
    """The transcript: a rule per iteration, a panel per LLM call, a line per tool result; clocks count from
    `started` (the run's first record), so a filtered view keeps the run's timeline."""
    for iteration, group in by_iteration(records):
        console.print(Rule(f"iteration {iteration}", align="left"))
        for record in group:
            if record.get("kind") == "llm":
                console.print(_llm_panel(record, full, started))
                continue
            line = Text(f"{_clock(record, started)} ", style="dim")
            line.append(f"{record.get('agent', '?'):<9} ", style="bold")
            if record.get("agent") == "explain":
                line.append(_folded(str(record.get("summary", "")), None if full else 1))
            else:
                line.append(step_line(record), style="red" if is_error(record) else "")
            console.print(line, soft_wrap=True)
            if record.get("agent") != "design":
                continue
            for proposal in record.get("proposals") or []:  # where each came from and how it was ranked
                origin, note = proposal.get("origin", ""), proposal.get("note", "")
                console.print(Text(f"      {origin}" + (f" · {note}" if note else ""), style="dim"), soft_wrap=True)
