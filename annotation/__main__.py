"""`python -m annotation <command>`: serve, stop, users add, status, push, generate, from-preferences, pull, install-server, scripted-annotators.

Client commands find the server through --data-dir DIR (the `credentials.json` that `serve`
writes), else ARGILLA_API_URL / ARGILLA_API_KEY, else `.data/argilla`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from annotation.connection import DEFAULT_DATA_DIR, DEFAULT_WORKSPACE
from annotation.errors import AnnotationError


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])  # serve --detach passes its options on
    try:
        return args.run(args) or 0
    except AnnotationError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        print(f"interrupted: python -m annotation {args.command} stopped before it finished", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m annotation", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    _add_server_commands(commands)
    _add_client_commands(commands)
    _add_file_commands(commands)
    return parser


def _add_server_commands(commands) -> None:
    """serve, stop, install-server: the local Argilla's life cycle."""
    serve = commands.add_parser("serve", help="run a local Argilla (until Ctrl-C or `stop`; --detach: in the background)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=6900)
    serve.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    serve.add_argument("--allow-remote", action="store_true", help="allow binding an address other than loopback")
    serve.add_argument("--elasticsearch", metavar="URL", help="use this Elasticsearch instead of the embedded engine")
    serve.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="the owner's first workspace")
    serve.add_argument("--database", choices=["sqlite", "postgresql"], default=None,
                       help="sqlite (one person; the default) or postgresql (a local cluster under --data-dir, for a team); "
                            "a restart keeps what the data directory was created with")
    serve.add_argument("--database-url", metavar="postgresql://USER:PASSWORD@HOST:PORT/DB", default=None,
                       help="use an existing PostgreSQL server instead")
    serve.add_argument("--detach", action="store_true", help="run in the background; stop with `annotation stop`")
    serve.set_defaults(run=_serve)

    stop = commands.add_parser("stop", help="stop the Argilla that `serve` runs on a data directory")
    stop.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    stop.set_defaults(run=_stop)

    install = commands.add_parser("install-server", help="create argilla-server's own venv (done once)")
    install.set_defaults(run=_install_server)


def _add_client_commands(commands) -> None:
    """users, status, push, pull, scripted-annotators: they talk to a running server."""
    users = commands.add_parser("users", help="annotator accounts").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="create a user and add it to a workspace")
    add.add_argument("name")
    add.add_argument("--password", required=True)
    add.add_argument("--role", default="annotator", choices=["annotator", "admin", "owner"])
    add.add_argument("--workspace", default=None)
    _client_options(add)
    add.set_defaults(run=_users_add)

    status = commands.add_parser("status", help="progress per dataset and per annotator")
    status.add_argument("--dataset", help="one dataset (default: every dataset of the workspace)")
    status.add_argument("--workspace", default=None)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _quality_options(status)
    _client_options(status)
    status.set_defaults(run=_status)

    push = commands.add_parser("push", help="send candidate pairs to an Argilla dataset")
    push.add_argument("file", type=Path, help="JSONL rows {id?, prompt, completions: [{model, content}], metadata?}")
    push.add_argument("--dataset", required=True)
    push.add_argument("--workspace", default=None)
    push.add_argument("--min-submitted", type=int, default=1, help="annotators per record (overlap for agreement)")
    push.add_argument("--aspects", default=",".join(_default_aspects()), help="per-aspect ratings ('' for none)")
    push.add_argument("--seed", type=int, default=0, help="seed of the A/B order (keep it for re-pushes)")
    push.add_argument("--max-pairs-per-prompt", type=int, default=None)
    push.add_argument("--batch-size", type=int, default=500)
    push.add_argument("--judge", action="store_true", help="attach LLM-judge suggestions (JUDGE_BASE_URL, JUDGE_MODEL)")
    push.add_argument("--judge-model", default=None)
    push.add_argument("--judge-base-url", default=None)
    _client_options(push)
    push.set_defaults(run=_push)

    pull = commands.add_parser("pull", help="annotations -> TRL preference dataset + card.json")
    pull.add_argument("--dataset", required=True)
    pull.add_argument("--workspace", default=None)
    pull.add_argument("--out", type=Path, required=True)
    pull.add_argument("--min-votes", type=int, default=1, help="submitted responses a record needs")
    pull.add_argument("--min-agreement", type=float, default=0.5, help="share of votes the majority label needs")
    _quality_options(pull)
    _client_options(pull)
    pull.set_defaults(run=_pull)

    scripted = commands.add_parser(
        "scripted-annotators",
        help="SCRIPTED annotators, not people: accounts that answer a dataset's queue by a fixed rule "
             "(to try the annotation path alone; pull marks their responses as scripted)",
    )
    scripted.add_argument("--dataset", required=True)
    scripted.add_argument("--workspace", default=None)
    scripted.add_argument("--users", type=int, default=2, help="scripted accounts, scripted-annotator-1..N (match push's --min-submitted)")
    scripted.add_argument("--rule", choices=["chosen", "longer"], default="chosen",
                          help="chosen: prefer the answer of --chosen-model (from-preferences' chosen answer); longer: the longer answer")
    scripted.add_argument("--chosen-model", default="chosen", help="the model name the `chosen` rule prefers")
    scripted.add_argument("--noise", type=float, default=0.1, help="share of records answered with a random label instead")
    scripted.add_argument("--seed", type=int, default=0, help="seed of the noise (per account and record)")
    _client_options(scripted)
    scripted.set_defaults(run=_scripted_annotators)


