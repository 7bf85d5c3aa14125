"""``python -m agentpersistence.operator.webhook.selftest --url URL --ca-file FILE
[--namespace-url URL]``.

What the chart's ``helm test`` pod runs: admission reviews sent straight to the webhook over
HTTPS, trusting only the webhook's CA, as the API server would send them (dry-run, so nothing
is created). At ``--url`` (the label route's path), and at ``--namespace-url`` (the namespace
route's path) when given:

- a pod that does not opt in (no label, no annotation) must be admitted unchanged;
- a pod opting in by that route and naming an ``AgentPersistence`` that does not exist must
  be refused with the injection's "does not exist" message (this exercises the handler, the
  index and the refusal path, without needing any resource in the cluster).

Exit status 0 when all hold; 1 with the reason on stderr otherwise. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

from . import inject

TIMEOUT_S = 10.0


class SelfTestFailed(Exception):
    """The webhook answered, but not as the injection promises; the message says how."""


def review(pod: dict[str, Any], namespace: str) -> dict[str, Any]:
    """An ``admission.k8s.io/v1`` review of creating ``pod``, as the API server sends it."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "agentpersistence-selftest"},
            "object": pod,
            "oldObject": None,
            "dryRun": True,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def probe_pod(namespace: str, route: inject.Route | None) -> dict[str, Any]:
    """A pod opting in by ``route`` and naming a missing ``AgentPersistence``, or (None) a
    pod that does not opt in."""
    suffix = uuid.uuid4().hex[:8]
    metadata: dict[str, Any] = {"name": f"selftest-{suffix}", "namespace": namespace}
    if route is not None:
        metadata["annotations"] = {inject.NAME_ANNOTATION: f"selftest-missing-{suffix}"}
    if route is inject.Route.LABEL:
        metadata["labels"] = {inject.INJECT_LABEL: "true"}
    spec = {"containers": [{"name": "agent", "image": "registry.invalid/agent:selftest"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def post(url: str, body: dict[str, Any], context: ssl.SSLContext) -> dict[str, Any]:
    """POSTs a review and returns its ``response`` part."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as answer:
            payload: dict[str, Any] = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise SelfTestFailed(f"the webhook answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SelfTestFailed(f"cannot reach the webhook at {url}: {exc}") from None
    response: dict[str, Any] = payload.get("response") or {}
    return response


def check_not_opted_in(url: str, namespace: str, context: ssl.SSLContext) -> None:
    response = post(url, review(probe_pod(namespace, None), namespace), context)
    if response.get("allowed") is not True or response.get("patch"):
        raise SelfTestFailed(f"a pod that did not opt in was not admitted unchanged: {response}")


def check_missing_resource(
    url: str, route: inject.Route, namespace: str, context: ssl.SSLContext
) -> None:
    response = post(url, review(probe_pod(namespace, route), namespace), context)
    message = str((response.get("status") or {}).get("message", ""))
    if response.get("allowed") is not False or "does not exist" not in message:
        raise SelfTestFailed(
            f"a pod of the {route.value} route naming a missing AgentPersistence was not "
            f"refused as expected: {response}"
        )


def run(url: str, ca_file: str, namespace: str, namespace_url: str | None = None) -> None:
    context = ssl.create_default_context(cafile=ca_file)
    routes = {url: inject.Route.LABEL}
    if namespace_url is not None:
        routes[namespace_url] = inject.Route.NAMESPACE
    for route_url, route in routes.items():
        check_not_opted_in(route_url, namespace, context)
        check_missing_resource(route_url, route, namespace, context)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentpersistence.operator.webhook.selftest",
        description="Check the agentpersistence webhook answers as the injection promises.",
    )
    parser.add_argument("--url", required=True, help="the label route's URL, path included")
    parser.add_argument("--namespace-url", help="the namespace route's URL, path included")
    parser.add_argument("--ca-file", required=True, help="PEM CA that signed the webhook")
    parser.add_argument("--namespace", default="default", help="namespace of the probe pods")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args.url, args.ca_file, args.namespace, args.namespace_url)
    except SelfTestFailed as exc:
        print(f"webhook self-test failed: {exc}", file=sys.stderr)
        return 1
    tested = ", ".join(filter(None, [args.url, args.namespace_url]))
    print(f"webhook self-test passed: {tested}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
