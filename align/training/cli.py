"""How a training stage starts and how it ends on bad input: quiet logs, one-line errors.

`run_stage(main, config_class)` parses the recipe with TRL's parser, runs the stage, and turns an
error that the user can fix (bad data, a bad recipe value, a missing file) into one line on stderr
per failing rank and exit status 1, instead of a traceback repeated by every rank and by the
launcher. `--debug` on the command line or `KLEAR_DEBUG=1` in the environment shows the traceback.
"""

import logging
import os
import sys
import warnings

from align.data.sources import DataError

# Errors a user fixes by changing the recipe, the data or a path; anything else is a bug: traceback.
USER_ERRORS = (DataError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


class ReportedByMainProcess(ValueError):
    """A user error the main process hit (e.g. a bad data row), raised on the other ranks with its message."""


DEBUG_ENV = "KLEAR_DEBUG"
EXIT_USER_ERROR = 1


class _DropAcceleratorNotice(logging.Filter):
    """DeepSpeed logs which accelerator it picked once per process, i.e. once per rank; on a CPU-only
    machine as a WARNING that no user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Setting accelerator to CPU", "Setting ds_accelerator to"))


def quiet_library_noise() -> None:
    """Silence what every run printed and no user can act on; call it before DeepSpeed is imported.

    - torch's FutureWarnings (deprecations inside DeepSpeed's and transformers' own calls of torch);
    - DeepSpeed's accelerator notice. DeepSpeed re-creates its "DeepSpeed" logger on import (level,
      handler), but a filter on that logger object stays;
    - DeepSpeed's CPU backend's "... built successfully", printed by every rank: the op it builds (25-30 s in CI,
      on a fresh TORCH_EXTENSIONS_DIR) is never used by our runs, and is skipped (`compat.skip_cpu_shared_memory_op`).
    """
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|deepspeed)(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*\btorch\.")
    deepspeed_logger = logging.getLogger("DeepSpeed")
    if not any(isinstance(f, _DropAcceleratorNotice) for f in deepspeed_logger.filters):
        deepspeed_logger.addFilter(_DropAcceleratorNotice())
    if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true":  # set by `accelerate launch` with DeepSpeed
        from .compat import skip_cpu_shared_memory_op

        skip_cpu_shared_memory_op()


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """`(debug?, argv without our --debug)`. A `--debug VALUE` is TrainingArguments' own option
    (`underflow_overflow`, ...) and is left alone."""
    ours = [i for i, a in enumerate(argv) if a == "--debug" and (i + 1 == len(argv) or argv[i + 1].startswith("--"))]
    env = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return bool(ours) or env, [a for i, a in enumerate(argv) if i not in ours]


def error_line(stage: str, error: BaseException) -> str:
    """`align.sft: error: <message>` (with the rank under a multi-process launch), one line."""
    rank = os.environ.get("RANK")
    where = f" [rank {rank}]" if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    message = " ".join(str(error).split()) or type(error).__name__
    hint = f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
    return f"{stage}{where}: error: {message}{hint}"


class RecipeError(ValueError):
    """A recipe or command line that cannot be parsed (YAML syntax, a value of the wrong kind, a flag)."""


def recipe_parser(config_class):
    """TRL's parser for `(ScriptArguments, config_class, ModelConfig)`: flags only by their full name (an
    abbreviation would set another field than YAML's same key), and a bad value raises `RecipeError`
    instead of printing argparse's whole usage."""
    from trl import ModelConfig, ScriptArguments, TrlParser

    class StageParser(TrlParser):
        def error(self, message):
            raise RecipeError(message)

    return StageParser((ScriptArguments, config_class, ModelConfig), allow_abbrev=False)


def parse_recipe(config_class, argv: list[str]):
    """`(script_args, training_args, model_args)`; a YAML syntax error names the file and line."""
    import yaml

    try:
        return recipe_parser(config_class).parse_args_and_config(argv)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{mark.name}:{mark.line + 1}: " if mark is not None else ""
        raise RecipeError(f"{where}not valid YAML ({getattr(error, 'problem', None) or error})") from None


def run_stage(stage: str, main, config_class, argv: list[str] | None = None):
    """Parse `(ScriptArguments, config_class, ModelConfig)` from `argv` and run `main` on them."""
    debug, argv = debug_requested(sys.argv[1:] if argv is None else argv)
    quiet_library_noise()
    try:
        return main(*parse_recipe(config_class, argv))
    except USER_ERRORS as error:
        if debug:
            raise
        # One write of the whole line: print() writes the text and the newline separately, and two ranks
        # sharing a terminal or pipe then interleave their lines.
        sys.stderr.write(error_line(stage, error) + "\n")
        sys.stderr.flush()
        sys.exit(EXIT_USER_ERROR)
