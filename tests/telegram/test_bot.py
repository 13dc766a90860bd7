"""The Telegram front end end to end: real server, real PostgreSQL, real HTTP to a fake
Bot API (and a fake GitHub for /pr), updates in the shapes Telegram sends."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import trio

from buildit import clock
from buildit.db import queries
from buildit.linking import read_link_token
from tests.conftest import heartbeat_body, ok_result, worker_body
from tests.telegram.conftest import ARCHS, REPO, SESSION_SECRET, Bot
from tests.telegram.fakes import FakeGitHub, pull_request
from tests.telegram.updates import (
    BOT_NAME,
    GROUP,
    GUEST,
    MAINTAINER,
    callback,
    group,
    private,
)

MakeBot = Callable[..., Awaitable[Bot]]


async def _pipelines(conn: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT p.*, u.github_login AS creator,
                  (SELECT array_agg(j.arch ORDER BY j.arch) FROM jobs j
                   WHERE j.pipeline_id = p.id) AS job_archs
           FROM pipelines p LEFT JOIN users u ON u.id = p.creator_user_id ORDER BY p.id""")
    return [dict(r) for r in rows]


async def _poll(bot: Bot, hostname: str, arch: str) -> Any:
    r = await bot.client.post("/api/worker/poll", json=worker_body(hostname, arch))
    assert r.status_code == 200, r.text
    return r.json()


async def _report(bot: Bot, hostname: str, arch: str, job_id: int, result: Any) -> None:
    r = await bot.client.post("/api/worker/job_update", json={
        "hostname": hostname, "arch": arch, "job_id": job_id,
        "worker_secret": "test-worker-secret", "result": result})
    assert r.status_code == 200, r.text


