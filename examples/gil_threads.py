"""gil_threads: the same CPU-bound loop on one Python thread, then on four.

Section 4 ("The GIL, measured"). In CPython as usually built, the Global
Interpreter Lock lets one thread at a time run Python bytecode: four
threads that compute take turns, so four loops take about four times as
long as one, however many cores there are. A thread gives the lock up
while it waits in a system call or in C code that releases it (a socket
read, time.sleep, hashlib on large data, numpy), which is why threads
still help I/O-bound Python. The free-threaded build (PEP 703:
python3.13t, experimental; python3.14t, supported but still a separate
build) has no GIL, and there the four threads share the cores.

Run: python3 examples/gil_threads.py. It prints the interpreter and
whether its GIL is on (sys._is_gil_enabled, from 3.13; before 3.13 it
always is), then the time of each run:
  CPython 3.11.7, GIL enabled
  Python, 1 threads: 0.07 s
  Python, 4 threads: 0.23 s
What to notice: on two cores the ideal for four loops is twice one
loop's time; with the GIL it is about four times (the one-thread run is
short, so start-up and noise weigh on it: read the ratio as "three to
four"). 06's CPU work on C threads (--cpu-ms with --offload) has no such
lock: the lecture's block runs both."""
import platform
import sys
import threading
import time


def burn() -> None:
    """Three million additions in Python: pure bytecode, the GIL held."""
    n = 0
    for i in range(3_000_000):
        n += i


def run(threads: int) -> float:
    """Seconds for `threads` threads, each running burn() once."""
    ts = [threading.Thread(target=burn) for _ in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.monotonic() - t0


def main() -> None:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"{platform.python_implementation()} {platform.python_version()}, "
          f"GIL {'enabled' if gil else 'disabled'}")
    for k in (1, 4):
        print(f"Python, {k} threads: {run(k):.2f} s")


if __name__ == "__main__":
    main()
