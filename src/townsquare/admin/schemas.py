from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from townsquare.platform.instances import InstanceReport


class BrokerHealth(BaseModel):
    backend: Literal["memory", "redis"] = Field(description="The broker backend in use.")
    healthy: bool = Field(
        description="Whether the instance that answered reaches its broker (the others "
        "report theirs in `instances`)."
    )


class Totals(BaseModel):
    users: int = Field(description="Accounts, disabled ones included.")
    rooms: int = Field(description="Rooms, public and private.")
    messages: int = Field(description="Messages ever stored (the sum of every room's last seq).")
    sockets: int = Field(description="WebSockets open across every instance.")
    messages_per_second: float = Field(
        description="Room messages per second across every instance (recent average)."
    )


class AdminStats(BaseModel):
    """Live figures of the whole deployment, for the admin page."""

    generated_at: datetime = Field(description="When these figures were read (UTC).")
    instances: list[InstanceReport] = Field(
        description="Every running instance (worker process) and what it carries; "
        "empty when the shared store cannot be read (see `instances_known`)."
    )
    instances_known: bool = Field(
        description="False when the instance reports could not be read (Redis down)."
    )
    broker: BrokerHealth = Field(description="The broker, as the answering instance sees it.")
    totals: Totals = Field(description="Figures summed over the deployment.")