async def _job(bot: Bot, job_id: int) -> Any:
    r = await bot.client.get("/api/job/info", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- building


async def test_developer_builds_in_a_private_chat(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        await bot.send(private("/build stable bash,zlib amd64,arm64"))
        [reply] = await bot.fake.wait_for(1, chat_id=MAINTAINER)
        [pipeline] = await bot.server.db.read(_pipelines)
        assert pipeline["source"] == "telegram"
        assert pipeline["telegram_chat_id"] == MAINTAINER
        assert pipeline["creator"] == "alice"
        assert (pipeline["git_branch"], pipeline["git_sha"]) == ("stable", bot.tree.stable)
        assert pipeline["packages"] == "bash,zlib"
        assert pipeline["job_archs"] == ["amd64", "arm64"]
        assert reply["parse_mode"] == "HTML"
        assert "reply_parameters" not in reply  # private chats get no quote
        text = reply["text"]
        assert f"Pipeline #{pipeline['id']}</a> created: bash,zlib @ stable" in text
        assert bot.tree.stable[:8] in text
        assert f"http://buildit.test/pipelines/{pipeline['id']}" in text

        # archs may be left out: the packages tree says where they build
        await bot.send(private("/build stable noarm"))
        await bot.fake.wait_for(2, chat_id=MAINTAINER)
        pipelines = await bot.server.db.read(_pipelines)
        assert pipelines[-1]["job_archs"] == ["amd64", "riscv64"]

        # what the tree refuses is answered, not created
        await bot.send(private("/build nosuchbranch bash amd64"))
        replies = await bot.fake.wait_for(3, chat_id=MAINTAINER)
        assert "branch 'nosuchbranch' does not exist" in replies[2]["text"]
        assert len(await bot.server.db.read(_pipelines)) == 2


async def test_malformed_commands_get_a_usage_line(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        texts = ["/build", "/build stable bash zlib amd64", "/restart twelve", "/pr abc",
                 "/status now", "/token please", "/frobnicate"]
        for text in texts:
            await bot.send(private(text))
        replies = [r["text"] for r in await bot.fake.wait_for(len(texts), chat_id=MAINTAINER)]
        assert "Usage: <code>/build &lt;branch&gt; &lt;packages&gt; [archs]" in replies[0]
        assert "too many arguments" in replies[1]
        assert "'twelve' is not a job id" in replies[2]
        assert "Usage: <code>/restart &lt;job id&gt;" in replies[2]
        assert "'abc' is not a pull request number" in replies[3]
        assert "/status takes no arguments" in replies[4]
        assert "Usage: <code>/token  or  /token reset</code>" in replies[5]
        assert "I do not know /frobnicate" in replies[6]
        assert await bot.server.db.read(_pipelines) == []


async def test_unlinked_and_guest_users_are_told_to_log_in(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("visitor", GUEST, role="guest")
        await bot.send(private("/build stable bash amd64", user_id=4242, username=None))
        await bot.send(private("/build stable bash amd64", user_id=GUEST))
        await bot.send(group("/restart 1", user_id=4242))
        await bot.send(private("hello, can you build firefox for me?", user_id=4242))
        [unlinked] = await bot.fake.wait_for(1, chat_id=4242)
        assert "not linked to a GitHub account" in unlinked["text"]
        assert "Send /login here" in unlinked["text"]
        [guest] = await bot.fake.wait_for(1, chat_id=GUEST)
        assert "visitor is not an AOSC Developer" in guest["text"]
        [in_group] = await bot.fake.wait_for(1, chat_id=GROUP)
        assert f"Send /login to @{BOT_NAME} in a private chat" in in_group["text"]
        assert in_group["reply_parameters"]["allow_sending_without_reply"] is True
        replies = await bot.fake.wait_for(2, chat_id=4242)
        assert "I only understand commands" in replies[1]["text"]
        assert await bot.server.db.read(_pipelines) == []


async def test_pr_in_a_group_builds_each_pull_request(make_bot: MakeBot,
                                                      fake_github: FakeGitHub) -> None:
    with trio.fail_after(30):
        bot = await make_bot(github=fake_github)
        fake_github.pulls[12345] = pull_request(
            12345, repo=REPO, branch="feature", sha=bot.tree.feature,
            body="Adds newpkg.\r\n\r\n#buildit newpkg, bash\r\n")
        fake_github.pulls[12346] = pull_request(
            12346, repo=REPO, branch="patch-1", sha=bot.tree.feature, body="#buildit bash",
            fork="someone/aosc-os-abbs")
        await bot.link("alice", MAINTAINER)
        await bot.send(group(f"/pr@{BOT_NAME} 12345,12346,99 mainline"))
        await bot.send(group("/pr@some_other_bot 12345"))  # not for us: ignored
        [reply] = await bot.fake.wait_for(1, chat_id=GROUP)
        [pipeline] = await bot.server.db.read(_pipelines)
        assert pipeline["github_pr"] == 12345
        assert (pipeline["git_branch"], pipeline["git_sha"]) == ("feature", bot.tree.feature)
        assert pipeline["packages"] == "newpkg,bash"
        assert pipeline["job_archs"] == sorted(ARCHS)  # mainline: every arch
        assert pipeline["telegram_chat_id"] == GROUP and pipeline["source"] == "telegram"
        text = reply["text"]
        assert f"PR #12345: <a href=\"http://buildit.test/pipelines/{pipeline['id']}\">" in text
        assert "PR #12346: #12346 comes from a fork (someone/aosc-os-abbs)" in text
        assert "PR #99: pull request #99 does not exist" in text
        assert reply["reply_parameters"]["message_id"] > 0
        assert ("GET", f"/repos/{REPO}/pulls/12345") in fake_github.requests
        # the other bot's command was not answered
        await bot.send(group("/help"))
        replies = await bot.fake.wait_for(2, chat_id=GROUP)
        assert "BuildIt!" in replies[1]["text"]
        assert len(bot.fake.sent(chat_id=GROUP)) == 2


async def test_pr_without_github_says_it_needs_github(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        await bot.send(group(f"/pr@{BOT_NAME} 12345 mainline"))
        [reply] = await bot.fake.wait_for(1, chat_id=GROUP)
        assert "/pr needs the GitHub integration" in reply["text"]
        assert await bot.server.db.read(_pipelines) == []


async def test_status_shows_the_queue_and_workers(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        r = await bot.client.post("/api/worker/heartbeat",
                                  json=heartbeat_body("buildbot-<amd64>", "amd64"))
        assert r.status_code == 200, r.text
        while not (await bot.client.get("/api/worker/list")).json()["items"]:
            await trio.sleep(0.01)  # heartbeats are written in batches
        await bot.send(private("/build stable bash amd64,arm64"))
        await bot.fake.wait_for(1, chat_id=MAINTAINER)
        await bot.send(private("/status", user_id=GUEST))  # anyone may look
        [reply] = await bot.fake.wait_for(1, chat_id=GUEST)
        text = reply["text"]
        table = re.search(r"<pre>(.*)</pre>", text, re.S)
        assert table is not None
        rows = {line.split()[0]: line.split()[1:] for line in table.group(1).splitlines()}
        assert rows["amd64"] == ["1", "0", "1"] and rows["arm64"] == ["1", "0", "0"]
        assert "noarch" in rows
        assert "buildbot-&lt;amd64&gt; (amd64): idle, last heartbeat" in text


# ---------------------------------------------------------------- linking


async def test_login_link_then_start_round_trip(bot: Bot) -> None:
    with trio.fail_after(30):
        alice = await bot.server.db.run(queries.upsert_user, "alice", "developer")
        await bot.send(group("/login"))
        [refused] = await bot.fake.wait_for(1, chat_id=GROUP)
        assert "private chat only" in refused["text"] and "/link/telegram" not in refused["text"]
        assert f"https://t.me/{BOT_NAME}?start=login" in refused["text"]

        await bot.send(private("/login"))
        [reply] = await bot.fake.wait_for(1, chat_id=MAINTAINER)
        url = re.search(r'href="([^"]+)"', reply["text"])
        assert url is not None
        link = urlparse(url.group(1).replace("&amp;", "&"))
        assert f"{link.scheme}://{link.netloc}{link.path}" == "http://buildit.test/link/telegram"
        token = parse_qs(link.query)["token"][0]
        # The web side: after the GitHub login it reads the token and stores the chat.
        chat_id = read_link_token(SESSION_SECRET, token, clock.now().timestamp())
        assert chat_id == MAINTAINER
        await bot.server.db.run(queries_link, alice.id, chat_id)

        # Back in Telegram through the deep link t.me/<bot>?start=<token>
        await bot.send(private("/start Zx81kQp0aBcDeFgHiJkL"))
        replies = await bot.fake.wait_for(2, chat_id=MAINTAINER)
        assert "linked to the GitHub account <b>alice</b> (an AOSC Developer)" in replies[1]["text"]
        # ... and from now on alice may build
        await bot.send(private("/build stable bash amd64"))
        await bot.fake.wait_for(3, chat_id=MAINTAINER)
        [pipeline] = await bot.server.db.read(_pipelines)
        assert pipeline["creator"] == "alice"

        # /start alone is the help; /start login (the deep link from a group) is /login
        await bot.send(private("/start", user_id=GUEST))
        await bot.send(private("/start login", user_id=GUEST))
        await bot.send(private("/start whatever", user_id=GUEST))
        replies = await bot.fake.wait_for(3, chat_id=GUEST)
        assert "/build &lt;branch&gt;" in replies[0]["text"]
        assert "/link/telegram?token=" in replies[1]["text"]
        assert "not linked to a GitHub account (yet)" in replies[2]["text"]


async def queries_link(conn: Any, user_id: int, chat_id: int) -> None:
    from buildit.db import web_queries

    await web_queries.link_telegram(conn, user_id, chat_id)


async def test_token_in_private_chats_only_and_never_stored(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        old = await bot.server.add_user("alice")
        await bot.send(group("/token"))
        [refused] = await bot.fake.wait_for(1, chat_id=GROUP)
        assert "private chat only" in refused["text"]
        await bot.send(private("/token reset"))
        [reply] = await bot.fake.wait_for(1, chat_id=MAINTAINER)
        match = re.search(r"<code>(bit_[A-Za-z0-9_-]+)</code>", reply["text"])
        assert match is not None
        token = match.group(1)
        assert "1 older token(s) revoked" in reply["text"]
        services = bot.server.running.services
        user = await services.authenticate_token(token)
        assert user is not None and user.github_login == "alice"
        assert await services.authenticate_token(old) is None
        # the token went straight to Telegram: no outbox row holds it
        rows = await bot.server.db.read(queries.outbox_rows)
        assert all(token not in str(row["payload"]) for row in rows)
        # not linked: no token
        await bot.send(private("/token", user_id=GUEST))
        [guest] = await bot.fake.wait_for(1, chat_id=GUEST)
        assert "not linked" in guest["text"] and "bit_" not in guest["text"]


# ---------------------------------------------------------------- results and restarts


async def test_failed_job_message_and_restart_button(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        await bot.link("visitor", GUEST, role="guest")
        await bot.send(private("/build stable bash,zlib amd64"))
        await bot.fake.wait_for(1, chat_id=MAINTAINER)
        job = await _poll(bot, "buildbot-amd64-1", "amd64")
        assert job is not None
        job_id = job["job_id"]
        await _report(bot, "buildbot-amd64-1", "amd64", job_id,
                      ok_result("bash", build_success=False, failed="zlib",
                                skipped=("extra<1>",)))
        replies = await bot.fake.wait_for(2, chat_id=MAINTAINER)
        result = replies[1]
        text = result["text"]
        assert f'Job #{job_id}</a> failed</b> on buildbot-amd64-1 (amd64)' in text
        assert f"http://buildit.test/jobs/{job_id}" in text
        assert "Elapsed: 12 s" in text
        assert "Built (1): <code>bash</code>" in text
        assert "Failed: <code>zlib</code>" in text
        assert "Skipped (1): <code>extra&lt;1&gt;</code>" in text
        assert f"Log: <a href=\"http://buildit.test/api/job/log?job_id={job_id}\">" in text
        button = result["reply_markup"]["inline_keyboard"][0][0]
        assert button["callback_data"] == f"restart:{job_id}"

        # A guest's press is refused with an alert; the job stays failed.
        await bot.send(callback(button["callback_data"], user_id=GUEST))
        [refusal] = await bot.fake.wait_for(1, "answerCallbackQuery")
        assert refusal["show_alert"] is True
        assert "Only AOSC Developers" in refusal["text"]
        assert (await _job(bot, job_id))["status"] == "failed"

        # A Developer's press restarts it and answers the callback.
        await bot.send(callback(button["callback_data"], user_id=MAINTAINER))
        answers = await bot.fake.wait_for(2, "answerCallbackQuery")
        assert answers[1]["text"] == f"Job #{job_id} restarted."
        assert (await _job(bot, job_id))["status"] == "created"
        replies = await bot.fake.wait_for(3, chat_id=MAINTAINER)
        assert f"Job #{job_id}</a> (pipeline #" in replies[2]["text"]
        assert "restarted by alice" in replies[2]["text"]

        # Pressing again: the job is not failed any more -> an alert says so.
        await bot.send(callback(f"restart_{job_id}", user_id=MAINTAINER))
        answers = await bot.fake.wait_for(3, "answerCallbackQuery")
        assert answers[2]["show_alert"] is True and "only failed or error" in answers[2]["text"]

        # The second attempt succeeds: a message without a button.
        again = await _poll(bot, "buildbot-amd64-2", "amd64")
        assert again["job_id"] == job_id
        many = [f"pkg{i}" for i in range(300)]
        await _report(bot, "buildbot-amd64-2", "amd64", job_id, ok_result(*many))
        replies = await bot.fake.wait_for(4, chat_id=MAINTAINER)
        success = replies[3]
        assert f"Job #{job_id}</a> succeeded</b> on buildbot-amd64-2 (amd64)" in success["text"]
        assert "Attempt 2" in success["text"]
        assert "Built (300): <code>pkg0</code>" in success["text"]
        assert "… and 280 more (<a href=\"http://buildit.test/jobs/" in success["text"]
        assert "reply_markup" not in success


async def test_cancelled_jobs_are_reported_once_each(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        await bot.send(private("/build stable bash amd64,arm64"))
        [created] = await bot.fake.wait_for(1, chat_id=MAINTAINER)
        pipeline_id = int(re.search(r"Pipeline #(\d+)", created["text"])[1])  # type: ignore[index]
        running = await _poll(bot, "w1", "amd64")  # one job running, one still waiting
        token = await bot.server.add_user("alice")
        r = await bot.client.post("/api/pipeline/cancel", json={"pipeline_id": pipeline_id},
                                  headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        replies = await bot.fake.wait_for(3, chat_id=MAINTAINER)
        cancelled = sorted(replies[1:], key=lambda m: m["text"])
        texts = [m["text"] for m in cancelled]
        assert all("was cancelled</b>" in t and "cancelled by alice" in t for t in texts)
        assert f"Job #{running['job_id']}</a> was cancelled</b> on w1 (amd64)" in "".join(texts)
        assert all(m["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith(
            "restart:") for m in cancelled)
        # Cancelling again ends nothing more, so says nothing more.
        r = await bot.client.post("/api/pipeline/cancel", json={"pipeline_id": pipeline_id},
                                  headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        await bot.wait_outbox_settled()
        assert len(bot.fake.sent(chat_id=MAINTAINER)) == 3


async def test_restart_command(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        await bot.send(private("/build stable bash amd64"))
        await bot.fake.wait_for(1, chat_id=MAINTAINER)
        job = await _poll(bot, "w1", "amd64")
        await _report(bot, "w1", "amd64", job["job_id"], {"Error": "ciel <exploded> & died"})
        replies = await bot.fake.wait_for(2, chat_id=MAINTAINER)
        assert "ended in error" in replies[1]["text"]
        assert "Error: <code>ciel &lt;exploded&gt; &amp; died</code>" in replies[1]["text"]
        await bot.send(group(f"/restart@{BOT_NAME} {job['job_id']}"))
        [reply] = await bot.fake.wait_for(1, chat_id=GROUP)
        assert "restarted by alice" in reply["text"]
        assert (await _job(bot, job["job_id"]))["status"] == "created"
        await bot.send(private("/restart 999999"))
        replies = await bot.fake.wait_for(3, chat_id=MAINTAINER)
        assert "job 999999 does not exist" in replies[2]["text"]


# ---------------------------------------------------------------- the webhook itself


async def test_wrong_secret_and_replayed_updates_do_nothing(bot: Bot) -> None:
    with trio.fail_after(30):
        await bot.link("alice", MAINTAINER)
        update = private("/build stable bash amd64")
        for secret in (None, "wrong-secret", ""):
            r = await bot.post(update, secret=secret)
            assert r.status_code == 401, r.text
        r = await bot.client.post("/api/telegram/webhook", content=b"not json",
                                  headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
        assert r.status_code == 401
        await bot.send(update)
        await bot.fake.wait_for(1, chat_id=MAINTAINER)
        await bot.wait_outbox_settled()
        before = await bot.server.counts()
        assert before["pipelines"] == 1 and before["webhook_deliveries"] == 1

        r = await bot.send(update)  # Telegram delivers it again
        assert r.json() == {"ok": True, "duplicate": True}
        for secret in (None, "wrong-secret"):
            assert (await bot.post(private("/build stable zlib amd64"),
                                   secret=secret)).status_code == 401
        # A later update of the same chat is handled after anything queued before it.
        await bot.send(private("/help"))
        replies = await bot.fake.wait_for(2, chat_id=MAINTAINER)
        assert "BuildIt!" in replies[1]["text"]
        await bot.wait_outbox_settled()
        after = await bot.server.counts()
        assert after == {**before, "webhook_deliveries": 2, "outbox": before["outbox"] + 1}
        assert len(bot.fake.sent()) == 2

        # Not an update at all
        r = await bot.client.post("/api/telegram/webhook", content=b"[1, 2]",
                                  headers={"X-Telegram-Bot-Api-Secret-Token":
                                           bot.extra["BUILDIT_TELEGRAM_WEBHOOK_SECRET"]})
        assert r.status_code == 400
