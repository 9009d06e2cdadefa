"""The in-sandbox agent. Its modules are bound read-only into sandboxes; they must stay stdlib-only.

The one exception is the desktop: python-xlib (pure Python, with `six`) is copied from this
server's environment into the agent dir's `vendor/`, so the sandbox's own Python can talk X without
anything installed in the image.
"""

import importlib.util
import shutil
from pathlib import Path

AGENT_DIR = Path(__file__).parent
AGENT_SCRIPT = AGENT_DIR / "sandbox_agent.py"
#: Top-level modules and packages the desktop needs inside the sandbox.
VENDORED = ("Xlib", "six")


def vendor_sources() -> dict[str, Path]:
    """Where this environment has each vendored module (a package dir or a single file)."""
    found: dict[str, Path] = {}
    for name in VENDORED:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is not installed; reinstall agentbay-mcp (it depends on python-xlib)")
        origin = Path(spec.origin)
        found[name] = origin.parent if origin.name == "__init__.py" else origin
    return found


def vendor_path() -> Path:
    """A directory on which the vendored modules import (for the unsandboxed agent)."""
    return vendor_sources()["Xlib"].parent


def _copy(source: Path, target: Path) -> None:
    staged = target.with_name(f".{target.name}.{id(target)}.tmp")
    shutil.copyfile(source, staged)
    staged.chmod(0o644)
    staged.replace(target)


def install_agent(state_dir: Path) -> Path:
    """Copy the agent (and its vendored modules) into `<state_dir>/agent`, readable by the sandbox uid."""
    target = state_dir / "agent"
    target.mkdir(mode=0o755, exist_ok=True)
    target.chmod(0o755)
    for source in sorted(AGENT_DIR.glob("*.py")):
        if source.name != "__init__.py":
            _copy(source, target / source.name)
    vendor = target / "vendor"
    vendor.mkdir(mode=0o755, exist_ok=True)
    for name, source in vendor_sources().items():
        if source.is_file():
            _copy(source, vendor / source.name)
            continue
        for module in sorted(source.rglob("*.py")):
            destination = vendor / name / module.relative_to(source)
            destination.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            _copy(module, destination)
    return target
