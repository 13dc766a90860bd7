"""The web UI over plain HTTP (no browser): pages, login, roles, CSRF, escaping, streams."""

from __future__ import annotations

import re
from typing import Any

import orjson
import trio

from buildit import clock
from buildit.db import queries
from buildit.linking import make_link_token
from tests.conftest import SHA, ok_result
from tests.web.conftest import SESSION_SECRET, Web, csrf_of

XSS = "<script>alert(1)</script>"


async def _insert_evil_pipeline(conn: Any) -> tuple[int, int]:
    """A pipeline whose packages the API would never accept (inserted with SQL)."""
    pipeline_id = await conn.fetchval(
        """INSERT INTO pipelines (git_branch, git_sha, packages, archs, source, created_at,
                  options, status, finished_at)
           VALUES ('stable', $1, $2, 'amd64', 'api', now(), $2, 'error', now()) RETURNING id""",
        SHA, XSS,
    )
    job_id = await conn.fetchval(
        """INSERT INTO jobs (pipeline_id, arch, packages, created_at, status, finished_at,
                  error_message, failed_package)
           VALUES ($1, 'amd64', $2, now(), 'error', now(), $2, $2) RETURNING id""",
        pipeline_id, XSS,
    )
    await conn.execute(
        """INSERT INTO packages (name, arch, version, last_job_id, last_result, updated_at)
           VALUES ($1, 'amd64', $1, $2, 'failed', now())""",
        XSS, job_id,
    )
    return pipeline_id, job_id


async def test_every_page_answers_anonymous(web: Web) -> None:
    with trio.fail_after(30):
        token = await web.server.add_user("carol")
        await web.heartbeat("w1", "amd64")
        pid = await web.api_pipeline(token)
        job = await web.poll("w1", "amd64")
        await web.upload_log(job, 0, b"\x1b[1;32mhello\x1b[0m world\n\x1b[31m" + XSS.encode()
                             + b"\n")
        await web.report(job, ok_result("bash"))
        info = await web.server.client.get("/api/worker/list")
        worker_id = info.json()["items"][0]["id"]
        client = web.client()
        for path in ("/", "/pipelines", "/pipelines?stable=1&pr=1&status=success&page=2",
                     f"/pipelines/{pid}", f"/jobs/{job['job_id']}", "/workers",
                     f"/workers/{worker_id}", "/packages", "/packages?q=ba",
                     "/pipelines/new", "/account/token",
                     f"/pipelines/{pid}/fragment", f"/jobs/{job['job_id']}/fragment"):
            r = await client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
            assert r.headers["content-type"].startswith("text/html"), path
        page = (await client.get(f"/jobs/{job['job_id']}")).text
        assert '<span class="fg2 b">hello</span> world' in page
        assert '<span class="fg1">&lt;script&gt;alert(1)&lt;/script&gt;' in page
        assert "<script>alert" not in page
        assert "Log in with GitHub" in page and "Restart" not in page
        r = await client.get("/pipelines/999999")
        assert r.status_code == 404 and "pipeline 999999 does not exist" in r.text
        r = await client.get("/assets/app.js")
        assert r.status_code == 200 and "AnsiConverter" in r.text


async def test_login_as_member_and_guest_sets_roles_and_safe_cookies(web: Web) -> None:
    with trio.fail_after(30):
        alice = await web.login("alice")
        page = (await alice.get("/")).text
        assert "alice" in page and ">Developer<" in page and "New pipeline" in page
        bob = await web.login("bob")
        page = (await bob.get("/")).text
        assert "bob" in page and ">Guest<" in page and "New pipeline</a></li>" not in page
        rows = await web.db.read(_users)
        assert rows["alice"]["role"] == "developer" and rows["alice"]["github_id"] == 1000
        assert rows["bob"]["role"] == "guest" and rows["bob"]["role_checked_at"] is not None
        # the cookies: HttpOnly, SameSite=Lax, not Secure on http
        client = web.client()
        r = await client.get("/login")
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        # logging out needs the CSRF token too
        r = await alice.post("/logout", data={})
        assert r.status_code == 403 and "CSRF" in r.text
        r = await alice.post("/logout", data={"csrf_token": await web.csrf(alice)})
        assert r.status_code == 303
        page = (await alice.get("/")).text
        assert "Log in with GitHub" in page and ">Developer<" not in page


async def _users(conn: Any) -> dict[str, Any]:
    rows = await conn.fetch("SELECT * FROM users")
    return {r["github_login"]: dict(r) for r in rows}


