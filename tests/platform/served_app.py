"""The real app plus test-only routes, for tests that run it under gunicorn.

Served as `tests.platform.served_app:create_app()`; nothing here ships in the package.
"""

from __future__ import annotations

import asyncio
import logging
import os

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townsquare.main import create_app as create_real_app

logger = logging.getLogger("tests.served_app")


class Pid(BaseModel):
    pid: int = Field(description="The worker's process id.")


class PidHeaderMiddleware:
    """Say which worker answered, on every response (429s included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pid = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_pid(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-worker-pid", self.pid.decode())
            await send(message)

        await self.app(scope, receive, send_with_pid)


def create_app() -> FastAPI:
    app = create_real_app()
    router = APIRouter(prefix="/test")

    @router.get("/pid", response_model=Pid)
    async def pid() -> Pid:
        return Pid(pid=os.getpid())

    @router.get("/slow", response_model=Pid)
    async def slow(seconds: float = 3.0) -> Pid:
        logger.info("slow request started")
        await asyncio.sleep(seconds)
        logger.info("slow request finished")
        return Pid(pid=os.getpid())

    app.include_router(router)
    app.add_middleware(PidHeaderMiddleware)
    return app
