"""The FastAPI anchor of make bench: the seed's exchange service
(shared/seeds/000_*.txt), with the routes and bodies of this project's
stages, so the bench compares like with like.

  GET /                      {"message": ..., "stage": "fastapi"}
  POST /api/exchange_sync    the seed's main_sync.py: a plain def (run on
                             FastAPI's thread pool), the bills one after
                             another, each a time.sleep of EXCHANGE_DELAY_MS
                             (default 2000, the seed's time.sleep(2); the
                             bench sets 0), then the breakdown and total
  POST /api/exchange_async   {"status": "ok"} at once; the bills
                             concurrently (asyncio.gather) and the PUT to
                             MAIN_SERVICE_URL in the background (httpx, if
                             installed; otherwise the result is only logged)

Run by uvicorn as the lecture does, with its fast parts (uvloop, httptools):
  EXCHANGE_DELAY_MS=0 python3 -m uvicorn exchange_app:app --app-dir bench \\
      --loop uvloop --http httptools --no-access-log --port 8010
Validation is the seed's (request_id, exchange_rate and bills present):
the bench sends only valid requests.

EXCHANGE_TRACE=FILE writes the C servers' --trace lines (common/trace.h)
for this app too, so that build/trace draws it beside 06 (make demo):
each request, each bill's wait (a thread's time.sleep on the sync route,
a task's await asyncio.sleep on the async one), the callback PUT, and
asyncio's own scheduling: the loop asleep in its selector, each callback
it runs, each task running and what it awaits when it stops. Run it with
--loop asyncio (uvloop's loop is not Python's to look into). Unset (the
default), none of it is installed; what is left is a test of a global per
bill and per PUT, as TRACE() is in C. Python's standard library only; see
trace_install below."""
import asyncio
import itertools
import os
import threading
import time

from fastapi import BackgroundTasks, FastAPI, HTTPException

try:  # at start-up: an import in a task would stall the loop for 0.1 s
    import httpx
except ImportError:
    httpx = None

DELAY_S = int(os.getenv("EXCHANGE_DELAY_MS", "2000")) / 1000.0
MAIN_SERVICE_URL = os.getenv("MAIN_SERVICE_URL", "http://localhost:3001")
SECRET_TOKEN = os.getenv("SECRET_TOKEN", "MY_SECRET_TOKEN")

app = FastAPI(title="Exchange service (bench anchor)")


# ---- the trace (EXCHANGE_TRACE=FILE), off by default -----------------
# A line per event, as the C servers write them:
#     T_US PID TID CO NAME PH ID [LABEL]
# T_US is CLOCK_MONOTONIC (time.monotonic_ns on Linux), the C servers'
# clock; CO is the asyncio task, numbered in order of creation, -1 outside
# one (a worker thread, the loop itself). One os.write per line on an
# O_APPEND file, as in C. trace() is None while tracing is off, and every
# hook below is installed only when it is on.
trace = None
_task_numbers = {}
_numbers = itertools.count(1)


def _task_no(task):
    """A task's number, given at its first sight (ids are never reused
    while it lives: the dict holds it)."""
    n = _task_numbers.get(task)
    if n is None:
        n = _task_numbers[task] = next(_numbers)
    return n


def _current_co():
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no loop in this thread: a worker
        return -1
    return _task_no(task) if task is not None else -1


def _writer(fd):
    def emit(name, ph, ident, label=None, co=None):
        line = "%d %d %d %d %s %s %d%s\n" % (
            time.monotonic_ns() // 1000, os.getpid(),
            threading.get_native_id(), _current_co() if co is None else co,
            name, ph, ident, " " + label if label else "")
        os.write(fd, line.encode())
    return emit


def _awaiting(task):
    """What a task waits for, as 06 says why it parked: the innermost
    coroutine of its await chain ("sleep" in asyncio.sleep, "put_result"
    at its gather)."""
    if task.done():
        return "done"
    coro, name = task.get_coro(), "?"
    while hasattr(coro, "cr_await"):
        name = coro.__qualname__
        coro = coro.cr_await
    return name


def _is_task(obj):
    # Python's Task (ours, from the factory) is no subclass of C's.
    return isinstance(obj, (asyncio.Task, asyncio.tasks._PyTask))


