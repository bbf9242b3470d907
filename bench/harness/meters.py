"""Where the time goes during a phase: CPU per process group (from /proc), and what the database's client
backends wait on (pg_stat_activity)."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

from bench.harness.database import Database

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent during a phase by the load generator, gunicorn, PostgreSQL, and everything else.

    Counted per process that lives at the end of the phase (raw clients keep their connections open
    until then), so a process that exits in between takes nothing away.
    """

    def __init__(self, gunicorn_pid: int) -> None:
        self.gunicorn_pid = gunicorn_pid

    def owner(self, pid: int, parent: int, name: str) -> str:
        if pid == os.getpid():
            return "load generator"
        if pid == self.gunicorn_pid:
            return "gunicorn"
        if parent == self.gunicorn_pid:
            return f"worker {pid}"
        if name == "postgres" or name.startswith("postgres:"):
            return "postgres"
        return ""

    def snapshot(self) -> dict[int, tuple[str, float]]:
        """pid -> (owner, user + system seconds); pid 0 holds the whole machine's busy seconds."""
        seen: dict[int, tuple[str, float]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            owner = self.owner(int(entry.name), int(fields[1]), name)
            if owner:
                seen[int(entry.name)] = (owner, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
        ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        seen[0] = ("machine", (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS)
        return seen

    def since(self, before: dict[int, tuple[str, float]]) -> dict[str, float]:
        """Seconds per owner; gunicorn's total includes its workers, each also listed as "worker PID"."""
        used = dict.fromkeys(("load generator", "gunicorn", "postgres", "other processes"), 0.0)
        machine = 0.0
        for pid, (owner, seconds) in self.snapshot().items():
            spent = seconds - before[pid][1] if pid in before and before[pid][0] == owner else seconds
            if pid == 0:
                machine = spent
            elif owner.startswith("worker"):
                used["gunicorn"] += spent
                used[owner] = spent
            else:
                used[owner] += spent
        accounted = sum(spent for owner, spent in used.items() if not owner.startswith("worker"))
        used["other processes"] = max(0.0, machine - accounted)
        return used


class WaitSampler:
    """Samples what the database's client backends are doing, every 50 ms, on a connection of its own."""

    def __init__(self, database: Database) -> None:
        self.conn = database.connect()
        self.conn.autocommit = True
        self.name = database.name
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with self.conn.cursor() as cursor:
            while not self.stop.wait(0.05):
                cursor.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    [self.name],
                )
                self.samples += 1
                for state, wait_type, wait in cursor.fetchall():
                    self.counts[f"{state} {wait_type or 'on CPU'}{':' + wait if wait else ''}"] += 1

    def finish(self) -> dict[str, float]:
        """Average number of backends in each state over the phase."""
        self.stop.set()
        self.thread.join()
        self.conn.close()
        return {key: count / max(self.samples, 1) for key, count in self.counts.most_common(6)}
