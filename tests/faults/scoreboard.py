"""The fault suite's scoreboard: one row per scenario, counted from what a user and a peer see.

A row counts tasks by what the HTTP API answered (status, attempt) and by the side effects the
webhook receiver saw (deliveries per X-Task-Id), never by what the system says about itself.

- lost: an accepted task (202, or a confirmed direct publish) that never reached a terminal
  status, or reached the expected one without its side effect;
- status wrong: a terminal status (or attempt) other than the expected one;
- duplicate effects: deliveries beyond the expected count (at-least-once: reported, not failed);
- regressions: tasks whose polled status went backwards at least once (queued < running <
  retrying, per attempt < terminal);
- time to converge: seconds from the first submission until every accepted task was terminal.

Every `POST /tasks` must be accepted: a refused one fails the row unless the scenario provoked
it, either for that one request (`Submission.allowed`, e.g. 409 while its key is in progress) or
with a refusal window (`Row.expect_refusals`, e.g. 503 while the broker is away). Without this
rule a row where every POST answered 503 would pass: nothing accepted, nothing lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from contracts.statuses import Status, position

COLUMNS = (
    "scenario", "submitted", "accepted", "refused (503)", "succeeded",
    "failed/dead (expected)", "lost", "duplicate effects", "status wrong", "regressions",
    "time to converge",
)


@dataclass(frozen=True)
class Expect:
    """What one accepted task must end as; `status` None: no status at all (quarantined)."""

    status: Status | None
    attempt: int | None = None
    effects: int = 1  # webhook deliveries the receiver must count for it


@dataclass(frozen=True)
class Submission:
    """One `POST /tasks` and how it went; `code` None: no HTTP answer at all."""

    code: int | None
    task_id: str | None
    sent_at: float  # time.monotonic() when the request went out
    latency_s: float
    url: str | None = None  # the webhook it would call
    error: str | None = None
    # Answers besides acceptance that the scenario asks for with this very request (e.g. 409
    # while its Idempotency-Key is in progress, 422 for another body under a used key).
    allowed: frozenset[int] = frozenset()

    @property
    def accepted(self) -> bool:
        return self.task_id is not None

    @property
    def answered_at(self) -> float:
        return self.sent_at + self.latency_s


@dataclass
class RefusalWindow:
    """A fault the scenario injects on purpose, during which a request may be refused with one
    of `codes`: those whose flight (sent .. answered) overlaps [opened, closed]. A scenario
    closes it once the system accepts again, so a refusal after that fails the row."""

    codes: frozenset[int]
    why: str
    opened: float
    closed: float | None = None

    def close(self, at: float | None = None) -> None:
        if self.closed is None:
            self.closed = time.monotonic() if at is None else at

    def covers(self, submission: Submission) -> bool:
        if submission.code is None or submission.code not in self.codes:
            return False
        return submission.answered_at >= self.opened and (
            self.closed is None or submission.sent_at <= self.closed)


@dataclass
class Row:
    scenario: str
    nodeid: str = ""
    submitted: int = 0
    accepted: int = 0
    refused: int = 0
    succeeded: int = 0
    failed_dead: int = 0
    failed_dead_expected: int = 0
    lost: int = 0
    duplicate_effects: int | None = 0
    status_wrong: int = 0
    regressions: int = 0
    # GET answered 404 after the task's 202: read-your-writes broken (not a column; fails the row).
    not_found_after_202: int = 0
    # POSTs refused (or unanswered) without the scenario asking for it (not a column; fails the
    # row): see `answered`.
    unexpected_answers: int = 0
    refusal_windows: list[RefusalWindow] = field(default_factory=list)
    converge_s: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.error is None and self.lost == 0 and self.status_wrong == 0
                and self.regressions == 0 and self.not_found_after_202 == 0
                and self.unexpected_answers == 0 and not self.open_windows()
                and self.failed_dead == self.failed_dead_expected)

    def expect_refusals(self, *codes: int, why: str, at: float | None = None) -> RefusalWindow:
        """Open a window in which requests may be refused with `codes`; close it (`.close()`)
        once the system accepts again. A window left open fails the row."""
        window = RefusalWindow(frozenset(codes), why, time.monotonic() if at is None else at)
        self.refusal_windows.append(window)
        return window

    def open_windows(self) -> list[RefusalWindow]:
        return [window for window in self.refusal_windows if window.closed is None]

    def answered(self, submission: Submission) -> None:
        """Count one `POST /tasks` as soon as it is answered: accepted, refused on purpose (its
        own `allowed` answers, or a refusal window open or closed since it was sent), or
        unexpected. Judged at once, which is exact: a window opened later cannot cover it, and
        one still open covers it whenever it closes. (`submitted` is counted when it is sent.)"""
        if submission.accepted:
            self.accepted += 1
            return
        if submission.code == 503:
            self.refused += 1
        if submission.code in submission.allowed or any(
                window.covers(submission) for window in self.refusal_windows):
            return
        self.unexpected_answers += 1
        answer = submission.code or submission.error
        self.example(f"POST answered {answer} in {submission.latency_s:.1f} s without a fault "
                     f"that explains it{self._when(submission)}")

    def _when(self, submission: Submission) -> str:
        """How long after the last refusal window ended it was sent, for the report."""
        ended = [w.closed for w in self.refusal_windows
                 if w.closed is not None and w.closed < submission.sent_at]
        if not ended:
            return ""
        return f" (sent {submission.sent_at - max(ended):.1f} s after a refusal window ended)"

    def note(self, text: str) -> None:
        self.notes.append(text)

    def example(self, text: str) -> None:
        """Keep a few concrete cases of what went wrong, for the report."""
        if len(self.examples) < 5:
            self.examples.append(text)

    def cells(self) -> list[str]:
        duplicates = "n/a" if self.duplicate_effects is None else str(self.duplicate_effects)
        converge = "-" if self.converge_s is None else f"{self.converge_s:.1f} s"
        return [
            self.scenario, str(self.submitted), str(self.accepted), str(self.refused),
            str(self.succeeded), f"{self.failed_dead} ({self.failed_dead_expected})",
            str(self.lost), duplicates, str(self.status_wrong), str(self.regressions), converge,
        ]


@dataclass(frozen=True)
class Final:
    """A task's last answer from `GET /tasks/{id}` (None: never found)."""

    status: Status | None
    attempt: int | None


