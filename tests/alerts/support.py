"""Helpers shared by the notifier's tests and the stream job's end-to-end alert tests."""

from __future__ import annotations

import threading

from apt_energy.alerts.notifier import Notifier


class NotifierThread:
    """A notifier running in a thread; an exception escaping it (a simulated crash) is kept."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.notifier.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.notifier.stop_event.set()
        self.thread.join(30)
