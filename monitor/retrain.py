"""The retrain trigger: when quality falls with no version to blame, run the configured command
(e.g. the builder job, `sentinel build ranker --repository /models`) at most once per cooldown per
model. The command runs in the background with SENTINEL_RETRAIN_MODEL and SENTINEL_RETRAIN_REASON in
its environment; what it publishes is deployed under watch like any other version, by whoever
deploys (the sidecar never activates a version on its own)."""
from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from monitor.types import Event


@dataclass(frozen=True)
class RetrainOutcome:
    triggered: bool      # False: inside the cooldown (nothing recorded)
    detail: str          # "started pid 123", "no retrain_command configured", "cannot start: ..."


def last_triggers(events: Iterable[Event]) -> dict[str, float]:
    """Per model, the newest `retrain` event's time: the poller records one for each trigger, so a
    restarted sidecar reads its cooldown back from its event log instead of starting the builder
    job again."""
    last: dict[str, float] = {}
    for e in events:
        if e.kind == "retrain" and e.model:
            last[e.model] = max(e.ts, last.get(e.model, e.ts))
    return last


class RetrainRunner:
    def __init__(self, command: str | None, cooldown_s: float, log_dir: Path | None = None,
                 clock: Callable[[], float] = time.time,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                 last: Mapping[str, float] | None = None):
        self.command = shlex.split(command) if command else None
        self.cooldown_s, self.log_dir, self.clock, self._popen = cooldown_s, log_dir, clock, popen
        self._last: dict[str, float] = dict(last or {})  # model -> last trigger (last_triggers)
        self._running: list[subprocess.Popen] = []

    def trigger(self, model: str, reason: str) -> RetrainOutcome:
        now = self.clock()
        self._running = [p for p in self._running if p.poll() is None]  # reap finished ones
        last = self._last.get(model)
        if last is not None and now - last < self.cooldown_s:
            return RetrainOutcome(False, f"cooldown: last trigger {now - last:.0f}s ago")
        self._last[model] = now
        if self.command is None:
            return RetrainOutcome(True, "no retrain_command configured: recorded and alerted only")
        env = {**os.environ, "SENTINEL_RETRAIN_MODEL": model, "SENTINEL_RETRAIN_REASON": reason[:2000]}
        log = None
        try:
            if self.log_dir is not None:
                log = open(Path(self.log_dir) / f"retrain-{model}-{int(now)}.log", "ab")
            proc = self._popen(self.command, env=env, stdout=log or subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
        except OSError as exc:
            return RetrainOutcome(True, f"cannot start {self.command[0]!r}: {exc}")
        finally:
            if log is not None:
                log.close()  # the child has its own descriptor
        self._running.append(proc)
        return RetrainOutcome(True, f"started `{shlex.join(self.command)}` as pid {proc.pid}")
