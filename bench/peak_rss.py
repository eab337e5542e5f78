"""Peak resident memory of the running process, for the bench scripts (`from peak_rss import PeakRSS`).

A helper, not a benchmark: it measures inside a variant's run; the comparing is bench/harness.py's."""

import threading

import psutil


class PeakRSS:
    """Samples this process's resident memory every 10 ms while the `with` block runs:
    `baseline` is the memory at the start, `peak` the most seen (the end included).
    `include_children`: this process's and its descendants' together (e.g. vLLM's engine core process)."""

    def __init__(self, include_children: bool = False):
        self.process = psutil.Process()
        self.include_children = include_children
        self.baseline = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss(self) -> int:
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True) if self.include_children else ():
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:  # exited between the listing and the reading
                pass
        return total

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
