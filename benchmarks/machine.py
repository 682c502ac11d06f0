"""How busy the machine was while a benchmark ran, so that idle and loaded figures are never mixed.

Every benchmark here makes one ``LoadWatch`` when it starts and prints ``watch.report()`` (and puts
``watch.fields()`` into its JSON, when it writes one) when it ends: the CPU count, the load average
(1, 5, 15 min) at the start and at the end, and a WARNING line when the 1-minute load average was
above half the CPUs at either end. Figures printed under that warning are from a busy machine:
quote them as such, never beside idle ones.
"""

from __future__ import annotations

import os
from typing import Dict, List

BUSY_SHARE = 0.5  # a 1-minute load average above this share of the CPUs: a busy machine


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
        return max(self.start[0], self.end[0]) > BUSY_SHARE * self.cpus

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
                f"WARNING: busy machine (1-min load average above {BUSY_SHARE:g} x {self.cpus} CPUs at the start or the end): "
                "these figures are not idle figures; label them as such or rerun on an idle machine"
            )
        return "\n".join(lines)
