"""Progress bars for long work (fits, gradient fields, checks), in notebooks and terminals.

tqdm's notebook or terminal bar when tqdm is installed, else a one-line text bar on stderr that
redraws at most five times a second.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class ProgressBar:
    """tqdm's notebook/terminal bar when tqdm is installed, else a one-line text bar."""

    def __init__(self, total: int, desc: str = "", initial: int = 0):
        self.total, self.desc, self.n = total, desc, initial
        self._postfix = ""
        self._last_draw = 0.0
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: fall back to a plain line on stderr
            self._bar = None
        else:
            self._bar = tqdm(total=total, desc=desc, initial=initial, leave=True)

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n += n
        if postfix:
            self._postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in postfix.items())
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(self._postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_draw > 0.2 or self.n >= self.total:  # redraw at most 5× a second
            self._last_draw = now
            done = int(30 * self.n / max(self.total, 1))
            sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (30 - done)}] "
                             f"{self.n}/{self.total} {self._postfix}")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
