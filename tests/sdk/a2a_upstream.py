"""A real A2A agent written with the official SDK (`a2a-sdk`, its Starlette JSON-RPC routes and
DefaultRequestHandler), the upstream of tests/sdk/test_a2a.py.

It answers `echo: <text>` as a message; `task: ...` runs a task that streams two artifact chunks a
second apart and completes (`task: contact ...`: the first chunk holds an e-mail address);
`task: wait ...` leaves its task waiting for input (so it can be
cancelled). Every request must carry the agent's own credential (`X-Agent-Token`, configured in
Flowgate) and must not carry a client's `Authorization`: anything else is answered 401.

Usage: a2a_upstream.py PORT TOKEN
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        if not text.startswith("task:"):
            await event_queue.enqueue_event(
                new_text_message(f"echo: {text}", context_id=context.context_id, task_id=context.task_id)
            )
            return
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        if "wait" in text:
            await updater.requires_input()
            return
        first = "write to agent.smith@example.com" if "contact" in text else "part one"
        await updater.add_artifact([new_text_part(first)], artifact_id="answer", name="answer")
        await asyncio.sleep(1.0)
        await updater.add_artifact([new_text_part("part two")], artifact_id="answer", append=True, last_chunk=True)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


class RequireAgentToken(BaseHTTPMiddleware):
    def __init__(self, app, token: str):
        super().__init__(app)
        self.token = token

    async def dispatch(self, request, call_next):
        if request.headers.get("x-agent-token") != self.token:
            return JSONResponse({"error": "missing or wrong X-Agent-Token"}, status_code=401)
        if "authorization" in request.headers:
            return JSONResponse({"error": "a client's credential reached the agent"}, status_code=401)
        return await call_next(request)


def main() -> None:
    port, token = int(sys.argv[1]), sys.argv[2]
    card = AgentCard(
        name="echo",
        description="Echoes messages and runs streamed tasks",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"http://127.0.0.1:{port}/rpc", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="Echoes text", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = create_agent_card_routes(card) + create_jsonrpc_routes(handler, "/rpc")
    app = Starlette(routes=routes)
    app.add_middleware(RequireAgentToken, token=token)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
