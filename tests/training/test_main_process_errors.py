"""`align.training.run.on_main_process` under 2 real processes (accelerate launch, gloo): what the other rank
sees when the main process's task fails, for a user error and for a bug. One launch, both cases."""

import json

from tests.distributed import run_2proc

SCRIPT = '''
import json, sys
from accelerate import PartialState
from align.training.run import on_main_process

state = PartialState(backend="gloo")  # what TrainingArguments sets up in a stage
seen = {}
for case, task in (("user_error", lambda: (_ for _ in ()).throw(ValueError("line 3: field 'chosen' is empty"))),
                   ("bug", lambda: 1 / 0),
                   ("shared", lambda: {"resume": "checkpoint-6"})):
    try:
        seen[case] = ["returned", on_main_process(task, share_result=True)]
    except Exception as error:
        seen[case] = [type(error).__name__, str(error)]
print("RESULT", state.process_index, json.dumps(seen), flush=True)
state.destroy_process_group()  # gloo aborts the process at exit otherwise
'''


def test_every_rank_learns_what_the_main_process_hit(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    log = tmp_path / "launch.log"
    run_2proc([str(script)], [], log, timeout=300)
    results = {int(line.split()[1]): json.loads(line.split(maxsplit=2)[2])
               for line in log.read_text().splitlines() if line.startswith("RESULT ")}
    main, other = results[0], results[1]
    assert main["user_error"] == ["ValueError", "line 3: field 'chosen' is empty"]
    assert other["user_error"] == ["ReportedByMainProcess", "line 3: field 'chosen' is empty"]
    assert main["bug"] == ["ZeroDivisionError", "division by zero"]  # the bug itself, traceback and all
    assert other["bug"] == ["ReportedByMainProcess",
                            "the main process failed (ZeroDivisionError: division by zero); its traceback is above"]
    assert main["shared"] == other["shared"] == ["returned", {"resume": "checkpoint-6"}]
