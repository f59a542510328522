"""DVC versioning of the collection: `register`, `publish`, `pull`, the registration lock (`api`),
the dataset card (`card`). Design, pitfalls handled and remote set-up: tasks/registry/README.md.
Imports: envs, tasks.rlds, tasks.params and tasks.names; never flows."""

from tasks.registry.api import ensure_dvc, publish, pull, register, registry_lock
from tasks.registry.dvc import COLLECT_STAGE, LOCK_NAME, METADATA_FILES, REMOTE_ENV, RegistryError
from tasks.registry.pull import list_versions

__all__ = [
    "COLLECT_STAGE", "LOCK_NAME", "METADATA_FILES", "REMOTE_ENV", "RegistryError", "ensure_dvc", "list_versions",
    "publish", "pull", "register", "registry_lock",
]
