"""Sessions and forms of the web UI: cookie flags, CSRF, session rotation."""

from __future__ import annotations

from typing import Any

import trio

from tests.conftest import SHA
from tests.security.fixtures import Full, csrf_of

FORM = {"git_branch": "stable", "git_sha": SHA, "packages": "bash", "archs": "amd64"}


def _set_cookies(response: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    out = {}
    for header in response.headers.get_list("set-cookie"):
        out[header.split("=", 1)[0].strip()] = header
    return out


async def test_session_cookies_are_httponly_and_samesite(full: Full) -> None:
    with trio.fail_after(30):
        client = full.browser()
        r = await client.get("/login")
        assert r.status_code == 303
        r = await client.get(r.headers["location"] + "&login=alice")
        r = await client.get(r.headers["location"])
        assert r.status_code == 303, r.text
        cookies = _set_cookies(r)
        assert {"buildit_session", "buildit_auth"} <= set(cookies), cookies
        for name in ("buildit_session", "buildit_auth"):
            flags = [f.strip().lower() for f in cookies[name].split(";")]
            assert "httponly" in flags, cookies[name]
            assert "samesite=lax" in flags, cookies[name]
            assert "secure" not in flags  # the public URL is http: no Secure here


async def test_cookies_are_secure_behind_https(start_server: Any, full: Full) -> None:
    with trio.fail_after(30):
        extra = dict(full.server.config.extra)
        https = await start_server(public_url="https://buildit.example", extra=extra)
        r = await https.client.get("/login")
        assert r.status_code == 303
        cookie = _set_cookies(r)["buildit_session"]
        flags = [f.strip().lower() for f in cookie.split(";")]
        assert {"secure", "httponly", "samesite=lax"} <= set(flags), cookie


async def test_a_cross_site_form_is_refused_and_changes_nothing(full: Full) -> None:
    """What a page on another site can make a logged-in browser send: the cookies, the
    form, no CSRF token (it cannot read it)."""
    with trio.fail_after(30):
        browser = await full.login("alice")
        before = await full.rows()
        for headers in ({}, {"Origin": "https://evil.example",
                             "Referer": "https://evil.example/x"}):
            r = await browser.post("/pipelines/new", data=FORM, headers=headers)
            assert r.status_code == 403, r.text[:300]
            assert "CSRF" in r.text
            r = await browser.post("/pipelines/new", data=FORM,
                                   headers={**headers, "Accept": "application/json"})
            assert r.status_code == 403
            assert r.json()["error"].startswith("this form has expired")
        # the token in the query string does not count
        csrf = await full.csrf(browser)
        r = await browser.post("/pipelines/new", params={"csrf_token": csrf}, data=FORM)
        assert r.status_code == 403
        assert await full.rows() == before
        # with the token it works: the refusals above were for the token alone
        r = await browser.post("/pipelines/new", data={**FORM, "csrf_token": csrf})
        assert r.status_code == 303, r.text[:300]
        assert await full.rows() != before


async def test_login_rotates_the_session(full: Full) -> None:
    """A CSRF token (and session) from before the login is worthless after it."""
    with trio.fail_after(30):
        browser = full.browser()
        before_login = await full.csrf(browser)
        r = await browser.get("/login")
        r = await browser.get(r.headers["location"] + "&login=alice")
        r = await browser.get(r.headers["location"])
        assert r.status_code == 303
        after_login = await full.csrf(browser)
        assert after_login != before_login
        rows = await full.rows()
        r = await browser.post("/pipelines/new", data={**FORM, "csrf_token": before_login})
        assert r.status_code == 403
        assert await full.rows() == rows


async def test_logout_ends_the_session_in_the_browser(full: Full) -> None:
    with trio.fail_after(30):
        browser = await full.login("alice")
        csrf = await full.csrf(browser)
        r = await browser.post("/logout", data={"csrf_token": csrf})
        assert r.status_code == 303
        r = await browser.get("/account/token")
        assert "csrf-token" in r.text
        rows = await full.rows()
        r = await browser.post("/pipelines/new", data={**FORM, "csrf_token": csrf_of(r.text)})
        assert r.status_code == 403
        assert await full.rows() == rows


async def test_cookies_copied_before_logout_are_dead_after_it(full: Full) -> None:
    with trio.fail_after(30):
        browser = await full.login("alice")
        csrf = await full.csrf(browser)
        stolen = {c.name: c.value for c in browser.cookies.jar}
        r = await browser.post("/logout", data={"csrf_token": csrf})
        assert r.status_code == 303
        thief = full.browser()
        for name, value in stolen.items():
            thief.cookies.set(name, value)
        rows = await full.rows()
        r = await thief.post("/pipelines/new", data={**FORM, "csrf_token": csrf})
        assert r.status_code == 403, "the cookies of a logged-out session still work"
        assert await full.rows() == rows
        r = await thief.get("/account/token")
        assert "Log out" not in r.text  # the page shows no one logged in
        assert await full.db.read(_session_count) == 0


async def _session_count(conn: Any) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM web_sessions")
    return count


async def test_logout_ends_only_its_own_session(full: Full) -> None:
    """Alice logged in twice (two browsers); logging out in one leaves the other, and
    copies of the other's cookies, working."""
    with trio.fail_after(30):
        here = await full.login("alice")
        there = await full.login("alice")
        copy = full.browser()
        for cookie in here.cookies.jar:
            copy.cookies.set(cookie.name, cookie.value)
        csrf_here, csrf_there = await full.csrf(here), await full.csrf(there)
        assert await full.db.read(_session_count) == 2
        r = await there.post("/logout", data={"csrf_token": csrf_there})
        assert r.status_code == 303
        assert await full.db.read(_session_count) == 1
        for client in (here, copy):
            before = await full.rows()
            r = await client.post("/pipelines/new", data={**FORM, "csrf_token": csrf_here})
            assert r.status_code == 303, r.text[:300]
            assert await full.rows() != before


async def _expire_sessions(conn: Any) -> None:
    await conn.execute("UPDATE web_sessions SET expires_at = now() - interval '1 second'")


async def test_an_expired_session_is_refused_and_pruned_at_the_next_login(full: Full) -> None:
    with trio.fail_after(30):
        alice = await full.login("alice")
        csrf = await full.csrf(alice)
        await full.db.run(_expire_sessions)
        rows = await full.rows()
        r = await alice.post("/pipelines/new", data={**FORM, "csrf_token": csrf})
        assert r.status_code == 403, r.text[:300]
        assert await full.rows() == rows
        assert await full.db.read(_session_count) == 1
        # the next login (anyone's) deletes expired sessions
        gus = await full.login("gus")
        assert await full.db.read(_session_count) == 1
        r = await gus.get("/account/token")
        assert r.status_code == 200 and "Log out" in r.text


async def test_a_second_login_in_one_browser_ends_its_first_session(full: Full) -> None:
    with trio.fail_after(30):
        browser = await full.login("alice")
        first = {c.name: c.value for c in browser.cookies.jar}
        csrf = await full.csrf(browser)
        r = await browser.get("/login")
        r = await browser.get(r.headers["location"] + "&login=alice")
        r = await browser.get(r.headers["location"])
        assert r.status_code == 303
        assert await full.db.read(_session_count) == 1
        old = full.browser()
        for name, value in first.items():
            old.cookies.set(name, value)
        rows = await full.rows()
        r = await old.post("/pipelines/new", data={**FORM, "csrf_token": csrf})
        assert r.status_code == 403
        assert await full.rows() == rows
