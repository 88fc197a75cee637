"""A Keras-style progress bar: ``12/50 [=====>....] - ETA: 3s - loss: 0.4123``.

On a terminal it redraws one line; elsewhere (logs, CI) it prints a line only at the
end, or every ``interval`` seconds for very long loops, so logs stay readable.
"""
import os
import sys
import time


class Progbar:
    """``bar = Progbar(100); bar.update(10, [("loss", 0.3)])``; ``bar.add(1)`` advances by one.

    ``target=None`` for an unknown length. ``unit_name`` is shown in the throughput
    ("step", "image", "bytes"...). ``verbose``: 1 bar, 2 a single line at the end, 0 silent.
    ``delay``: show nothing unless the work is still going after that many seconds (for steps
    that are usually instant, such as scanning a small folder).
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, stateful_metrics=None, unit_name="step",
                 file=None, delay=0.0):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.stateful_metrics = set(stateful_metrics or ())
        self.unit_name = unit_name
        self.delay = delay
        self.file = file or sys.stdout
        self._dynamic = (hasattr(self.file, "isatty") and self.file.isatty()) or "ipykernel" in sys.modules
        if not self._dynamic and interval < 10:
            self.interval = 10.0
        self._values = {}
        self._order = []
        self._start = time.time()
        # Non-interactive output: the first heartbeat line only after `interval`, not at step 1.
        self._last_update = 0.0 if self._dynamic else self._start
        self._seen = 0
        self._prev_len = 0

    def update(self, current, values=None, finalize=None):
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for name, value in values or []:
            if name not in self._order:
                self._order.append(name)
            if name in self.stateful_metrics:
                self._values[name] = [value, 1]
            else:
                # Running mean weighted by the number of steps since the last update.
                step = max(current - self._seen, 1)
                total, count = self._values.get(name, [0.0, 0])
                self._values[name] = [total + value * step, count + step]
        self._seen = current
        if self.verbose == 0:
            return
        now = time.time()
        if now - self._start < self.delay:
            return
        if not finalize and now - self._last_update < self.interval:
            return
        self._last_update = now
        if self.verbose == 1 and (self._dynamic or finalize):
            self._write(self._bar(current, now, finalize), finalize)
        elif self.verbose == 2 and finalize:
            self._write(self._metrics_text(current, now, finalize).lstrip(" -"), True)
        elif self.verbose == 1 and not self._dynamic:
            # Non-interactive and not final: a periodic heartbeat line.
            self._write(self._bar(current, now, False), True)

    def add(self, n, values=None):
        self.update(self._seen + n, values)

    def _bar(self, current, now, finalize):
        if self.target is not None:
            digits = len(str(self.target))
            text = f"{current:{digits}d}/{self.target} ["
            filled = int(self.width * min(current / self.target, 1.0)) if self.target else self.width
            text += "=" * max(filled - 1, 0) + (">" if filled < self.width else "=") if filled else ""
            text += "." * (self.width - max(filled, 0)) + "]"
        else:
            text = f"{current:7d}/Unknown"
        return text + self._metrics_text(current, now, finalize)

    def _metrics_text(self, current, now, finalize):
        elapsed = now - self._start
        if finalize or self.target is None or not current:
            rate = current / elapsed if elapsed > 0 else 0.0
            text = f" - {_fmt_time(elapsed)}"
            if rate:
                text += f" {_fmt_rate(rate, self.unit_name)}"
        else:
            eta = elapsed / current * (self.target - current)
            text = f" - ETA: {_fmt_time(eta)}"
        for name in self._order:
            total, count = self._values[name]
            value = total / max(count, 1)
            text += f" - {name}: {value:.4f}" if abs(value) >= 1e-3 or value == 0 else f" - {name}: {value:.4e}"
        return text

    def _write(self, line, newline):
        if self._dynamic:
            pad = max(self._prev_len - len(line), 0)
            self.file.write("\r" + line + " " * pad + ("\n" if newline else ""))
            self._prev_len = len(line)
        else:
            self.file.write(line + "\n")
        self.file.flush()


def _fmt_time(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    if seconds >= 1:
        return f"{seconds:.0f}s"
    return f"{seconds * 1000:.0f}ms"


def _fmt_rate(rate, unit):
    if unit == "bytes":
        for u in ("B", "KB", "MB", "GB"):
            if rate < 1024 or u == "GB":
                return f"{rate:.1f} {u}/s"
            rate /= 1024
    if rate >= 1:
        plural = unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")
        return f"{rate:.1f} {plural}/s"
    return f"{1 / rate:.2f}s/{unit}"


def progress_enabled():
    """False when TLKIT_PROGRESS=0 (quiet scripts and tests)."""
    return os.environ.get("TLKIT_PROGRESS", "1") != "0"
