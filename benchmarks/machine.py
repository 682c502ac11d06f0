"""How busy the machine was while a benchmark ran, so that idle and loaded figures are never mixed.

Every benchmark here makes one ``LoadWatch`` when it starts and prints ``watch.report()`` (and puts
``watch.fields()`` into its JSON, when it writes one) when it ends: the CPU count, the load average
(1, 5, 15 min) at the start and at the end, and a WARNING line when the machine was busy: a
1-minute load average above half the CPUs at the start, or at the end above what the benchmark
alone can make (one runnable thread per CPU) by a quarter of the CPUs. Figures printed under that
warning are from a busy machine: quote them as such, never beside idle ones.
"""

from __future__ import annotations

import os
from typing import Dict, List

BUSY_SHARE = 0.5  # at the start, a 1-minute load average above this share of the CPUs: a busy machine
OWN_SHARE = 1.0  # at the end, the benchmark's own threads account for up to one per CPU


class LoadWatch:
    def __init__(self) -> None:
        self.cpus = os.cpu_count() or 1
        self.start = os.getloadavg()
        self.end = self.start

    def stop(self) -> "LoadWatch":
        self.end = os.getloadavg()
        return self

    @property
    def busy(self) -> bool:
        return self.start[0] > BUSY_SHARE * self.cpus or self.end[0] > (OWN_SHARE + BUSY_SHARE / 2) * self.cpus

    def fields(self) -> Dict[str, object]:
        """For a benchmark's JSON output."""
        return {
            "cpus": self.cpus,
            "load_average_start_1_5_15": [round(x, 2) for x in self.start],
            "load_average_end_1_5_15": [round(x, 2) for x in self.end],
            "busy_machine": self.busy,
        }

    def report(self) -> str:
        """The machine lines to print last (stops the watch)."""
        self.stop()
        lines: List[str] = [
            f"machine: {self.cpus} CPUs; load average (1/5/15 min) "
            f"at start {'/'.join(f'{x:.2f}' for x in self.start)}, at end {'/'.join(f'{x:.2f}' for x in self.end)}"
        ]
        if self.busy:
            lines.append(
                f"WARNING: busy machine (1-min load average above {BUSY_SHARE:g} x {self.cpus} CPUs at the start, "
                f"or above {OWN_SHARE + BUSY_SHARE / 2:g} x {self.cpus} at the end): "
                "these figures are not idle figures; label them as such or rerun on an idle machine"
            )
        return "\n".join(lines)
