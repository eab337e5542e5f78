"""The workflow against the real server: serve, users, push, annotate (scripted), pull, restart."""

from __future__ import annotations

import json
import os
import stat

import datasets
import psutil
import pytest

from align.common.ports import port_in_use
from annotation.errors import AnnotationError
from annotation.simulate import ScriptedAnnotator, ShownPair, submit_scripted_responses
from annotation.status import wait_until_annotated
from argilla_helpers import dataset_id, login, records_by_prompt, write_pairs

pytestmark = pytest.mark.slow

ARGILLA_DEFAULT_API_KEY = "argilla.apikey"  # argilla_server.constants.DEFAULT_API_KEY
ARGILLA_DEFAULT_PASSWORD = "12345678"  # argilla_server.constants.DEFAULT_PASSWORD


def test_serve_writes_private_random_owner_credentials(argilla):
    path = argilla.data_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # owner-only; traversable (not listable) when PostgreSQL runs as another account (under root)
    other_account = argilla.database == "postgresql" and os.geteuid() == 0
    assert stat.S_IMODE(argilla.data_dir.stat().st_mode) == (0o711 if other_account else 0o700)
    assert stat.S_IMODE((argilla.data_dir / "logs").stat().st_mode) == 0o700
    if argilla.database == "postgresql":
        assert stat.S_IMODE((argilla.data_dir / "postgres.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((argilla.data_dir / "postgres").stat().st_mode) == 0o700
    credentials = argilla.credentials
    assert set(credentials) >= {"api_url", "username", "password", "api_key"}
    assert credentials["api_url"] == f"http://127.0.0.1:{argilla.port}"
    assert credentials["api_key"] != ARGILLA_DEFAULT_API_KEY and len(credentials["api_key"]) >= 32
    assert credentials["password"] != ARGILLA_DEFAULT_PASSWORD and len(credentials["password"]) >= 16
    with argilla.http() as http:
        assert http.get("/api/v1/me").json()["role"] == "owner"
        usernames = [user["username"] for user in http.get("/api/v1/users").json()["items"]]
    assert "argilla" not in usernames  # Argilla's well-known default account was never made
    token = login(argilla, credentials["username"], credentials["password"])
    assert token.get("/api/v1/me").json()["username"] == credentials["username"]
    setup_log = (argilla.data_dir / "logs" / "setup.log").read_text()
    assert credentials["api_key"] not in setup_log and credentials["password"] not in setup_log


def test_serve_refuses_a_public_bind_and_a_busy_port(argilla, tmp_path):
    refused = argilla.cli("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "x"), data_dir=False)
    assert refused.returncode == 2 and "refusing to bind 0.0.0.0" in refused.stderr and "--allow-remote" in refused.stderr
    busy = argilla.cli("serve", "--port", str(argilla.port), "--data-dir", str(tmp_path / "y"), data_dir=False)
    assert busy.returncode == 2 and f"port {argilla.port} on 127.0.0.1 is already in use" in busy.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_users_add(argilla):
    added = argilla.cli("users", "add", "newbie", "--password", "newbie-pass")
    assert added.returncode == 0, added.stderr
    assert "created annotator 'newbie'; added to workspace 'annotation'" in added.stdout
    again = argilla.cli("users", "add", "newbie", "--password", "another-pass")
    assert "already exists (password and role unchanged)" in again.stdout
    short = argilla.cli("users", "add", "shorty", "--password", "short")
    assert short.returncode == 2 and "too short" in short.stderr
    login(argilla, "newbie", "newbie-pass")  # the first password still works
    client = argilla.client()
    assert "newbie" in {user.username for user in client.workspaces("annotation").users}


def test_push_creates_the_pairwise_dataset_and_a_repush_changes_nothing(argilla, tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", ["2+2?", "Capital of Peru?", "Name a prime."])
    pushed = argilla.cli("push", str(source), "--dataset", "push-check", "--min-submitted", "2")
    assert pushed.returncode == 0, pushed.stderr
    assert "created 3, updated 0, unchanged 0" in pushed.stdout

    dataset = argilla.client().datasets(name="push-check", workspace="annotation")
    settings = dataset.settings
    assert [(f.name, f.type) for f in settings.fields] == [("prompt", "chat"), ("answer_a", "text"), ("answer_b", "text")]
    preference = settings.questions["preference"]
    assert preference.type == "label_selection" and list(preference.labels) == ["a", "b", "tie", "both_bad"]
    assert settings.questions["rationale"].type == "text"
    assert settings.questions["strength"].type == "rating" and not settings.questions["strength"].required
    assert settings.distribution.min_submitted == 2
    assert "Which answer is better?" in settings.guidelines
    visible = {m.name: m.visible_for_annotators for m in settings.metadata}
    assert visible == {"source": True, "category": True, "models": False}

    records = records_by_prompt(argilla, "push-check")
    assert len(records) == 3
    record = records["Capital of Peru?"]
    assert record["external_id"].startswith("q1:")
    shown = {record["fields"]["answer_a"]: record["metadata"]["model_a"], record["fields"]["answer_b"]: record["metadata"]["model_b"]}
    assert shown == {"GOOD answer to: Capital of Peru?": "model-good", "weak answer to: Capital of Peru?": "model-weak"}

    again = argilla.cli("push", str(source), "--dataset", "push-check")
    assert "created 0, updated 0, unchanged 3" in again.stdout
    assert "note: the dataset keeps its min_submitted=2; --min-submitted 1 applies to new datasets" in again.stdout
    assert len(records_by_prompt(argilla, "push-check")) == 3


def table_chooser(table):
    """Scripted annotator choosing by a table {prompt: label as shown}."""

    def choose_from_table(pair: ShownPair) -> str:
        return table[pair.prompt[-1]["content"]]

    return choose_from_table


def test_round_trip_with_hand_computed_agreement(argilla, annotators, tmp_path):
    prompts = ["P1?", "P2?", "P3?", "P4?"]
    source = write_pairs(tmp_path / "pairs.jsonl", prompts, category="old")
    assert argilla.cli("push", str(source), "--dataset", "round-trip", "--min-submitted", "2").returncode == 0
    workspace = argilla.credentials["workspace"]
    tables = {
        "ann1": {"P1?": "a", "P2?": "a", "P3?": "b", "P4?": "b"},
        "ann2": {"P1?": "a", "P2?": "b", "P3?": "b", "P4?": "b"},
    }
    client = argilla.client()
    with pytest.raises(AnnotationError, match=r"round-trip: 0 of 4 records have 2 submitted response\(s\) after 0s"):
        wait_until_annotated(client, workspace, "round-trip", timeout_s=0, log=lambda line: None)
    for name, table in tables.items():
        done = submit_scripted_responses(
            argilla.api_url, "round-trip", workspace, [ScriptedAnnotator(name, annotators[name], noise=0)],
            choose=table_chooser(table),
        )
        assert done == {name: 4}
    assert wait_until_annotated(client, workspace, "round-trip", timeout_s=60, poll_s=1)["completed"] == 4

    # ann3 leaves a draft on P1 and discards P2: counted, never used as votes.
    records = records_by_prompt(argilla, "round-trip")
    with login(argilla, "ann3", annotators["ann3"]) as ann3:
        for prompt, status in (("P1?", "draft"), ("P2?", "discarded")):
            values = {"preference": {"value": "b"}} if status == "draft" else None
            body = {"status": status, **({"values": values} if values else {})}
            assert ann3.post(f"/api/v1/records/{records[prompt]['id']}/responses", json=body).status_code == 201

    status = argilla.cli("status", "--dataset", "round-trip", "--json")
    progress = json.loads(status.stdout)["round-trip"]
    assert (progress["total"], progress["completed"], progress["min_submitted"]) == (4, 4, 2)
    assert progress["users"]["ann1"] == {"submitted": 4, "draft": 0, "discarded": 0}
    assert progress["users"]["ann3"] == {"submitted": 0, "draft": 1, "discarded": 1}

    out = tmp_path / "prefs"
    pulled = argilla.cli("pull", "--dataset", "round-trip", "--out", str(out), "--min-votes", "2")
    assert pulled.returncode == 0, pulled.stderr
    card = json.loads((out / "card.json").read_text())
    assert card["counts"] == {"records": 4, "kept": 3, "dropped": 1}
    assert card["dropped"]["no_majority"] == 1
    assert card["responses"] == {"submitted": 8, "draft": 1, "discarded": 1}
    assert card["scripted_responses"] == 8 and "not human preference data" in card["warning"]
    agreement = card["agreement"]
    # votes per record (a,a) (a,b) (b,b) (b,b): alpha 8/15, Fleiss 7/15, Cohen 0.5 (see test_annotator_agreement.py)
    assert agreement["krippendorff_alpha"] == pytest.approx(8 / 15)
    assert agreement["fleiss_kappa"] == pytest.approx(7 / 15)
    assert agreement["pairwise_cohen_kappa"] == [{"annotators": ["ann1", "ann2"], "records": 4, "kappa": pytest.approx(0.5)}]
    assert agreement["annotators"]["ann3"]["responses"] == {"submitted": 0, "draft": 1, "discarded": 1}

    rows = {row["prompt"][-1]["content"]: row for row in datasets.load_from_disk(str(out))}
    assert set(rows) == {"P1?", "P3?", "P4?"}
    for prompt, shown in (("P1?", "answer_a"), ("P3?", "answer_b"), ("P4?", "answer_b")):
        record = records[prompt]
        other = "answer_b" if shown == "answer_a" else "answer_a"
        row = rows[prompt]
        assert row["chosen"] == [{"role": "assistant", "content": record["fields"][shown]}]
        assert row["rejected"] == [{"role": "assistant", "content": record["fields"][other]}]
        assert row["chosen_model"] == record["metadata"]["model_" + shown[-1]]
        assert row["chosen_model"] == ("model-good" if "GOOD" in row["chosen"][0]["content"] else "model-weak")
        assert row["annotators"] == ["ann1", "ann2"] and row["agreement"] == 1.0

    # A re-push with new metadata (and one new prompt) leaves every annotated record as it was.
    source = write_pairs(tmp_path / "pairs2.jsonl", prompts + ["P5?"], category="new")
    repushed = argilla.cli("push", str(source), "--dataset", "round-trip")
    assert "created 1, updated 0, unchanged 0, left alone because already annotated 4" in repushed.stdout
    after = records_by_prompt(argilla, "round-trip")
    for prompt in prompts:
        assert after[prompt]["metadata"]["category"] == "old"
        assert after[prompt]["fields"] == records[prompt]["fields"]
        assert len(after[prompt]["responses"]) == len(records[prompt]["responses"]) + (prompt in ("P1?", "P2?"))
    assert after["P5?"]["metadata"]["category"] == "new"


def test_the_embedded_engine_answers_what_the_web_ui_asks(argilla, annotators, tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", ["alpha question", "beta question", "gamma question"], category="greek")
    assert argilla.cli("push", str(source), "--dataset", "engine-check", "--min-submitted", "1").returncode == 0
    ds = dataset_id(argilla, "engine-check")
    workspace = argilla.credentials["workspace"]
    submit_scripted_responses(argilla.api_url, "engine-check", workspace,
                              [ScriptedAnnotator("ann1", annotators["ann1"], noise=0)], max_records_per_annotator=1)
    queue = {"filters": {"and": [
        {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]},
        {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]},
    ]}}
    with login(argilla, "ann1", annotators["ann1"]) as ann1, login(argilla, "ann2", annotators["ann2"]) as ann2:
        assert ann1.post(f"/api/v1/me/datasets/{ds}/records/search", json=queue).json()["total"] == 2
        assert ann2.post(f"/api/v1/me/datasets/{ds}/records/search", json=queue).json()["total"] == 2  # one completed
        metrics = ann1.get(f"/api/v1/me/datasets/{ds}/metrics").json()["responses"]
        assert (metrics["submitted"], metrics["pending"]) == (1, 2)
        text = {"query": {"text": {"q": "beta"}}}
        found = ann1.post(f"/api/v1/me/datasets/{ds}/records/search", json=text).json()
        assert [item["record"]["fields"]["prompt"][0]["content"] for item in found["items"]] == ["beta question"]
        # Annotators see source and category, never which model wrote which answer.
        assert set(found["items"][0]["record"]["metadata"]) == {"source", "category"}
    with argilla.http() as http:
        progress = http.get(f"/api/v1/datasets/{ds}/progress").json()
        assert (progress["total"], progress["completed"], progress["pending"]) == (3, 1, 2)
        assert [user["username"] for user in progress["users"]] == ["ann1"]
        properties = http.get(f"/api/v1/me/datasets/{ds}/metadata-properties").json()["items"]
        category = next(p for p in properties if p["name"] == "category")
        metrics = http.get(f"/api/v1/metadata-properties/{category['id']}/metrics").json()
        assert metrics == {"type": "terms", "total": 3, "values": [{"term": "greek", "count": 3}]}
        filtered = http.post(f"/api/v1/me/datasets/{ds}/records/search", json={"filters": {"and": [
            {"type": "terms", "scope": {"entity": "metadata", "metadata_property": "models"}, "values": ["model-good"]}]}})
        assert filtered.json()["total"] == 3
        nothing = http.post(f"/api/v1/me/datasets/{ds}/records/search", json={"filters": {"and": [
            {"type": "terms", "scope": {"entity": "metadata", "metadata_property": "models"}, "values": ["no-such-model"]}]}})
        assert nothing.json()["total"] == 0


def live_groups(pgids) -> list:
    """The process groups among `pgids` that still have a live (not zombie) member."""
    wanted, found = set(pgids), set()
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) in wanted:
                found.add(os.getpgid(process.pid))
        except (ProcessLookupError, psutil.Error):
            pass
    return sorted(found)


def test_restart_after_a_killed_serve_keeps_every_record_and_response(argilla, annotators, tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", ["before restart 1", "before restart 2", "before restart 3"])
    assert argilla.cli("push", str(source), "--dataset", "restart-check").returncode == 0
    workspace = argilla.credentials["workspace"]
    submit_scripted_responses(argilla.api_url, "restart-check", workspace,
                              [ScriptedAnnotator("ann2", annotators["ann2"], noise=0)], max_records_per_annotator=2)

    def snapshot():
        client = argilla.client()
        state = {}
        for dataset in client.workspaces(workspace).datasets:
            with argilla.http() as http:
                records = http.get(f"/api/v1/datasets/{dataset.id}/records",
                                   params={"include": ["responses"], "limit": 1000}).json()["items"]
                progress = http.get(f"/api/v1/datasets/{dataset.id}/progress").json()
            state[dataset.name] = {
                "progress": progress,
                "records": sorted(
                    (r["external_id"], json.dumps(r["fields"], sort_keys=True),
                     sorted((x["user_id"], x["status"], json.dumps(x["values"], sort_keys=True)) for x in r["responses"]))
                    for r in records
                ),
            }
        ds = dataset_id(argilla, "restart-check")
        with login(argilla, "ann2", annotators["ann2"]) as ann2:
            queue = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]}]}}
            state["ann2 queue"] = sorted(i["record"]["id"] for i in ann2.post(f"/api/v1/me/datasets/{ds}/records/search", json=queue).json()["items"])
        return state

    before = snapshot()
    assert len(before["ann2 queue"]) == 1 and before["restart-check"]["progress"]["completed"] == 2
    # The restart follows a crash (issue #18 item 13): serve killed with -9 leaves its children running;
    # a new serve refuses in one line, `stop` stops what was recorded, and serve starts again.
    recorded = {row["name"]: row["pgid"] for row in json.loads((argilla.data_dir / "processes.json").read_text())}
    expected = ["redis", "postgres", "server", "worker"] if argilla.database == "postgresql" else ["redis", "server", "worker"]
    assert list(recorded) == expected
    argilla.crash()
    assert set(live_groups(recorded.values())) == set(recorded.values()) and port_in_use("127.0.0.1", argilla.port)
    refused = argilla.cli("serve", "--port", str(argilla.port))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(f"error: the last serve on {argilla.data_dir} was killed and left redis (pid {recorded['redis']}")
    assert f"worker (pid {recorded['worker']}" in refused.stderr
    assert refused.stderr.rstrip().endswith(f"running; stop them first: python -m annotation stop --data-dir {argilla.data_dir}")
    stopped = argilla.cli("stop")
    assert stopped.returncode == 0 and stopped.stdout.startswith(
        f"the serve on {argilla.data_dir} was gone (killed?); stopped what it left running: redis (pid {recorded['redis']}")
    assert live_groups(recorded.values()) == [] and not port_in_use("127.0.0.1", argilla.port)
    assert not (argilla.data_dir / "processes.json").exists() and not (argilla.data_dir / "serve.pid").exists()
    argilla.start()  # without --database: the data directory remembers its database
    assert snapshot() == before
    described = {"sqlite": "database: SQLite)", "postgresql": "database: PostgreSQL (a local cluster in the data directory))"}
    assert described[argilla.database] in argilla.log_path.read_text()
    assert (argilla.data_dir / "argilla.db").exists() == (argilla.database == "sqlite")


def test_scripted_annotators_refuse_a_model_no_record_has(argilla, tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", ["scripted rule check"])
    assert argilla.cli("push", str(source), "--dataset", "scripted-rule").returncode == 0
    refused = argilla.cli("scripted-annotators", "--dataset", "scripted-rule")  # the default rule prefers 'chosen'
    assert refused.returncode == 2 and refused.stderr == (
        "error: no record of annotation/scripted-rule has an answer by model 'chosen' (its models: model-good, "
        "model-weak); pass --chosen-model NAME, or --rule longer\n")
    noisy = argilla.cli("scripted-annotators", "--dataset", "scripted-rule", "--noise", "1.5")
    assert noisy.returncode == 2 and noisy.stderr == "error: --noise must be between 0 and 1, not 1.5\n"
