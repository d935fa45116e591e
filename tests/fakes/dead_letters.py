"""In-memory stand-ins for the replay ports, for unit tests of the use case's rules. The archive
fake passes the same contract tests as the MongoDB adapter (tests/integration)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.dead_letters import Choose, DeadLetter, ReplayClaim, letter_id


class FakeDeadLetterArchive:
    def __init__(self) -> None:
        self.letters: dict[str, DeadLetter] = {}
        self.finds = 0

    async def keep(self, letter: DeadLetter) -> None:
        self.letters.setdefault(letter.letter_id, letter)

    async def find(self, tenant: str, task_id: str, run: int) -> DeadLetter | None:
        self.finds += 1
        return self.letters.get(letter_id(tenant, task_id, run))

    async def find_many(self, letter_ids: Sequence[str]) -> dict[str, DeadLetter]:
        return {key: self.letters[key] for key in letter_ids if key in self.letters}

    async def claim(self, letter: DeadLetter, claim: ReplayClaim) -> bool:
        # No await between the check and the write: atomic on one event loop.
        kept = self.letters.get(letter.letter_id)
        current = kept.replay if kept is not None else None
        if kept is not None and current != letter.replay:
            return False
        self.letters[letter.letter_id] = dataclasses.replace(kept or letter, replay=claim)
        return True

    async def release(self, letter: DeadLetter, claim: ReplayClaim) -> None:
        kept = self.letters.get(letter.letter_id)
        if kept is not None and kept.replay == claim:
            self.letters[letter.letter_id] = dataclasses.replace(kept, replay=None)


@dataclass
class RecordingPublisher:
    sent: list[DeadLetter] = field(default_factory=list)
    fail_with: Exception | None = None

    async def republish(self, letter: DeadLetter) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(letter)


@dataclass
class FakeDeadLetterQueue:
    letters: list[DeadLetter] = field(default_factory=list)
    scans: int = 0

    async def scan(self, task_type: str, choose: Choose | None = None) -> list[DeadLetter]:
        self.scans += 1
        found = [letter for letter in self.letters if letter.task_type == task_type]
        for letter in found:
            if choose is not None and await choose(letter):
                self.letters.remove(letter)
        return found