async def test_oauth_callback_checks_state(web: Web) -> None:
    with trio.fail_after(30):
        client = web.client()
        r = await client.get("/login")
        authorize = r.headers["location"]
        r = await client.get(authorize + "&login=alice")
        callback = r.headers["location"]
        forged = re.sub(r"state=[^&]+", "state=forged", callback)
        r = await client.get(forged)
        assert r.status_code == 400 and "state does not match" in r.text
        # the state is single-use: even the genuine callback fails now
        r = await client.get(callback)
        assert r.status_code == 400
        # a browser that never started a login (another session) cannot finish one
        r = await web.client().get(callback)
        assert r.status_code == 400
        assert "alice" not in await web.db.read(_users)
        assert "Log in with GitHub" in (await client.get("/")).text


async def test_forms_check_csrf_and_role(web: Web) -> None:
    with trio.fail_after(30):
        form = {"git_branch": "stable", "packages": "bash", "archs": "amd64", "git_sha": SHA}
        alice = await web.login("alice")
        # no token, a wrong token, a token of another session: refused, nothing created
        r = await alice.post("/pipelines/new", data=form)
        assert r.status_code == 403 and "CSRF" in r.text
        r = await alice.post("/pipelines/new", data={**form, "csrf_token": "x" * 43})
        assert r.status_code == 403 and "CSRF" in r.text
        other = web.client()
        r = await alice.post("/pipelines/new",
                             data={**form, "csrf_token": await web.csrf(other)})
        assert r.status_code == 403
        assert (await web.server.counts())["pipelines"] == 0
        # with its own token, the Developer's form creates a pipeline
        r = await alice.post("/pipelines/new", data={**form, "csrf_token": await web.csrf(alice)})
        assert r.status_code == 303, r.text
        pid = int(r.headers["location"].rsplit("/", 1)[1])
        info = await web.server.client.get("/api/pipeline/info", params={"pipeline_id": pid})
        assert info.json()["creator_github_login"] == "alice"
        assert info.json()["source"] == "web"
        # invalid input re-renders the form with the reason
        r = await alice.post("/pipelines/new", data={**form, "packages": "Bad Name!",
                                                     "csrf_token": await web.csrf(alice)})
        assert r.status_code == 422 and "invalid package name" in r.text
        # a Guest and Anonymous, with valid CSRF tokens, are refused by the server
        bob = await web.login("bob")
        anonymous = web.client()
        for client in (bob, anonymous):
            token = await web.csrf(client)
            r = await client.post("/pipelines/new", data={**form, "csrf_token": token})
            assert r.status_code == 403 and "only Developers" in r.text
            job_id = info.json()["jobs"][0]["job_id"]
            r = await client.post(f"/jobs/{job_id}/restart", data={"csrf_token": token})
            assert r.status_code == 403
            r = await client.post(f"/pipelines/{pid}/cancel", data={"csrf_token": token},
                                  headers={"Accept": "application/json"})
            assert r.status_code == 403 and "only Developers" in r.json()["error"]
        assert (await web.server.counts())["pipelines"] == 1
        # the Developer cancels
        r = await alice.post(f"/pipelines/{pid}/cancel",
                             data={"csrf_token": await web.csrf(alice)})
        assert r.status_code == 303
        page = (await alice.get(f"/pipelines/{pid}")).text
        assert "cancelled by alice" in page and "Restart" in page


async def test_user_text_is_escaped_everywhere(web: Web) -> None:
    with trio.fail_after(30):
        pid, job_id = await web.db.run(_insert_evil_pipeline)
        await web.heartbeat(XSS, "amd64")
        await web.wait_worker(XSS)
        alice = await web.login("alice")
        for path in ("/", "/pipelines", f"/pipelines/{pid}", f"/jobs/{job_id}", "/workers",
                     "/packages", f"/packages?q={XSS}", f"/pipelines/{pid}/fragment",
                     f"/jobs/{job_id}/fragment"):
            r = await alice.get(path)
            assert r.status_code == 200, path
            assert "<script>alert" not in r.text, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text or \
                "&lt;script&gt;alert(1)" in r.text, path
        # a worker's log_url with another scheme never becomes a link
        job = await web.db.read(queries.job_info, job_id)
        assert job is not None
        await web.db.run(_set_log_url, job_id, "javascript:alert(1)")
        page = (await alice.get(f"/jobs/{job_id}")).text
        assert 'href="javascript:' not in page
        assert "script-src 'self'" in (await alice.get("/")).headers["content-security-policy"]


async def _set_log_url(conn: Any, job_id: int, url: str) -> None:
    await conn.execute("UPDATE jobs SET log_url = $2 WHERE id = $1", job_id, url)


