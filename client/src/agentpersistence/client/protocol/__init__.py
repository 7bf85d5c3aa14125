"""The wire protocol between the client and the sidecar, defined once.

``routes`` lists the routes of this protocol version, ``messages`` the message types,
``errors`` the error hierarchy and its HTTP statuses, ``framing`` the lean frame format
that shares the socket with HTTP. The sidecar imports this package; nothing here performs
I/O.
"""
