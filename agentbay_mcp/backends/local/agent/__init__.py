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
    staged = target / f".sandbox_agent.{id(target)}.tmp"
    shutil.copyfile(AGENT_SCRIPT, staged)
    staged.chmod(0o644)
    staged.replace(target / "sandbox_agent.py")
    return target
