"""The resource's identity and the model base every CacheCluster model shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

GROUP = "cachefleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CacheCluster"
PLURAL = "cacheclusters"
SINGULAR = "cachecluster"
SHORT_NAMES = ("cc",)


class ApiModel(BaseModel):
    """camelCase on the wire like every Kubernetes object; unknown fields are an error."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=False,
    )

    def dump(self) -> dict[str, object]:
        """The wire form: camelCase, no nulls (the API server drops them anyway)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
