"""A small agent whose tool call waits for a human, kept by the agentpersistence sidecar.

    python demo/agent.py start THREAD     # run until the agent asks for approval, then exit
    python demo/agent.py resume THREAD    # a new process: approve, and let the agent finish
    python demo/agent.py history THREAD   # print every checkpoint of the thread

Each command is its own process with its own ``SidecarSaver()``, which finds the sidecar
through ``$AGENTPERSISTENCE_SOCKET``: whatever ``resume`` knows, it read from the sidecar.
The "model" is a stand-in that answers deterministically, so the demo needs no API key.
"""

from __future__ import annotations

import os
import sys
from typing import Literal, TypedDict

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


def history(config: RunnableConfig) -> None:
    with SidecarSaver() as saver:
        snapshots = list(build(saver).get_state_history(config))
    print(f"{'step':>4}  {'source':<6}  {'next':<12}  last message")
    for snapshot in reversed(snapshots):
        meta = snapshot.metadata or {}
        messages = snapshot.values.get("messages", [])
        last = describe(messages[-1]) if messages else "-"
        step, source = meta.get("step", ""), meta.get("source", "")
        waiting = ",".join(snapshot.next) or "-"
        print(f"{step:>4}  {source:<6}  {waiting:<12}  {shorten(last)}")


def shorten(text: str, width: int = 64) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


COMMANDS = {"start": start, "resume": resume, "history": history}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in COMMANDS:
        raise SystemExit(f"usage: python demo/agent.py {{{'|'.join(COMMANDS)}}} THREAD")
    COMMANDS[sys.argv[1]]({"configurable": {"thread_id": sys.argv[2]}})
