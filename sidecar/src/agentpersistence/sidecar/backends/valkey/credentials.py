"""Who a new Valkey connection authenticates as, asked again for every new connection.

A :class:`Credentials` source gives a :class:`Login` (``AUTH [username] password``) each time
a client opens a connection: the lean :class:`.resp.Link` in its handshake, valkey-py's pools
and cluster client through :func:`provider` (its ``credential_provider``). Asking per
connection is what makes rotation work: a rotated Secret file or a fresh IAM token is used
from the next connection on, while open connections stay authenticated.

The sources, chosen by :func:`for_settings` from a Valkey settings block:

- :class:`Static`: fixed credentials, from the URL (``valkey://user:pass@host``) or handed
  over by a caller that holds them (the operator reads the password from a Kubernetes Secret).
- :class:`PasswordFile`: ``passwordFile`` (and ``usernameFile``), read at each connection.
- :class:`IamToken`: ``iamAuth``, an ElastiCache IAM authentication token per connection.

A password never appears in a repr, log record or error message; a source that cannot give
credentials raises :class:`CredentialsUnavailable`, naming the setting and the file.
"""

from __future__ import annotations

import contextvars
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import botocore.session
from botocore import exceptions as bx
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from valkey import connection as vc
from valkey import exceptions as vx
from valkey.credentials import CredentialProvider

from agentpersistence.client.protocol.errors import BackendUnavailable

from ...settings import ValkeyConnectionSettings, ValkeyIamAuthSettings

TOKEN_SERVICE = "elasticache"
"""The SigV4 service name an ElastiCache IAM token is signed for."""
TOKEN_EXPIRY_SECONDS = 900
"""How long a token may be used to authenticate (ElastiCache's maximum, 15 minutes)."""

_signing_token = contextvars.ContextVar("signing_token", default=False)


class _QuietWhileSigningTokens(logging.Filter):
    """Drops botocore's debug records (canonical request, signature) of a token's signing:
    the token is a password. Other requests' records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _signing_token.get()


logging.getLogger("botocore.auth").addFilter(_QuietWhileSigningTokens())


class CredentialsUnavailable(BackendUnavailable):
    """A credentials source in the settings could not give a login (a file missing or
    unreadable, no AWS credentials); the message names the setting, never a secret."""

    hint = (
        "Check that the file the setting names exists and is readable by the sidecar (a "
        "mounted Secret), or, for iamAuth, that AWS credentials and a region are available."
    )


@dataclass(frozen=True)
class Login:
    """One connection's ``AUTH``: the ACL user (None: the default user) and the password."""

    username: str | None
    password: str = field(repr=False)


class Static(Login):
    """Fixed credentials: ``Static(username, password)``, the same for every connection."""

    def login(self) -> Login:
        return self


class Credentials(Protocol):
    """A source of logins, asked once for every new connection."""

    def login(self) -> Login: ...


@dataclass(frozen=True)
class PasswordFile:
    """``passwordFile``: the password read from a file at every new connection (a mounted
    Kubernetes Secret is updated in place when rotated), the user name from ``usernameFile``
    the same way, else the URL's user."""

    password_path: Path
    username: str | None = None
    username_path: Path | None = None

    def login(self) -> Login:
        username = self.username
        if self.username_path is not None:
            username = read_secret(self.username_path, "usernameFile")
        return Login(username, read_secret(self.password_path, "passwordFile"))


def read_secret(path: Path, setting: str) -> str:
    """The text of ``path`` without its trailing newline; errors name ``setting`` and ``path``."""
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CredentialsUnavailable(f"cannot read the Valkey {setting} {path}: {reason}") from None
    except UnicodeDecodeError:
        raise CredentialsUnavailable(f"the Valkey {setting} {path} is not UTF-8 text") from None
    if not text:
        raise CredentialsUnavailable(f"the Valkey {setting} {path} is empty")
    return text


