"""Whether a `checkpoint-N` directory is complete enough to resume from, and which one of an output_dir to take.

A run killed while it saves leaves a checkpoint that transformers would try to load and fail on (or, worse,
load half of); `checkpoint_problem` says what is missing instead. The rules follow the layout written by
transformers 5.18's `Trainer._save_checkpoint` and DeepSpeed 0.19.8's `save_checkpoint` (the versions of
`align.training.compat.WRITTEN_FOR`, which warns at import when others are installed):

- `trainer_state.json` (the Trainer writes it last, from the main process) parses and its `global_step` is N;
- the RNG state of every rank of the run that wrote it: `rng_state.pth` (one process) or `rng_state_{rank}.pth`
  (several; the world size is read from the ranks' files: the highest rank seen in them, plus one);
- under DeepSpeed (a `latest` file or a `global_step*` directory): `latest` names `global_stepN`, and that
  directory holds every rank's optimizer states (`*zero_pp_rank_{rank}_mp_rank_*_optim_states.pt`) and model
  states (ZeRO-3: `zero_pp_rank_{rank}_mp_rank_*_model_states.pt`, one per rank; ZeRO-1/2: `mp_rank_*_model_states.pt`).
  The data-parallel group of our recipes is the whole world (no tensor or pipeline parallelism; sequence
  and expert parallelism partition ZeRO over every rank too), so "every rank" is the world size above;
- without DeepSpeed: the model weights (`model.safetensors`, every shard named by `model.safetensors.index.json`,
  `pytorch_model.bin`, or a LoRA adapter's `adapter_model.safetensors`) and `optimizer.pt`;
- every `.pt`/`.pth` file is a zip archive (torch's format ends with the archive's directory: a truncated
  write fails `zipfile.is_zipfile`).

Pure file checks, no torch: the kill-and-resume test polls it while a run writes.
"""

import json
import re
import zipfile
from pathlib import Path

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
RANK_RNG = re.compile(r"^rng_state_(\d+)\.pth$")
ZERO_RANK = re.compile(r"zero_pp_rank_(\d+)_mp_rank_\d+_(model|optim)_states\.pt$")
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")


def checkpoints_in(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` directories of `output_dir`, newest (highest N) first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name)]
    return sorted(found, key=checkpoint_step, reverse=True)


def checkpoint_step(path: Path) -> int:
    return int(CHECKPOINT_DIR.match(path.name).group(1))


def checkpoint_problem(path: str | Path) -> str | None:
    """None when `path` holds everything a resume reads; else what is missing or broken, in a few words that
    name the file."""
    path = Path(path)
    match = CHECKPOINT_DIR.match(path.name)
    if not path.is_dir():
        return "not a directory"
    problem = _trainer_state_problem(path, int(match.group(1)) if match else None)
    if problem:
        return problem
    ranks = _world_size(path)
    if ranks is None:
        return "no rng_state.pth or rng_state_{rank}.pth"
    for rank in range(ranks if ranks > 1 else 0):
        if not (path / f"rng_state_{rank}.pth").is_file():
            return f"rng_state_{rank}.pth is missing (the run had {ranks} processes)"
    if (path / "latest").exists() or any(path.glob("global_step*")):
        problem = _deepspeed_problem(path, ranks)
    else:
        problem = _weights_problem(path)
    if problem:
        return problem
    for file in sorted([*path.rglob("*.pt"), *path.rglob("*.pth")]):
        if not zipfile.is_zipfile(file):
            return f"{file.relative_to(path)} is truncated or not a torch file"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """`(the newest complete checkpoint-N or None, [(each newer incomplete one, why), ...])`."""
    skipped = []
    for checkpoint in checkpoints_in(output_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint, skipped
        skipped.append((checkpoint, problem))
    return None, skipped


def skipped_phrase(skipped: list[tuple[Path, str]]) -> str:
    """`skipped checkpoint-8 (global_step8/... is truncated ...)`, or '' when none was skipped."""
    return "; ".join(f"skipped {path.name} ({why})" for path, why in skipped)


def _trainer_state_problem(path: Path, step: int | None) -> str | None:
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json does not parse"
    if not isinstance(state, dict) or "global_step" not in state:
        return "trainer_state.json has no global_step"
    if step is not None and state["global_step"] != step:
        return f"trainer_state.json says global_step {state['global_step']}, not {step}"
    return None


def _world_size(path: Path) -> int | None:
    """1 for a one-process checkpoint, else the highest rank any per-rank file names, plus one (at least 2:
    per-rank RNG files are written only by a run of several processes); None when no RNG state is there."""
    if (path / "rng_state.pth").is_file():
        return 1
    ranks = [int(m.group(1)) for f in path.iterdir() if (m := RANK_RNG.match(f.name))]
    if not ranks:
        return None
    ranks += [int(m.group(1)) for f in path.glob("global_step*/*") if (m := ZERO_RANK.search(f.name))]
    return max(2, max(ranks) + 1)


def _deepspeed_problem(path: Path, ranks: int) -> str | None:
    latest = path / "latest"
    if not latest.is_file():
        return "no DeepSpeed 'latest' file"
    tag = latest.read_text(encoding="utf-8").strip()
    expected = f"global_step{checkpoint_step(path)}" if CHECKPOINT_DIR.match(path.name) else tag
    if tag != expected:
        return f"DeepSpeed's 'latest' names {tag!r}, not {expected!r}"
    states = path / tag
    if not states.is_dir():
        return f"{tag}/ is missing"
    names = [f.name for f in states.iterdir()]
    zero3 = any(ZERO_RANK.search(n) and n.endswith("_model_states.pt") for n in names)
    for rank in range(ranks):
        kinds = ("optim", "model") if zero3 else ("optim",)
        for kind in kinds:
            pattern = re.compile(rf"zero_pp_rank_{rank}_mp_rank_\d+_{kind}_states\.pt$")
            if not any(pattern.search(n) for n in names):
                return f"{tag}/ has no {kind} states of rank {rank} (the run had {ranks} processes)"
    if not zero3 and not any(re.fullmatch(r"mp_rank_\d+_model_states\.pt", n) for n in names):
        return f"{tag}/ has no model states"
    return None


def _weights_problem(path: Path) -> str | None:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (json.JSONDecodeError, KeyError, AttributeError):
            return f"{index.name} does not parse"
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            return f"weight shard {missing[0]} is missing"
    elif not any((path / name).is_file() for name in WEIGHTS):
        return "no model weights (model.safetensors)"
    if not (path / "optimizer.pt").is_file():
        return "no optimizer.pt"
    return None
