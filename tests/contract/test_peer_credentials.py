"""``--allow-uid``/``--allow-gid``: the sidecar answers only the users and groups it allows.

The kernel's record of the connecting process (``SO_PEERCRED``) decides: a client whose uid
and gid are not listed is refused with ``peer_not_allowed`` in the framing it spoke (a typed
``PeerNotAllowed`` in the agent, a 403 over HTTP) and the refusal is logged with its pid, uid
and gid; a listed uid or gid is served.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from langchain_core.runnables import RunnableConfig

from agentpersistence.client import PeerNotAllowed, SidecarSaver
from agentpersistence.client.protocol import framing
from rig import unix_http
from rig.sidecar import MEMORY_CONFIG, SidecarProcess

Start = Callable[..., SidecarProcess]
THREAD: RunnableConfig = {"configurable": {"thread_id": "peer"}}
OTHER = str(os.getuid() + 4242)  # an id this test does not run as


def test_everyone_the_socket_admits_is_served_by_default(sidecar_factory: Start) -> None:
    sidecar = sidecar_factory(MEMORY_CONFIG)
    with SidecarSaver(sidecar.socket, timeout=5) as saver:
        assert saver.get_tuple(THREAD) is None
    assert unix_http.request(sidecar.socket, "GET", "/healthz")[0] == 200


def test_a_peer_outside_the_allow_list_is_refused_in_both_framings(
    sidecar_factory: Start,
) -> None:
    sidecar = sidecar_factory(MEMORY_CONFIG, "--allow-uid", OTHER, "--allow-gid", OTHER)
    refused = f"uid {os.getuid()} gid {os.getgid()}"
    with (
        SidecarSaver(sidecar.socket, timeout=5) as saver,
        pytest.raises(PeerNotAllowed, match=refused),
    ):
        saver.get_tuple(THREAD)
    status, body = unix_http.request(sidecar.socket, "GET", "/healthz")
    assert status == 403
    assert framing.unpack(body)["code"] == "peer_not_allowed"
    log = sidecar.log()
    assert "refused a connection" in log
    assert f'"uid": {os.getuid()}' in log


@pytest.mark.parametrize("flag", ["--allow-uid", "--allow-gid"])
def test_an_allowed_uid_or_gid_is_served(sidecar_factory: Start, flag: str) -> None:
    own = str(os.getuid() if flag == "--allow-uid" else os.getgid())
    sidecar = sidecar_factory(MEMORY_CONFIG, flag, own, flag, OTHER)
    with SidecarSaver(sidecar.socket, timeout=5) as saver:
        assert saver.get_tuple(THREAD) is None
    assert unix_http.request(sidecar.socket, "GET", "/healthz")[0] == 200
