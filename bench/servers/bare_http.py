"""B1 baselines: a bare FastAPI app with a small-dict route and a raw asyncpg read.

No middleware, no auth, no ORM: what the same framework does with nothing else.

    BENCH_PG_DSN=postgresql://... uvicorn bench.servers.bare_http:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The same pool size townsquare keeps per worker (DATABASE_POOL_SIZE's default).
    app.state.pool = await asyncpg.create_pool(os.environ["BENCH_PG_DSN"], min_size=10, max_size=10)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "healthy"}


@app.get("/users/{user_id}")
async def read_user(user_id: int) -> dict[str, Any]:
    row = await app.state.pool.fetchrow("SELECT id, name FROM users WHERE id = $1", user_id)
    if row is None:
        raise HTTPException(status_code=404, detail="User not found")
    return {"id": row["id"], "name": row["name"]}