@dataclass
class IamToken:
    """``iamAuth``: each new connection logs in as ``user_id`` with a fresh ElastiCache IAM
    token, signed with the credentials of botocore's default chain (web identity in a pod).

    A token is accepted for 15 minutes after signing; a connection it opened stays
    authenticated until ElastiCache closes it (after 12 hours), and the client that opens the
    next connection asks for a new token. botocore refreshes expiring temporary credentials
    itself, synchronously, in the first signing that needs it.
    """

    settings: ValkeyIamAuthSettings
    session: botocore.session.Session = field(
        default_factory=botocore.session.get_session, repr=False
    )

    def login(self) -> Login:
        return Login(self.settings.user_id, self.token())

    def token(self) -> str:
        """A presigned ``GET https://{cacheName}/?Action=connect&User={userId}`` without
        its scheme: the form ElastiCache expects as the password."""
        params = {"Action": "connect", "User": self.settings.user_id}
        if self.settings.serverless:
            params["ResourceType"] = "ServerlessCache"
        url = f"https://{self.settings.cache_name}/"
        request = AWSRequest(method="GET", url=url, params=params)
        signer = SigV4QueryAuth(
            self._credentials(), TOKEN_SERVICE, self._region(), expires=TOKEN_EXPIRY_SECONDS
        )
        signing = _signing_token.set(True)
        try:
            signer.add_auth(request)
        finally:
            _signing_token.reset(signing)
        return str(request.url).removeprefix("https://")

    def _region(self) -> str:
        region: str | None = (
            self.settings.region
            or os.environ.get("AWS_REGION")
            or self.session.get_config_variable("region")
        )
        if not region:
            raise CredentialsUnavailable(
                "iamAuth has no region: set iamAuth.region, or AWS_REGION for the sidecar"
            )
        return region

    def _credentials(self) -> ReadOnlyCredentials:
        """Frozen credentials of the default chain (refreshed by botocore when expiring)."""
        try:
            credentials = self.session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials is not None else None
        except bx.BotoCoreError as exc:
            message = f"iamAuth found no usable AWS credentials: {exc}"
            raise CredentialsUnavailable(message) from None
        if frozen is None:
            raise CredentialsUnavailable(
                "iamAuth found no AWS credentials in the default chain (environment, web "
                "identity, container or instance role)"
            )
        return frozen


def for_settings(settings: ValkeyConnectionSettings) -> Credentials | None:
    """The credentials a settings block names: ``iamAuth``, ``passwordFile`` (with
    ``usernameFile`` or the URL's user), else the URL's password; None when there is none."""
    if settings.iam_auth is not None:
        return IamToken(settings.iam_auth)
    options = vc.parse_url(settings.url)
    username: str | None = options.get("username") or None
    if settings.password_file is not None:
        username_path = Path(settings.username_file) if settings.username_file else None
        return PasswordFile(Path(settings.password_file), username, username_path)
    password: str | None = options.get("password")
    return Static(username, password) if password is not None else None


# --- valkey-py -----------------------------------------------------------------------------


class Unavailable(vx.ValkeyError):
    """:class:`CredentialsUnavailable` carried through valkey-py, which drops a connection
    whose handshake failed only on its own error types; :func:`unwrap` takes it back out."""

    def __init__(self, error: CredentialsUnavailable) -> None:
        super().__init__(error.message)
        self.error = error


class _Provider(CredentialProvider):
    """valkey-py's ``credential_provider`` over a :class:`Credentials` source."""

    def __init__(self, source: Credentials) -> None:
        self.source = source

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        try:
            login = self.source.login()
        except CredentialsUnavailable as exc:
            raise Unavailable(exc) from None
        return (login.username, login.password) if login.username else (login.password,)


def provider(source: Credentials | None) -> CredentialProvider | None:
    """valkey-py's ``credential_provider`` for ``source`` (None: no ``AUTH``)."""
    return None if source is None else _Provider(source)


def unwrap(exc: BaseException) -> CredentialsUnavailable | None:
    """The credentials error behind ``exc``, however valkey-py wrapped it; None if none."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        if isinstance(cause, CredentialsUnavailable):
            return cause
        if isinstance(cause, Unavailable):
            return cause.error
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    return None
