"""What every benchmark row reports of its samples: the median and the 95th percentile."""

from __future__ import annotations

import statistics


class Percentiles:
    """Mixin for a row with ``samples_ms``."""

    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
