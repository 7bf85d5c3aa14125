"""ElastiCache's IAM authentication, stood in for by a check in the rig's TLS proxy.

There is no ElastiCache here. :class:`IamGate` is the ``rewrite`` of :func:`rig.valkey.tls_proxy`:
it takes each ``AUTH user token`` (or ``HELLO ... AUTH user token``) a client sends, checks
that the token is a SigV4-presigned ``elasticache`` ``connect`` request for the expected cache,
user and region, signed with the test's AWS credentials within the last 15 minutes (the
signature is computed again with botocore's signer), and forwards the ``AUTH`` with the real
user's password; a refused token is forwarded with a wrong password, so the server answers
``WRONGPASS`` in its place among the replies.
"""

from __future__ import annotations

import datetime
import hmac
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

__all__ = ["TOKEN_LIFETIME_S", "IamGate"]

TOKEN_LIFETIME_S = 900
REFUSED_PASSWORD = b"\x00refused-by-the-iam-gate"


@dataclass
class IamGate:
    """Checks IAM tokens for ``cache_name``/``user_id``/``region`` signed with ``credentials``
    and logs in to the real server as ``user_id`` with ``password``."""

    cache_name: str
    user_id: str
    region: str
    credentials: ReadOnlyCredentials = field(repr=False)
    password: str = field(repr=False)
    serverless: bool = False
    accepted: list[str] = field(default_factory=list, repr=False)
    """The tokens let through, in order."""
    refusals: list[str] = field(default_factory=list)
    """Why each refused token was refused."""

    def rewrite(self, command: list[bytes]) -> list[bytes]:
        """``command`` with an ``AUTH``'s token replaced by the real password (or a wrong one)."""
        name = command[0].upper() if command else b""
        if name == b"AUTH" and len(command) == 3:
            return [b"AUTH", *self._login(command[1], command[2])]
        if name == b"HELLO" and b"AUTH" in (arg.upper() for arg in command):
            at = [arg.upper() for arg in command].index(b"AUTH")
            return [
                *command[: at + 1],
                *self._login(command[at + 1], command[at + 2]),
                *command[at + 3 :],
            ]
        if name == b"AUTH":
            self.refusals.append("AUTH without a user name")
            return [b"AUTH", REFUSED_PASSWORD]
        return command

    def _login(self, user: bytes, token: bytes) -> list[bytes]:
        problem = self.problem(user.decode(), token.decode())
        if problem is not None:
            self.refusals.append(problem)
            return [user, REFUSED_PASSWORD]
        self.accepted.append(token.decode())
        return [user, self.password.encode()]

    def problem(self, user: str, token: str) -> str | None:
        """Why ``token`` does not let ``user`` in; None if it does."""
        if user != self.user_id:
            return f"AUTH names user {user!r}, not {self.user_id!r}"
        host, _, query = token.partition("/?")
        if host != self.cache_name:
            return f"the token is for cache {host!r}, not {self.cache_name!r}"
        params = dict(parse_qsl(query, keep_blank_values=True))
        expected = self._expected_params(params.get("X-Amz-Date", ""))
        for key in sorted(expected.keys() | params.keys()):
            if key != "X-Amz-Signature" and params.get(key) != expected.get(key):
                return f"the token's {key} is {params.get(key)!r}, not {expected.get(key)!r}"
        try:
            signed = datetime.datetime.strptime(params["X-Amz-Date"], SIGV4_TIMESTAMP)
        except ValueError:
            return f"the token's X-Amz-Date {params['X-Amz-Date']!r} is not a timestamp"
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        age = (now - signed).total_seconds()
        if not -60 <= age <= TOKEN_LIFETIME_S:
            return f"the token was signed {age:.0f}s ago"
        if not hmac.compare_digest(params.get("X-Amz-Signature", ""), self._signature(token)):
            return "the token's signature does not match"
        return None

    def _expected_params(self, timestamp: str) -> dict[str, str]:
        scope = f"{timestamp[:8]}/{self.region}/elasticache/aws4_request"
        params = {
            "Action": "connect",
            "User": self.user_id,
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{self.credentials.access_key}/{scope}",
            "X-Amz-Date": timestamp,
            "X-Amz-Expires": str(TOKEN_LIFETIME_S),
            "X-Amz-SignedHeaders": "host",
        }
        if self.serverless:
            params["ResourceType"] = "ServerlessCache"
        if self.credentials.token is not None:
            params["X-Amz-Security-Token"] = self.credentials.token
        return params

    def _signature(self, token: str) -> str:
        """The signature botocore's SigV4 query signer gives the token's request (every
        parameter but the signature), at the token's own timestamp."""
        query = "&".join(
            part
            for part in urlsplit(f"https://{token}").query.split("&")
            if not part.startswith("X-Amz-Signature=")
        )
        request = AWSRequest(method="GET", url=f"https://{self.cache_name}/?{query}")
        request.context["timestamp"] = dict(parse_qsl(query))["X-Amz-Date"]
        signer = SigV4QueryAuth(self.credentials, "elasticache", self.region, TOKEN_LIFETIME_S)
        canonical = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical), request))
