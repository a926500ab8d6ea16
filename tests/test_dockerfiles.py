"""operator/Dockerfile and sidecar-image/Dockerfile, parsed: the rules the images must keep."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {
    "operator": ROOT / "operator" / "Dockerfile",
    "sidecar": ROOT / "sidecar-image" / "Dockerfile",
}
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|build-essential|libc6-dev|make)\b")
CONTROL_PLANE = re.compile(r"\[operator|kopf|kubernetes")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == keyword]


def stages(path: Path) -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (continuations joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = value.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            found.append(Stage(parts[0], name))
        else:
            assert found, f"{path}: {keyword} before FROM"
            found[-1].instructions.append((keyword, value.strip()))
    return found


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_multi_stage_on_a_slim_base(image: str) -> None:
    found = stages(DOCKERFILES[image])
    assert len(found) >= 2, "a build stage and a final stage"
    for stage in found:
        assert stage.base.endswith("-slim") or "slim" in stage.base, stage.base
    final = found[-1]
    copied = " ".join(final.values("COPY"))
    assert "--from=" in copied, "the final stage takes the build stage's output"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_no_compiler_in_the_final_stage(image: str) -> None:
    final = stages(DOCKERFILES[image])[-1]
    for command in final.values("RUN"):
        assert not COMPILERS.search(command), command
        assert "apt-get install" not in command, command


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_runs_as_a_numeric_non_root_user(image: str) -> None:
    final = stages(DOCKERFILES[image])[-1]
    users = final.values("USER")
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, user  # numeric: runAsNonRoot can verify it
    # Both images run as the uid the chart and the injected sidecar name.
    assert int(user) == 10001


def test_the_sidecar_image_has_neither_kopf_nor_the_kubernetes_client() -> None:
    found = stages(DOCKERFILES["sidecar"])
    for stage in found:
        for command in stage.values("RUN"):
            for word in shlex.split(command.replace("&&", " ")):
                if "pip" in word or word.startswith("."):
                    assert not CONTROL_PLANE.search(word), command
    installs = [c for s in found for c in s.values("RUN") if "pip install" in c]
    assert installs and all("[operator" not in c for c in installs)
    entry = found[-1].values("ENTRYPOINT")
    assert entry and "sidecar" in entry[-1]


def test_the_operator_image_installs_the_operator_extra() -> None:
    installs = [
        c for s in stages(DOCKERFILES["operator"]) for c in s.values("RUN") if "pip install" in c
    ]
    assert any("[operator]" in c for c in installs)
