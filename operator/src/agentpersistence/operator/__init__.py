"""The agentpersistence operator: provisions what an ``AgentPersistence`` describes.

Layers, top to bottom (a module imports only from the layers below it):

- ``handlers`` (kopf decorators) and ``webhook/`` (pod injection);
- ``reconcile`` (spec → resources → create/update/adopt, observe, release) and ``reporting``
  (status conditions, outputs and Events of each pass);
- ``resources/`` (one module per kind: DynamoDB table, S3 bucket, Valkey index, AgentCore
  Memory, the sidecar's ConfigMap), over ``aws`` (clients) and ``kube`` (API calls);
- ``spec`` (the one config model, shared with the sidecar), ``crd`` and ``openapi`` (the CRD
  generated from it), ``conditions``, ``errors``, ``naming``, ``bodies``, ``config``.
"""