def rank(status: Status, attempt: int) -> int:
    """Order of statuses as polled: the API shows attempt and status, not run (always 1 here)."""
    return position(1, attempt, status)


def count(
    row: Row, expected: dict[str, Expect], final: dict[str, Final], effects: dict[str, int],
    regressed: Iterable[str],
) -> None:
    """Fill the counting columns of `row` from what was expected and what was observed."""
    row.failed_dead_expected = sum(
        1 for e in expected.values() if e.status in (Status.FAILED, Status.DEAD))
    row.succeeded = row.failed_dead = row.lost = row.status_wrong = 0
    duplicates = 0
    for task_id, expect in expected.items():
        seen = final.get(task_id, Final(None, None))
        delivered = effects.get(task_id, 0)
        duplicates += max(0, delivered - expect.effects)
        if seen.status is Status.SUCCEEDED:
            row.succeeded += 1
        elif seen.status in (Status.FAILED, Status.DEAD):
            row.failed_dead += 1
        if expect.status is None:
            continue
        if seen.status is None or not seen.status.is_terminal:
            row.lost += 1
            row.example(f"lost {task_id}: last seen {seen.status}")
        elif seen.status is not expect.status or (
                expect.attempt is not None and seen.attempt != expect.attempt):
            row.status_wrong += 1
            row.example(f"wrong {task_id}: {seen.status} attempt {seen.attempt}, expected "
                          f"{expect.status} attempt {expect.attempt}")
        elif delivered < expect.effects:
            row.lost += 1
            row.example(f"lost effect {task_id}: {delivered} of {expect.effects} deliveries")
    if row.duplicate_effects is not None:
        row.duplicate_effects = duplicates
    row.regressions = len(set(regressed))


@dataclass
class Scoreboard:
    """Every scenario's row, in the order the scenarios ran; rows are added when a scenario
    starts so that one which fails half-way still shows."""

    rows: list[Row] = field(default_factory=list)

    def add(self, scenario: str, nodeid: str) -> Row:
        row = Row(scenario, nodeid=nodeid)
        self.rows.append(row)
        return row

    def rows_of(self, nodeid: str) -> list[Row]:
        return [row for row in self.rows if row.nodeid == nodeid]

    def ordered(self) -> list[Row]:
        """Rows by scenario number ("3. ..." before "10. ..."), whatever order they ran in."""
        def number(row: Row) -> tuple[int, str]:
            head = row.scenario.split(".", 1)[0]
            return (int(head) if head.isdigit() else 1_000, row.scenario)

        return sorted(self.rows, key=number)

    def table(self) -> list[str]:
        body = [row.cells() for row in self.ordered()]
        widths = [max(len(cells[i]) for cells in (list(COLUMNS), *body))
                  for i in range(len(COLUMNS))]
        line = " | ".join(name.ljust(widths[i]) for i, name in enumerate(COLUMNS))
        rule = "-+-".join("-" * width for width in widths)
        rows = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells))
                for cells in body]
        return [line, rule, *rows]

    def verdicts(self) -> list[str]:
        lines = []
        for row in self.ordered():
            verdict = "PASS" if row.passed else "FAIL"
            details = [*row.notes, *row.examples]
            if row.unexpected_answers:
                details.append(f"{row.unexpected_answers} POST(s) refused or unanswered outside "
                               "any refusal the scenario injected")
            details += [f"refusal window never closed: {w.why}" for w in row.open_windows()]
            if row.error:
                details.append(f"error: {row.error}")
            lines.append(f"{verdict} {row.scenario}" + "".join(f"\n    {d}" for d in details))
        return lines

    def markdown(self) -> str:
        head = "| " + " | ".join(COLUMNS) + " |"
        rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
        rows = ["| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |"
                for row in self.ordered()]
        verdicts = [f"- {line}" if not line.startswith(" ") else f"  - {line.strip()}"
                    for line in "\n".join(self.verdicts()).splitlines()]
        return "\n".join(["# Fault suite scoreboard", "", head, rule, *rows, "", *verdicts, ""])

    def write_markdown(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown())
