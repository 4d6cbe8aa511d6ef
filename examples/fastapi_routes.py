"""fastapi_routes: FastAPI's two kinds of route, and the one that stops
everything.

Section 13 ("asyncio and FastAPI, name by name"). The same wait of
?ms=N milliseconds written three ways:

  GET /def?ms=N       a plain def with time.sleep: FastAPI runs it on its
                      thread pool (anyio's, 40 threads), so 40 can wait
                      at once; the 41st waits for a thread
  GET /async?ms=N     async def with await asyncio.sleep: on the event
                      loop, which runs other requests meanwhile
  GET /blocking?ms=N  async def with time.sleep: on the event loop, which
                      it stops: every other request waits (06's
                      --blocking-bug, section 8)

Run: python3 examples/fastapi_routes.py [--port N]
(N 0, the default, lets the kernel choose; the first line printed is
"listening on http://127.0.0.1:PORT", as the stages print it). Needs
FastAPI and uvicorn (tools/deps.sh --optional) in the python3 that runs
it (Debian's, /usr/bin/python3, has them once installed).
What to notice: five concurrent requests of 300 ms each take about
0.3 s on /def and /async, and 0.3, 0.6 ... 1.5 s on /blocking.
Exercise s13-routes makes /blocking wait without stopping the loop,
and keeps it an async def."""
import asyncio
import socket
import sys
import time

import uvicorn
from fastapi import FastAPI

app = FastAPI(title="three routes, one wait")


@app.get("/def")
def wait_def(ms: int = 300):
    time.sleep(ms / 1000)  # on a pool thread: the loop runs on
    return {"route": "def", "ms": ms}


@app.get("/async")
async def wait_async(ms: int = 300):
    await asyncio.sleep(ms / 1000)  # parks this request, the loop runs on
    return {"route": "async", "ms": ms}


@app.get("/blocking")
async def wait_blocking(ms: int = 300):
    time.sleep(ms / 1000)  # on the loop's own thread: nothing else runs
    return {"route": "blocking", "ms": ms}


def main() -> None:
    port = 0
    if len(sys.argv) == 3 and sys.argv[1] == "--port":
        port = int(sys.argv[2])
    elif len(sys.argv) != 1:
        sys.exit("usage: fastapi_routes.py [--port N]")
    # Bound and listening here, so that port 0 gives a port to announce,
    # and a client that comes before uvicorn is ready waits in the
    # backlog instead of being refused.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
