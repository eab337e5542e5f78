"""The rounds' prompts: prompt-only rows read and validated once, cleaned against the judge's benchmarks
(the stages' shared hygiene step), shuffled with the recipe's seed and cut into one fresh slice per round.

A round's prompts depend only on the set, the seed and the round number, so a resumed or extended run
samples the same prompts for a round as an uninterrupted one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from align.data.chat import validate_messages
from align.data.hygiene import clean_training_rows
from align.data.sources import DataError, DataReport, Source, read_mixture


def validate_prompt_row(row: dict, where: str) -> dict:
    """`{"prompt": text or [messages ending with a user turn], ...}`: the prompt as messages, the other
    columns (what reward functions read, e.g. `answer`) kept as they are."""
    if row.get("prompt") is None:
        raise DataError(f"{where}: field 'prompt' is missing (prompt-only rows are {{\"prompt\": ...}})")
    prompt = row["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(f"{where}: field 'prompt' is empty")
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = validate_messages(prompt, where, "prompt")
        if messages[-1]["role"] != "user":
            raise DataError(f"{where}: field 'prompt[{len(messages) - 1}].role' must be 'user' (the policy answers "
                            "the last turn)")
    return {**row, "prompt": messages}


@dataclass
class PromptSet:
    rows: list[dict]  # in the seeded order the rounds cut it
    report: DataReport

    def for_round(self, round_number: int, per_round: int) -> list[dict]:
        """Round N's slice (1-based); empty once the set is used up."""
        start = (round_number - 1) * per_round
        return self.rows[start:start + per_round]

    def rounds_available(self, per_round: int) -> int:
        return -(-len(self.rows) // per_round)


def load_prompt_set(args) -> PromptSet:
    """Read `args.prompts_dataset`, decontaminate / deduplicate it as the recipe says (keys `decontaminate`,
    `dedup`, as in every stage; counts in the report), and shuffle it with `args.seed`."""
    report = DataReport()
    rows = read_mixture([Source(args.prompts_dataset)], validate_prompt_row, report, seed=args.seed)
    rows = clean_training_rows(rows, args.data_hygiene, report)
    report.kept = len(rows)
    records = [dict(row) for row in rows]
    for record in records:
        record["prompt_id"] = record.get("prompt_id") or record["location"]
    random.Random(args.seed).shuffle(records)
    return PromptSet(records, report)