async def test_api_token_page_creates_a_token_shown_once(web: Web) -> None:
    with trio.fail_after(30):
        r = await web.client().post("/account/token",
                                    data={"csrf_token": await web.csrf(web.client())})
        assert r.status_code == 403
        bob = await web.login("bob")
        r = await bob.post("/account/token", data={"csrf_token": await web.csrf(bob)})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        token = re.search(r'value="(bit_[^"]+)"', r.text)
        assert token is not None
        # the Guest's token authenticates but may not build
        r = await web.server.client.post(
            "/api/pipeline/new", json={"git_branch": "stable", "git_sha": SHA, "packages": "a"},
            headers={"Authorization": f"Bearer {token.group(1)}"})
        assert r.status_code == 403 and "bob is not a Developer" in r.json()["error"]
        page = (await bob.get("/account/token")).text
        assert token.group(1) not in page and "Reset my token" in page
        # a reset revokes the old token
        r = await bob.post("/account/token", data={"csrf_token": await web.csrf(bob)})
        assert r.status_code == 200
        r = await web.server.client.post(
            "/api/pipeline/new", json={"git_branch": "stable", "git_sha": SHA, "packages": "a"},
            headers={"Authorization": f"Bearer {token.group(1)}"})
        assert r.status_code == 401


async def test_link_telegram_after_login(web: Web) -> None:
    with trio.fail_after(30):
        link = make_link_token(SESSION_SECRET, 424242, clock.now().timestamp())
        client = web.client()
        r = await client.get("/link/telegram", params={"token": link})
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=")
        # log in, coming back to the link page
        r = await client.get(r.headers["location"])
        r = await client.get(r.headers["location"] + "&login=bob")
        r = await client.get(r.headers["location"])
        assert r.status_code == 303 and r.headers["location"].startswith("/link/telegram?token=")
        r = await client.get(r.headers["location"])
        assert r.status_code == 200 and "424242" in r.text and "Link this chat" in r.text
        assert (await web.db.read(_users))["bob"]["telegram_chat_id"] is None
        r = await client.post("/link/telegram", data={"token": link,
                                                      "csrf_token": csrf_of(r.text)})
        assert r.status_code == 200 and "is now linked" in r.text
        assert (await web.db.read(_users))["bob"]["telegram_chat_id"] == 424242
        # forged and expired links are refused
        r = await client.get("/link/telegram", params={"token": link[:-2] + "xx"})
        assert r.status_code == 400 and "not valid" in r.text
        old = make_link_token(SESSION_SECRET, 424242, clock.now().timestamp() - 1000)
        r = await client.get("/link/telegram", params={"token": old})
        assert r.status_code == 400 and "expired" in r.text


async def test_role_is_checked_again_when_old(web: Web) -> None:
    with trio.fail_after(30):
        alice = await web.login("alice")
        checks = web.github.membership_checks()
        assert ">Developer<" in (await alice.get("/")).text
        assert web.github.membership_checks() == checks  # fresh: no new check
        # alice leaves the organization; an hour later her next request notices
        web.github.users["alice"].member = False
        await web.db.run(_age_roles)
        assert ">Guest<" in (await alice.get("/")).text
        assert web.github.membership_checks() == checks + 1
        assert (await web.db.read(_users))["alice"]["role"] == "guest"
        # a revoked token logs the user out at the next check
        web.github.revoke_all()
        await web.db.run(_age_roles)
        page = (await alice.get("/")).text
        assert "Log in with GitHub" in page


async def _age_roles(conn: Any) -> None:
    await conn.execute("UPDATE users SET role_checked_at = now() - interval '2 hours'")


async def test_event_stream_sends_job_events(web: Web) -> None:
    with trio.fail_after(30):
        token = await web.server.add_user("carol")
        client = web.client()
        async with client.stream("GET", "/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.aiter_lines()
            assert await lines.__anext__() == "retry: 3000"
            pid = await web.api_pipeline(token)
            event: dict[str, Any] = {}
            async for line in lines:
                if line.startswith("data: "):
                    event = orjson.loads(line[6:])
                    break
        assert event["pipeline_id"] == pid and event["status"] == "created"


async def test_event_stream_ends_when_the_server_stops(web: Web) -> None:
    with trio.fail_after(20):
        client = web.client()
        async with client.stream("GET", "/events", params={"pipeline": 1}) as r:
            lines = r.aiter_lines()
            assert await lines.__anext__() == "retry: 3000"
            web.server.running.stop.set()
            start = trio.current_time()
            rest = [line async for line in lines]
        assert trio.current_time() - start < 5
        assert all(not line.startswith("data:") for line in rest)


async def test_a_demo_says_so_on_every_page(start_server: Any) -> None:
    from buildit.config import ServerConfig

    with trio.fail_after(30):
        plain = await start_server()
        r = await plain.client.get("/")
        assert r.status_code == 200 and "This is a demo" not in r.text
        base: ServerConfig = plain.config
        demo = await start_server(extra={**base.extra, "BUILDIT_DEMO": "1"})
        for path in ("/", "/pipelines", "/workers"):
            r = await demo.client.get(path)
            assert r.status_code == 200 and "This is a demo." in r.text
