"""The sidecar configuration: the versioned contract between the operator and the sidecar."""

from cachefleet.config.schema import (
    SCHEMA_VERSION,
    AuthConfig,
    GutterConfig,
    HealthConfig,
    HotKeysConfig,
    L1Config,
    LimitsConfig,
    PoolConfig,
    ShardEndpoint,
    SidecarConfig,
    WarmupConfig,
    load_config,
    read_secret,
    split_address,
)

__all__ = [
    "SCHEMA_VERSION",
    "AuthConfig",
    "GutterConfig",
    "HealthConfig",
    "HotKeysConfig",
    "L1Config",
    "LimitsConfig",
    "PoolConfig",
    "ShardEndpoint",
    "SidecarConfig",
    "WarmupConfig",
    "load_config",
    "read_secret",
    "split_address",
]