def trace_install(path, loop):
    """Turns tracing on for this process and loop (at start-up)."""
    global trace
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    trace = _writer(fd)
    trace("stage", "M", 0, "fastapi", co=-1)

    # Tasks created from now on are Python's own Task, whose steps are
    # bound methods: a loop callback whose __self__ is the task.
    def task_factory(loop, coro):
        task = asyncio.tasks._PyTask(coro, loop=loop)
        trace("spawn", "I", _task_no(task), getattr(coro, "__qualname__", ""))
        return task
    loop.set_task_factory(task_factory)

    # The loop asleep in its selector: 06's epoll_wait.
    selector = loop._selector
    select = selector.select

    def traced_select(timeout=None):
        trace("blocked", "B", id(loop), "no timeout" if timeout is None
              else "timeout %d" % int(timeout * 1000), co=-1)
        events = select(timeout)
        trace("blocked", "E", id(loop), "events %d" % len(events), co=-1)
        return events
    selector.select = traced_select

    # Each callback the loop runs; a task's step is the task running.
    run = asyncio.events.Handle._run

    def traced_run(handle):
        task = getattr(handle._callback, "__self__", None)
        if _is_task(task):
            n = _task_no(task)
            trace("co", "B", n, co=n)
            try:
                run(handle)
            finally:
                trace("co", "E", n, _awaiting(task), co=n)
            return
        name = getattr(handle._callback, "__qualname__",
                       type(handle._callback).__name__)
        trace("run", "B", 0, name, co=-1)
        try:
            run(handle)
        finally:
            trace("run", "E", 0, co=-1)
    asyncio.events.Handle._run = traced_run


async def trace_at_start():
    trace_install(os.environ["EXCHANGE_TRACE"], asyncio.get_running_loop())


_requests = itertools.count(1)
_jobs = 0


class TraceRequests:
    """A plain ASGI middleware: request B when the app gets the request, E
    once the last byte of its answer is handed to uvicorn; the client's
    port, as the C servers name it. (Starlette's @app.middleware would
    add three tasks per request to the picture.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = next(_requests)
        trace("request", "B", rid, "port %d" % scope["client"][1])

        async def send_traced(message):
            await send(message)
            if message["type"] == "http.response.body" and \
                    not message.get("more_body"):
                trace("request", "E", rid)
        await self.app(scope, receive, send_traced)


if os.getenv("EXCHANGE_TRACE"):
    app.router.add_event_handler("startup", trace_at_start)
    app.add_middleware(TraceRequests)


async def calculate_single_bill(bill: dict, rate: float) -> dict:
    if trace:
        trace("bill", "B", id(bill))
    await asyncio.sleep(DELAY_S)
    if trace:
        trace("bill", "E", id(bill))
    subtotal_rub = bill["denomination"] * bill["count"] * rate
    return {"denomination_id": bill["denomination_id"],
            "subtotal_rub": round(subtotal_rub, 2)}


def check(data: dict) -> None:
    if not data.get("request_id") or not data.get("exchange_rate") \
            or not data.get("bills"):
        raise HTTPException(status_code=400, detail="Invalid payload")


@app.get("/")
async def root():
    return {"message": "Exchange service is running", "stage": "fastapi"}


def calculate_bill_values(bills: list, rate: float) -> list:
    """The seed's main_sync.py: time.sleep per bill, one after another."""
    result = []
    for bill in bills:
        if trace:
            trace("bill", "B", id(bill))
        time.sleep(DELAY_S)
        if trace:
            trace("bill", "E", id(bill))
        subtotal_rub = bill["denomination"] * bill["count"] * rate
        result.append({"denomination_id": bill["denomination_id"],
                       "subtotal_rub": round(subtotal_rub, 2)})
    return result


# A plain def, as in the seed: FastAPI runs it on its thread pool, so
# time.sleep blocks a worker thread, not the event loop.
@app.post("/api/exchange_sync")
def exchange_sync(data: dict):
    check(data)
    breakdown = calculate_bill_values(data["bills"], data["exchange_rate"])
    total = round(sum(b["subtotal_rub"] for b in breakdown), 2)
    return {"status": "completed", "request_id": data["request_id"],
            "breakdown": breakdown, "total_rub": total}


async def send_result(request_id: str, rate: float, bills: list) -> None:
    global _jobs
    if trace:
        _jobs += 1
        trace("jobs", "C", _jobs)
    try:
        await put_result(request_id, rate, bills)
    finally:
        if trace:
            _jobs -= 1
            trace("jobs", "C", _jobs)


async def put_result(request_id: str, rate: float, bills: list) -> None:
    breakdown = await asyncio.gather(
        *(calculate_single_bill(b, rate) for b in bills))
    if httpx is None:
        print(f"result for {request_id}: {breakdown} (httpx missing: not sent)")
        return
    async with httpx.AsyncClient() as client:
        if trace:
            trace("callback", "B", id(breakdown))
        try:
            await client.put(f"{MAIN_SERVICE_URL}/api/exchange_result",
                             json={"token": SECRET_TOKEN,
                                   "request_id": request_id,
                                   "breakdown": breakdown})
        finally:
            if trace:
                trace("callback", "E", id(breakdown))


@app.post("/api/exchange_async")
async def exchange_async(data: dict, background_tasks: BackgroundTasks):
    check(data)
    background_tasks.add_task(send_result, data["request_id"],
                              data["exchange_rate"], data["bills"])
    return {"status": "ok"}
