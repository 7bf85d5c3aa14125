"""The environment that points the standard AWS chain (boto3, aiobotocore, subprocesses) at
local servers: endpoints, a region, dummy credentials, and no config files or instance
metadata to fall back on, so nothing reaches AWS."""

from __future__ import annotations

import os

REGION = "us-east-1"


def local_env(endpoints: dict[str, str]) -> dict[str, str]:
    """``endpoints`` (``AWS_ENDPOINT_URL_<SERVICE>`` → URL) with the rest of the chain."""
    return {
        **endpoints,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
