"""How long work reports its progress: a callback, so library code draws nothing.

A stage calls ``progress(done, total)`` as it goes (``total`` None while unknown, such as the
rows of a file still being read); the CLI turns that into a Rich bar, a notebook into whatever
it likes, a worker into a log line or nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int | None], None]