def _add_file_commands(commands) -> None:
    """generate, from-preferences: files and models, no server."""
    generate = commands.add_parser("generate", help="candidate answers for prompts, in push's input format")
    generate.add_argument("prompts", type=Path, help="JSONL rows {id?, prompt, metadata?}")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--model", action="append", required=True, metavar="NAME_OR_PATH",
                          help="a local model directory, or a model name at --base-url (repeat for several)")
    generate.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint (else: the local model, with vLLM when installed, else transformers)")
    generate.add_argument("--samples", type=int, default=2, help="answers per prompt and model")
    generate.add_argument("--temperature", type=float, default=0.8)
    generate.add_argument("--max-new-tokens", type=int, default=512)
    generate.add_argument("--batch-size", type=int, default=8)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--tensor-parallel-size", type=int, default=None,
                          help="vLLM engine processes for a local model (tensor parallel; default: every visible GPU, 1 on CPU)")
    generate.set_defaults(run=_generate)

    convert = commands.add_parser("from-preferences", help="preference rows (TRL formats, HH-RLHF) -> push's input")
    convert.add_argument("file", type=Path, help="JSONL / .jsonl.gz / Parquet / save_to_disk directory of preference rows")
    convert.add_argument("--out", type=Path, required=True)
    convert.add_argument("--chosen-model", default="chosen", help="the name recorded for the chosen answers")
    convert.add_argument("--rejected-model", default="rejected", help="the name recorded for the rejected answers")
    convert.add_argument("--gold", type=int, default=0, metavar="N", help="mark N pairs (drawn with --seed) as gold pairs")
    convert.add_argument("--limit", type=int, default=None, help="convert only the first N distinct prompts")
    convert.add_argument("--source", default=None, help="metadata 'source' of the pairs (default: the file's name)")
    convert.add_argument("--seed", type=int, default=0)
    convert.set_defaults(run=_from_preferences)


def _default_aspects():
    from annotation.logic.schema import DEFAULT_ASPECTS

    return DEFAULT_ASPECTS


def _quality_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-gold-accuracy", type=float, default=0.7,
                        help="flag annotators whose share of right answers on gold pairs is below this")
    parser.add_argument("--min-gold-answered", type=int, default=5, help="gold pairs answered before an annotator can be flagged")


def _quality_policy(args):
    from annotation.logic.quality import QualityPolicy

    return QualityPolicy(min_gold_accuracy=args.min_gold_accuracy, min_gold_answered=args.min_gold_answered)


def _check_names(args) -> None:
    from annotation.logic.schema import check_name

    for option in ("dataset", "workspace"):
        if getattr(args, option, None) is not None:
            check_name(f"--{option}", getattr(args, option))


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, help="the directory `serve` runs on")


def _connect(args):
    from annotation.connection import connect

    client, address = connect(args.data_dir)
    workspace = getattr(args, "workspace", None) or address.workspace
    return client, workspace


def _serve(args) -> int:
    from annotation.server.lifecycle import ServeConfig, check_bind_address, check_port, serve_forever

    check_bind_address(args.host, args.allow_remote)  # here too: before --detach hands the options on
    check_port(args.port)
    if args.detach:
        from annotation.server.background import detach

        argv = [a for a in (args.argv or []) if a != "--detach"]
        detach(argv, args.data_dir)
        return 0
    config = ServeConfig(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        elasticsearch=args.elasticsearch,
        redis_url=os.environ.get("ARGILLA_REDIS_URL"),
        workspace=args.workspace,
        database=args.database,
        database_url=args.database_url,
    )
    serve_forever(config)
    return 0


def _stop(args) -> int:
    from annotation.server.background import stop_serve

    print(stop_serve(args.data_dir))
    return 0


def _install_server(args) -> int:
    from annotation.server.install import default_server_venv, install_server

    install_server(default_server_venv())
    return 0


def _users_add(args) -> int:
    from annotation.users import add_user

    client, workspace = _connect(args)
    print(add_user(client, args.name, args.password, args.role, workspace))
    return 0


def _status(args) -> int:
    from annotation.status import dataset_status, format_status

    _check_names(args)
    quality_policy = _quality_policy(args)
    client, workspace = _connect(args)
    report = dataset_status(client, workspace, args.dataset, quality_policy)
    print(json.dumps(report, indent=2) if args.json else format_status(report))
    return 0


