"""allowed-registries-py: a repoint policy in Python.

Images must come from a registry (or registry/path prefix) listed in
`allow`; an image tagged `:latest` gets a warning. The host hands over each
resource already taken apart, its images parsed and normalized (`nginx` is
docker.io/library/nginx here), so the rule is only the rule.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    Action_Deny,
    Action_Warn,
    PolicyInfo,
    Resource,
    ResourceParts,
)

SETTINGS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "allowed-registries-py settings",
    "type": "object",
    "additionalProperties": False,
    "required": ["allow"],
    "properties": {
        "allow": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string"},
            "description": "Registries, or registry/path prefixes, images may come from.",
        }
    },
}

# Set by `configure`, which the host calls before any `evaluate`.
allow: list[str] = []


def is_allowed(registry: str, repository: str) -> bool:
    """Whether registry/repository is an `allow` entry or lies below one."""
    path = f"{registry}/{repository}"
    return any(path == entry or path.startswith(entry + "/") for entry in allow)


class WitWorld(wit_world.WitWorld):
    def info(self) -> PolicyInfo:
        return PolicyInfo(
            name="allowed-registries-py",
            version="0.1.0",
            description="Deny images from registries not in `allow`; warn on :latest",
            mutating=False,
            settings_schema=json.dumps(SETTINGS_SCHEMA),
        )

    def configure(self, settings_json: str) -> None:
        """Check the settings once, so `evaluate` can trust them. Raising
        `Err` rejects them with a message naming the setting."""
        global allow
        settings = json.loads(settings_json)
        if not isinstance(settings, dict):
            raise Err("settings: expected a mapping")
        unknown = sorted(set(settings) - {"allow"})
        if unknown:
            raise Err(f'unknown setting "{unknown[0]}" (known: allow)')
        entries = settings.get("allow")
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise Err("allow: expected a list of registries")
        if not entries:
            raise Err("allow: list at least one registry")
        allow = [entry.rstrip("/") for entry in entries]

    def reads(self) -> ResourceParts:
        """The parts of a resource `evaluate` reads besides its images
        (always given): none. The host shows it nothing else, and answers a
        resource whose images it has already judged without running it
        again."""
        return ResourceParts(0)

    def evaluate(self, resource: Resource) -> list:
        actions = []
        for site in resource.images:
            image = site.image
            if not is_allowed(image.registry, image.repository):
                actions.append(
                    Action_Deny(
                        f"{site.written} comes from {image.registry}, "
                        "which is not an allowed registry"
                    )
                )
            if image.tag == "latest":
                actions.append(Action_Warn(f"{site.written} uses :latest; pin a version"))
        return actions
