"""A small agent whose tool call waits for a human, kept by the agentpersistence sidecar.

    python agent.py start THREAD            # run until the agent asks for approval, then exit
    python agent.py resume THREAD           # a new process: approve, and let the agent finish
    python agent.py history THREAD [--json] # print every checkpoint of the thread
    python agent.py run THREAD              # a pod's main process (examples/agent/Dockerfile)

Each command is its own process with its own ``SidecarSaver()``, which finds the sidecar
through ``$AGENTPERSISTENCE_SOCKET``: whatever ``resume`` knows, it read from the sidecar.
``run`` is what a pod runs: it starts the thread, or finds it waiting for approval and
resumes it (the approval arrived while no pod was up), then reads the thread's checkpoint
every ``$AGENT_CHECK_SECONDS`` (default 1) until SIGTERM, logging one JSON object per line.
``make demo`` runs the first three; the cluster tests run the image.
The "model" is a stand-in that answers deterministically, so the agent needs no API key.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Any, Literal, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from agentpersistence.client import SidecarSaver

REQUEST = "Tell Ada the launch moved to Friday."


class Decision(TypedDict):
    approved: bool


@tool
def send_email(to: str, subject: str) -> str:
    """Send an email (this demo only pretends to)."""
    return f"email {subject!r} sent to {to}"


def model(state: MessagesState) -> dict[str, list[AnyMessage]]:
    """Stands in for a chat model with tools bound (``ChatBedrock(...).bind_tools(...)``)."""
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):
        return {"messages": [AIMessage(f"Done: {last.content}.")]}
    call = {
        "name": "send_email",
        "args": {"to": "ada@example.com", "subject": "Launch moves to Friday"},
    }
    return {"messages": [AIMessage("I'll email Ada.", tool_calls=[{**call, "id": "call-1"}])]}


def approval(state: MessagesState) -> Command[Literal["tools", "model"]]:
    """Ask a human before any tool runs: ``interrupt`` stops here until a resume arrives."""
    last = state["messages"][-1]
    assert isinstance(last, AIMessage)
    call = last.tool_calls[0]
    decision: Decision = interrupt({"tool": call["name"], "args": call["args"]})
    if decision["approved"]:
        return Command(goto="tools")
    refusal = ToolMessage("A human declined this call.", tool_call_id=call["id"])
    return Command(goto="model", update={"messages": [refusal]})


def tools(state: MessagesState) -> dict[str, list[AnyMessage]]:
    last = state["messages"][-1]
    assert isinstance(last, AIMessage)
    return {
        "messages": [send_email.invoke({**call, "type": "tool_call"}) for call in last.tool_calls]
    }


def wants_tool(state: MessagesState) -> str:
    last = state["messages"][-1]
    return "approval" if isinstance(last, AIMessage) and last.tool_calls else END


def build(
    saver: SidecarSaver,
) -> CompiledStateGraph[MessagesState, None, MessagesState, MessagesState]:
    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("approval", approval)
    builder.add_node("tools", tools)
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", wants_tool)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=saver)


def describe(message: AnyMessage) -> str:
    if isinstance(message, AIMessage) and message.tool_calls:
        call = message.tool_calls[0]
        args = ", ".join(f"{k}={v!r}" for k, v in call["args"].items())
        return f"ai: {message.content} [calls {call['name']}({args})]"
    return f"{message.type}: {message.content}"


def start(config: RunnableConfig) -> None:
    print(f"pid {os.getpid()}: SidecarSaver() on $AGENTPERSISTENCE_SOCKET")
    with SidecarSaver() as saver:
        print(f"user: {REQUEST}")
        out = build(saver).invoke({"messages": [HumanMessage(REQUEST)]}, config)
        print(describe(out["messages"][-1]))
        (question,) = out["__interrupt__"]
        saved = saver.get_tuple(config)
        assert saved is not None
        print(f"paused for approval of {question.value['tool']}; exiting")
        print(f"the sidecar holds checkpoint {saved.config['configurable']['checkpoint_id']}")


def resume(config: RunnableConfig) -> None:
    print(f"pid {os.getpid()}: a new SidecarSaver() on the same socket, same thread id")
    with SidecarSaver() as saver:
        graph = build(saver)
        waiting = graph.get_state(config)
        if not waiting.interrupts:
            raise SystemExit(f"thread {config['configurable']['thread_id']} is not waiting")
        print(f"found checkpoint {waiting.config['configurable']['checkpoint_id']}")
        print(f"waiting in {waiting.next[0]!r} for: {waiting.interrupts[0].value}")
        print("a human approves: Command(resume={'approved': True})")
        out = graph.invoke(Command(resume=Decision(approved=True)), config)
        for message in out["messages"][-2:]:
            print(describe(message))


def history(config: RunnableConfig, as_json: bool = False) -> None:
    with SidecarSaver() as saver:
        snapshots = list(build(saver).get_state_history(config))
    rows = []
    for snapshot in reversed(snapshots):
        meta = snapshot.metadata or {}
        messages = snapshot.values.get("messages", [])
        rows.append(
            {
                "step": meta.get("step", ""),
                "source": meta.get("source", ""),
                "next": list(snapshot.next),
                "last": describe(messages[-1]) if messages else "-",
            }
        )
    if as_json:
        print(json.dumps(rows))
        return
    print(f"{'step':>4}  {'source':<6}  {'next':<12}  last message")
    for row in rows:
        waiting = ",".join(row["next"]) or "-"
        print(f"{row['step']:>4}  {row['source']:<6}  {waiting:<12}  {shorten(row['last'])}")


def shorten(text: str, width: int = 64) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "pid": os.getpid(), **fields}), flush=True)


def _stop(signum: int, frame: FrameType | None) -> None:
    log("stopping", signal=signum)
    raise SystemExit(0)


def run(config: RunnableConfig) -> None:
    """A pod's life: start or resume the thread, then keep reading its checkpoint."""
    signal.signal(signal.SIGTERM, _stop)  # as PID 1, Python would ignore it
    every = float(os.environ.get("AGENT_CHECK_SECONDS", "1"))
    with SidecarSaver(timeout=float(os.environ.get("AGENT_TIMEOUT_SECONDS", "30"))) as saver:
        saver.wait_ready(60.0)
        graph = build(saver)
        state = graph.get_state(config)
        if state.interrupts:
            checkpoint = state.config["configurable"]["checkpoint_id"]
            log("resuming", checkpoint=checkpoint, waiting_in=state.next[0])
            out = graph.invoke(Command(resume=Decision(approved=True)), config)
            log("finished", last=describe(out["messages"][-1]))
        elif not state.values:
            out = graph.invoke({"messages": [HumanMessage(REQUEST)]}, config)
            (question,) = out["__interrupt__"]
            checkpoint = graph.get_state(config).config["configurable"]["checkpoint_id"]
            log("interrupted", checkpoint=checkpoint, waiting_for=question.value["tool"])
        else:
            log("already finished", last=describe(state.values["messages"][-1]))
        checks = 0
        while True:
            began = time.monotonic()
            try:
                saved = saver.get_tuple(config)
            except Exception as exc:  # logged for whoever watches the pod, then retried
                log("check failed", n=checks, error=f"{type(exc).__name__}: {exc}")
            else:
                checkpoint = saved.config["configurable"]["checkpoint_id"] if saved else None
                ms = round((time.monotonic() - began) * 1000, 1)
                log("checked", n=checks, ms=ms, checkpoint=checkpoint)
            checks += 1
            time.sleep(every)


COMMANDS = {"start": start, "resume": resume, "run": run}

if __name__ == "__main__":
    args = sys.argv[1:]
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if len(args) != 2 or args[0] not in {*COMMANDS, "history"}:
        names = "|".join([*COMMANDS, "history"])
        raise SystemExit(f"usage: python agent.py {{{names}}} THREAD [--json]")
    config: RunnableConfig = {"configurable": {"thread_id": args[1]}}
    if args[0] == "history":
        history(config, as_json)
    else:
        COMMANDS[args[0]](config)
