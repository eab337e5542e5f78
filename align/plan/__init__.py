"""Memory planning for Klear training runs: `python -m align.plan` (CLI) over `align.plan.memory` (pure arithmetic)."""
