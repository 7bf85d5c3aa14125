"""agentpersistence sidecar: serves LangGraph persistence over a unix socket.

``server`` owns the socket and its two framings, ``app`` the HTTP routes, ``dispatch``
the mapping from requests to handlers and from exceptions to protocol errors,
``handlers`` the thin route functions, ``backends`` the storage, ``settings`` the config
model, ``service`` the assembly and lifecycle.
"""
