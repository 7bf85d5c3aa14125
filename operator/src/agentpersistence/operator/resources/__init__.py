"""One module per kind of resource the operator manages, each with the same four verbs.

A resource object (:class:`.base.Resource`) knows the desired state of one resource and offers
``read`` (the observed state, or None when it does not exist), ``delta`` (how the observed
state departs from the desired one, in words), ``create``, ``update`` (make an existing
resource match: this is also how an existing resource is *adopted*), ``delete`` and
``outputs`` (what the status reports). Every verb is idempotent. Table, bucket and index
definitions are the sidecar backends' own (``schema``/``provisioning`` modules); nothing here
redefines them. Errors leave a module only as :class:`..errors.ReconcileError`.

- :mod:`.dynamodb_table`: the checkpointer's table, TTL on ``expires``;
- :mod:`.s3_bucket`: the bucket for large payloads: private, encrypted, expiry lifecycle rule;
- :mod:`.valkey_index`: the store's vector search index;
- :mod:`.agentcore_memory`: a Bedrock AgentCore Memory (CREATING → ACTIVE);
- :mod:`.sidecar_configmap`: the ConfigMap with the sidecar's config, owned by the resource.
"""
