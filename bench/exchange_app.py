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
the bench sends only valid requests."""
import asyncio
import os
import time

from fastapi import BackgroundTasks, FastAPI, HTTPException

DELAY_S = int(os.getenv("EXCHANGE_DELAY_MS", "2000")) / 1000.0
MAIN_SERVICE_URL = os.getenv("MAIN_SERVICE_URL", "http://localhost:3001")
SECRET_TOKEN = os.getenv("SECRET_TOKEN", "MY_SECRET_TOKEN")

app = FastAPI(title="Exchange service (bench anchor)")


async def calculate_single_bill(bill: dict, rate: float) -> dict:
    await asyncio.sleep(DELAY_S)
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
        time.sleep(DELAY_S)
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
    breakdown = await asyncio.gather(
        *(calculate_single_bill(b, rate) for b in bills))
    try:
        import httpx
    except ImportError:
        print(f"result for {request_id}: {breakdown} (httpx missing: not sent)")
        return
    async with httpx.AsyncClient() as client:
        await client.put(f"{MAIN_SERVICE_URL}/api/exchange_result",
                         json={"token": SECRET_TOKEN, "request_id": request_id,
                               "breakdown": breakdown})


@app.post("/api/exchange_async")
async def exchange_async(data: dict, background_tasks: BackgroundTasks):
    check(data)
    background_tasks.add_task(send_result, data["request_id"],
                              data["exchange_rate"], data["bills"])
    return {"status": "ok"}
