"""The annotation leg of `make demo`, in one call: serve, push the demo pairs, let SCRIPTED
stand-ins for annotators submit through Argilla's API, pull into the DPO stage's input.

    from annotation.demo import scripted_annotation_round
    card = scripted_annotation_round(Path("pairs.jsonl"), Path("demo-output/preferences"),
                                     data_dir=Path("demo-output/argilla"))

The preferences it writes come from scripts, not people; the card says so (`warning`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from align.common.ports import free_loopback_port
from annotation.connection import connect
from annotation.logic.pairs import make_pairs, parse_rows, read_input_rows
from annotation.logic.resolve import Policy
from annotation.pull import pull_preferences
from annotation.push import push_pairs
from annotation.server.lifecycle import ServeConfig, running_server
from annotation.simulate import ScriptedAnnotator, prefer_longer_answer, submit_scripted_responses
from annotation.users import add_user

DEMO_DATASET = "demo-preferences"


def scripted_annotation_round(
    pairs_path: Path,
    out_dir: Path,
    data_dir: Path,
    annotators: int = 2,
    noise: float = 0.2,
    choose: Callable = prefer_longer_answer,
    port: Optional[int] = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the whole round on a local Argilla (started and stopped here); returns pull's card."""
    config = ServeConfig(data_dir=Path(data_dir), port=port or free_loopback_port())
    with running_server(config, log=log) as server:
        log(f"Argilla running at {server.credentials.api_url} (owner credentials in {data_dir}/credentials.json)")
        client, address = connect(config.data_dir)
        workspace = server.credentials.workspace
        scripted = [ScriptedAnnotator(f"scripted-annotator-{i + 1}", f"scripted-pass-{i + 1}", noise) for i in range(annotators)]
        for annotator in scripted:
            add_user(client, annotator.username, annotator.password, "annotator", workspace)
        pairs, _ = make_pairs(parse_rows(read_input_rows(pairs_path)).rows)
        report = push_pairs(client, pairs, DEMO_DATASET, workspace, min_submitted=annotators, progress=False)
        log("\n".join(report.lines()))
        submitted = submit_scripted_responses(address.api_url, DEMO_DATASET, workspace, scripted, choose=choose)
        log(f"scripted stand-ins for annotators submitted: {submitted}")
        card = pull_preferences(client, DEMO_DATASET, workspace, Path(out_dir), Policy(min_votes=1, min_agreement=0.5))
        log(f"{out_dir}: {card['counts']['kept']} preference pairs of {card['counts']['records']} records "
            f"(dropped: {card['dropped']})")
        return card