def _push(args) -> int:
    from annotation.logic.pairs import make_pairs, parse_rows, read_input_rows
    from annotation.push import RECORDS_PER_BATCH, push_pairs

    _check_names(args)
    if not args.file.exists():
        raise AnnotationError(f"{args.file} does not exist")
    if args.min_submitted < 1:
        raise AnnotationError("--min-submitted must be at least 1")
    if args.max_pairs_per_prompt is not None and args.max_pairs_per_prompt < 1:
        raise AnnotationError(f"--max-pairs-per-prompt must be at least 1, not {args.max_pairs_per_prompt}")
    if not 1 <= args.batch_size <= RECORDS_PER_BATCH:
        raise AnnotationError(f"--batch-size must be between 1 and {RECORDS_PER_BATCH} (argilla-server's most records "
                              f"per request), not {args.batch_size}")
    parsed = parse_rows(read_input_rows(args.file))
    pairs, capped = make_pairs(parsed.rows, seed=args.seed, max_pairs_per_prompt=args.max_pairs_per_prompt)
    print(
        f"{args.file}: {len(parsed.rows)} prompts -> {len(pairs)} pairs "
        f"(identical answers dropped: {parsed.identical_answers_dropped}; "
        f"pairs left out by --max-pairs-per-prompt: {capped})"
    )
    suggest = None
    if args.judge or args.judge_model or args.judge_base_url:
        from annotation.suggest import judge_suggester

        suggest = judge_suggester(model=args.judge_model, base_url=args.judge_base_url)
    client, workspace = _connect(args)
    aspects = [a.strip() for a in args.aspects.split(",") if a.strip()]
    report = push_pairs(
        client,
        pairs,
        args.dataset,
        workspace,
        min_submitted=args.min_submitted,
        aspects=aspects,
        suggest=suggest,
        batch_size=args.batch_size,
    )
    print("\n".join(report.lines()))
    print(f"Next: annotate in the browser, then: python -m annotation pull --dataset {args.dataset} --out DIR")
    return 0


def _pull(args) -> int:
    from annotation.pull import check_out_dir, pull_preferences
    from annotation.logic.resolve import Policy

    _check_names(args)
    policy = Policy(min_votes=args.min_votes, min_agreement=args.min_agreement)
    quality_policy = _quality_policy(args)
    check_out_dir(args.out)
    client, workspace = _connect(args)
    card = pull_preferences(client, args.dataset, workspace, args.out, policy, quality_policy)
    counts = card["counts"]
    print(f"{args.out}: {counts['kept']} preference pairs kept of {counts['records']} records")
    if "empty_reason" in card:
        print(f"  {card['empty_reason']}")
    flagged = card["quality_control"]["flagged_annotators"]
    if flagged:
        print(f"  flagged annotators (votes excluded: {card['quality_control']['votes_excluded']}): {', '.join(flagged)}")
    print(f"  dropped: {json.dumps(card['dropped'])}")
    print(f"  responses: {json.dumps(card['responses'])}")
    alpha = card["agreement"].get("krippendorff_alpha")
    print(f"  agreement: Krippendorff's alpha = {alpha if alpha is None else round(alpha, 3)}; card: {args.out / 'card.json'}")
    return 0


def _scripted_annotators(args) -> int:
    from annotation.connection import connect
    from annotation.simulate import answer_models, prefer_longer_answer, prefer_model, scripted_accounts, submit_scripted_responses
    from annotation.users import add_user

    _check_names(args)
    if args.users < 1:
        raise AnnotationError("--users must be at least 1")
    if not 0 <= args.noise <= 1:
        raise AnnotationError(f"--noise must be between 0 and 1, not {args.noise}")
    client, address = connect(args.data_dir)
    workspace = args.workspace or address.workspace
    choose = prefer_longer_answer
    if args.rule == "chosen":
        models = answer_models(client, args.dataset, workspace)
        if models and not any(args.chosen_model in pair.values() for pair in models.values()):
            found = sorted({name for pair in models.values() for name in pair.values() if name})
            raise AnnotationError(f"no record of {workspace}/{args.dataset} has an answer by model {args.chosen_model!r} "
                                  f"(its models: {', '.join(found)}); pass --chosen-model NAME, or --rule longer")
        choose = prefer_model(args.chosen_model, models)
    annotators = scripted_accounts(address.api_key, args.users, args.noise)
    for annotator in annotators:
        add_user(client, annotator.username, annotator.password, "annotator", workspace)
    submitted = submit_scripted_responses(address.api_url, args.dataset, workspace, annotators, choose=choose, seed=args.seed)
    print(f"SCRIPTED annotators, not people: {len(annotators)} accounts answered {workspace}/{args.dataset} "
          f"by the rule {choose.__name__} with noise {args.noise} (seed {args.seed}); responses submitted: "
          + ", ".join(f"{name} {count}" for name, count in submitted.items()))
    print("  pull counts these responses as scripted and its card warns: not human preference data")
    return 0


def _from_preferences(args) -> int:
    from annotation.convert import convert_file

    report = convert_file(args.file, args.out, chosen_model=args.chosen_model, rejected_model=args.rejected_model,
                          gold=args.gold, limit=args.limit, seed=args.seed, source_name=args.source)
    print(report.line(args.file, args.out))
    return 0


def _generate(args) -> int:
    from annotation.generate import generate_candidates

    summary = generate_candidates(
        prompts_path=args.prompts,
        out_path=args.out,
        models=args.model,
        base_url=args.base_url,
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        tensor_parallel_size=args.tensor_parallel_size,
    )
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
