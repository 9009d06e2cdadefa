"""The in-sandbox agent. Only `sandbox_agent.py` is bound into sandboxes; it must stay stdlib-only."""

import shutil
from pathlib import Path

AGENT_DIR = Path(__file__).parent
AGENT_SCRIPT = AGENT_DIR / "sandbox_agent.py"


def install_agent(state_dir: Path) -> Path:
    """Copy the agent into `<state_dir>/agent` (reachable by the sandbox uid wherever we are installed)."""
    target = state_dir / "agent"
    target.mkdir(mode=0o755, exist_ok=True)
    target.chmod(0o755)
    for source in sorted(AGENT_DIR.glob("*.py")):
        if source.name == "__init__.py":
            continue
        staged = target / f".{source.name}.{id(target)}.tmp"
        shutil.copyfile(source, staged)
        staged.chmod(0o644)
        staged.replace(target / source.name)
    return target
