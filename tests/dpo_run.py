"""The suite's one 2-process DPO run of the tiny recipe, shared (the `dpo_run` session fixture in conftest.py):
`tests/dpo/test_dpo_distributed.py` asserts on it, and `tests/test_kill_and_resume.py` resumes a killed run
against it. A launch costs tens of seconds before its first step; the steps themselves are cheap."""

from dataclasses import dataclass
from pathlib import Path

from align.data.demo import write_demo_data
from tests.distributed import run_2proc

STEPS = 60
AUX_COEF = 0.001


def dpo_args(model, data, out, *extra) -> list[str]:
    """`align.dpo`'s arguments for the tiny recipe: every step logged, no checkpoints (`extra` may set them)."""
    return ["--config", "configs/dpo/tiny.yaml", "--model_name_or_path", str(model), "--dataset_name", str(data),
            "--output_dir", str(out), "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
            "--router_aux_loss_coef", str(AUX_COEF), *extra]


@dataclass(frozen=True)
class DPORun:
    out: Path  # the saved policy, training_summary.json
    log: Path  # the launch's output, both ranks
    data: dict[str, Path]  # write_demo_data's files
    model: Path  # the starting (and reference) model

    def args(self, out: Path, *extra: str) -> list[str]:
        """This run's command line with another output_dir (and `extra`): the same run again."""
        return dpo_args(self.model, self.data["dpo"], out, "--max_steps", str(STEPS), *extra)


def run_dpo(root: Path, model: Path) -> DPORun:
    """STEPS steps of `accelerate launch -m align.dpo` (2 CPU processes, ZeRO-3, expert parallel 2, bf16) from
    `model` on the demo pairs."""
    run = DPORun(out=root / "out", log=root / "launch.log", data=write_demo_data(root / "data"), model=model)
    run_2proc(["-m", "align.dpo"], run.args(run.out), run.log)
    return run
