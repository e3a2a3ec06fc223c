"""The seam between intakes and the pipeline: what an intake submits and what it must answer to.

The pipeline owns this interface and never holds an intake: each `Message` carries the `Link` it came
in on, so acks and settlements go back the way their message came. The intakes (`intake.mqtt`,
`intake.ble`) plug in side by side, each implementing `Link` and feeding an `Inbox`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Link(Protocol):
    """What the pipeline calls on an intake after a group's commit (on the event loop thread)."""

    def settle(self, tokens: Sequence[object]) -> None:
        """The messages are committed or their rejection recorded: the intake may forget them."""

    def publish_acks(self, acks: Sequence[tuple[bytes, bytes]]) -> None:
        """Send signed acks, (device kid, ack bytes), after their bundles committed."""


@dataclass(slots=True)
class Message:
    """One received message; `token` is the link's handle to settle it (e.g. the MQTT packet id)."""

    topic: str
    payload: bytes
    received_at: float
    token: object
    link: Link


class Inbox(Protocol):
    """What an intake calls on the pipeline (on the event loop thread): submit, and mind the room."""

    def has_room(self) -> bool:
        """Whether the pipeline holds fewer messages than its bound: read more only while True."""

    def on_room(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever settled messages made room again."""

    def submit_nowait(self, message: Message) -> None:
        """Take one message now (an intake that read it off a socket cannot wait)."""
