"""The web UI in a real headless Chromium, logged in through the fake GitHub.

Few and bounded: each test has a ``trio.fail_after``. Screenshots of the main pages go
to ``screenshots/`` at the repository root for people to look at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import trio

from tests.conftest import SHA, ok_result
from tests.web.browser import SCREENSHOTS, Browser
from tests.web.conftest import Web
from tests.web.test_http import XSS, _insert_evil_pipeline

LIMIT = 60


def _expect(locator: Any) -> Any:
    from playwright.async_api import expect

    return expect(locator)


async def _login(browser: Browser, page: Any, web: Web, who: str) -> None:
    await browser(page.goto(web.url + "/pipelines"))
    await browser(page.get_by_role("link", name="Log in with GitHub").click())
    await browser(page.get_by_role("link", name=f"Sign in as {who}").click())
    await browser(page.wait_for_url(web.url + "/pipelines"))


async def _shot(browser: Browser, page: Any, name: str) -> None:
    await browser(page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True))


async def _mark(browser: Browser, page: Any) -> None:
    """A marker on the window: gone if the page reloads."""
    await browser(page.evaluate("window.__notReloaded = 42"))


async def _not_reloaded(browser: Browser, page: Any) -> bool:
    return bool(await browser(page.evaluate("window.__notReloaded === 42")))


async def test_developer_builds_follows_and_restarts(web: Web, browser: Browser) -> None:
    with trio.fail_after(LIMIT):
        page = await browser.new_page()
        dialogs: list[str] = []
        await browser.call(lambda: page.on("dialog", lambda d: dialogs.append(d.message)))
        await _login(browser, page, web, "alice")
        await browser(_expect(page.locator(".account .role")).to_have_text("Developer"))
        await web.heartbeat("w1", "amd64")
        await web.wait_worker("w1")

        # the form: a pipeline for amd64
        await browser(page.get_by_role("link", name="New pipeline").first.click())
        await browser(page.get_by_label("Branch of aosc-os-abbs").fill("stable"))
        await browser(page.get_by_label("Packages").fill("bash, zlib"))
        await browser(page.get_by_label("amd64", exact=True).check())
        await browser(page.get_by_label(re.compile("^Commit")).fill(SHA))
        await _shot(browser, page, "new_pipeline")
        await browser(page.get_by_role("button", name="Start the build").click())
        await browser(page.wait_for_url(re.compile(r".*/pipelines/\d+$")))
        pid = int(page.url.rsplit("/", 1)[1])
        info = (await web.server.client.get("/api/pipeline/info",
                                             params={"pipeline_id": pid})).json()
        assert info["creator_github_login"] == "alice" and info["packages"] == "bash,zlib"
        job_id = info["jobs"][0]["job_id"]
        chip = page.locator(f'#live .chip[data-job-id="{job_id}"] .label')
        await browser(_expect(chip).to_have_text("pending"))
        await browser(_expect(page.locator("#live .reason")).to_contain_text(
            "waiting for an idle amd64 worker"))
        await _mark(browser, page)

        # a worker takes it, the chip follows without a reload
        job = await web.poll("w1", "amd64")
        assert job["job_id"] == job_id
        await browser(_expect(chip).to_have_text("running"))
        await browser(_expect(page.locator("#live .job-head")).to_contain_text("on w1"))
        await _shot(browser, page, "pipeline_running")
        assert await _not_reloaded(browser, page)

        # the job page follows the log as it is uploaded
        await browser(page.locator(f'#live a[href="/jobs/{job_id}"]').first.click())
        await browser(page.wait_for_url(f"{web.url}/jobs/{job_id}"))
        await _mark(browser, page)
        log = page.locator("pre.log")
        first = b"\x1b[1;32m==> Building bash\x1b[0m\n" + XSS.encode() + b"\n"
        size = await web.upload_log(job, 0, first)
        await browser(_expect(log.locator("span.fg2.b")).to_have_text("==> Building bash"))
        await browser(_expect(log).to_contain_text(XSS))
        size = await web.upload_log(job, size, "\x1b[33mwarning:\x1b[0m ünïcode ok\n".encode())
        await browser(_expect(log.locator("span.fg3")).to_have_text("warning:"))
        await browser(_expect(log).to_contain_text("ünïcode ok"))
        # an escape sequence and a UTF-8 character cut between two reads of the log
        for chunk in (b"\x1b[3", b"1mred\x1b[0m caf\xc3", b"\xa9\n"):
            size = await web.upload_log(job, size, chunk)
            # (wait_for_function would need 'unsafe-eval', which the CSP refuses)
            while await browser(page.evaluate("window.BuildIt.logOffset()")) != size:
                await trio.sleep(0.05)
        await browser(_expect(log.locator("span.fg1")).to_have_text("red"))
        await browser(_expect(log).to_contain_text("red café"))
        await web.report(job, ok_result("bash", "zlib"))
        status = page.locator(".job-status h2 .chip .label")
        await browser(_expect(status).to_have_text("success"))
        await browser(_expect(page.locator("#live")).to_contain_text("Build time"))
        assert await _not_reloaded(browser, page)
        await _shot(browser, page, "job_success")

        # a failed job: the Developer restarts it with the button
        token = await web.server.add_user("alice")
        pid2 = await web.api_pipeline(token, packages="zlib")
        job2 = await web.poll("w1", "amd64")
        await web.report(job2, ok_result(build_success=False, failed="zlib"))
        await browser(page.goto(f"{web.url}/jobs/{job2['job_id']}"))
        await browser(_expect(status).to_have_text("failed"))
        await _shot(browser, page, "job_failed")
        await browser(page.get_by_role("button", name="Restart job").click())
        await browser(_expect(page.locator(".flash")).to_contain_text("restarted"))
        await browser(_expect(status).to_have_text("pending"))
        await _mark(browser, page)
        again = await web.poll("w1", "amd64")
        assert again["job_id"] == job2["job_id"] and again["attempt"] == 2
        await browser(_expect(status).to_have_text("running"))
        assert await _not_reloaded(browser, page)

        # the list shows both pipelines, its chips live as well
        await browser(page.goto(f"{web.url}/pipelines"))
        row_chip = page.locator(f'tr[data-pipeline-id="{pid2}"] .chip[data-job-id] .label')
        await browser(_expect(row_chip).to_have_text("running"))
        await web.report(again, ok_result("zlib"))
        await browser(_expect(row_chip).to_have_text("success"))
        await browser(_expect(page.locator(f'tr[data-pipeline-id="{pid2}"] .pstatus .label'))
                      .to_have_text("success"))
        await _shot(browser, page, "pipelines")
        assert dialogs == []


async def _seed_history(conn: Any) -> None:
    """Two weeks of finished jobs on three archs, for the dashboard's charts."""
    now = datetime.now(UTC)
    for day in range(14):
        for arch, count, base in (("amd64", 6 + day % 4, 300), ("arm64", 3 + day % 3, 700),
                                  ("riscv64", 1 + day % 2, 2400)):
            for n in range(count):
                at = now - timedelta(days=day, hours=1 + n)
                status = "failed" if n == 0 and day % 3 == 0 else "success"
                pipeline_id = await conn.fetchval(
                    """INSERT INTO pipelines (git_branch, git_sha, packages, archs, source,
                              created_at, status, finished_at)
                       VALUES ('stable', $1, $2, $3, 'api', $4, $5, $4) RETURNING id""",
                    SHA, f"pkg{n}", arch, at, status,
                )
                await conn.execute(
                    """INSERT INTO jobs (pipeline_id, arch, packages, status, created_at,
                              finished_at, elapsed_secs, build_success, pushpkg_success)
                       VALUES ($1, $2, $3, $4, $5, $5, $6, $7, true)""",
                    pipeline_id, arch, f"pkg{n}", status, at,
                    base * (1 + (n * 7 + day) % 5), status == "success",
                )
    for name, version in (("bash", "5.2.15"), ("zlib", "1.3.1"), ("linux-kernel", "6.9.3")):
        for arch in ("amd64", "arm64", "riscv64"):
            await conn.execute(
                """INSERT INTO packages (name, arch, version, last_result, updated_at)
                   VALUES ($1, $2, $3, $4, $5)""",
                name, arch, version, "failed" if (name, arch) == ("zlib", "riscv64")
                else "success", now - timedelta(hours=5),
            )


async def _post_as_browser(browser: Browser, page: Any, web: Web, job_id: int,
                           refusal: str) -> None:
    """POST the forms directly with the page's own cookies and CSRF token: 403."""
    before = (await web.server.counts())["pipelines"]
    csrf = await browser(page.locator('meta[name="csrf-token"]').get_attribute("content"))
    cookies = {c["name"]: c["value"] for c in await browser(page.context.cookies())}
    assert "buildit_session" in cookies
    async with httpx.AsyncClient(base_url=web.url, cookies=cookies) as client:
        form = {"git_branch": "stable", "packages": "bash", "archs": "amd64",
                "git_sha": SHA, "csrf_token": csrf}
        r = await client.post("/pipelines/new", data=form)
        assert r.status_code == 403 and refusal in r.text, r.text
        r = await client.post(f"/jobs/{job_id}/restart", data={"csrf_token": csrf})
        assert r.status_code == 403
        # the same cookies and token pass the CSRF check: only the role stops them
        r = await client.post("/account/token", data={"csrf_token": csrf})
        assert r.status_code == (200 if "buildit_auth" in cookies else 403)
    assert (await web.server.counts())["pipelines"] == before


async def test_guest_and_anonymous_read_only(web: Web, browser: Browser) -> None:
    with trio.fail_after(LIMIT):
        await web.db.run(_seed_history)
        pid, job_id = await web.db.run(_insert_evil_pipeline)
        for host, arch in (("builder-amd64-1", "amd64"), ("builder-arm64-1", "arm64"),
                           ("sifive-unmatched", "riscv64")):
            await web.heartbeat(host, arch)
            await web.wait_worker(host)
        page = await browser.new_page()
        dialogs: list[str] = []
        await browser.call(lambda: page.on("dialog", lambda d: dialogs.append(d.message)))

        # Anonymous: everything readable, no action anywhere
        await browser(page.goto(web.url + "/"))
        await browser(_expect(page.locator("figure.chart svg rect").first).to_be_visible())
        await _shot(browser, page, "dashboard")
        await browser(page.goto(f"{web.url}/pipelines/{pid}"))
        await browser(_expect(page.locator("dd .pkgs")).to_have_text(XSS))
        await browser(_expect(page.locator("#live .error-text")).to_have_text(XSS))
        await browser(_expect(page.get_by_role("button", name="Restart")).to_have_count(0))
        await browser(_expect(page.get_by_role("button", name="Cancel pipeline"))
                      .to_have_count(0))
        for path, name in (("/packages", "packages"), ("/workers", "workers")):
            await browser(page.goto(web.url + path))
            await _shot(browser, page, name)
        await browser(_expect(page.get_by_role("row", name=re.compile("sifive-unmatched")))
                      .to_contain_text("live"))
        await _post_as_browser(browser, page, web, job_id, "log in with GitHub first")

        # a Guest: no buttons either; the server refuses the form even with a valid token
        await _login(browser, page, web, "bob")
        await browser(_expect(page.locator(".account .role")).to_have_text("Guest"))
        await browser(page.goto(f"{web.url}/jobs/{job_id}"))
        await browser(_expect(page.get_by_role("button", name="Restart job")).to_have_count(0))
        assert await browser(page.get_by_role("link", name="New pipeline").count()) == 0
        await _post_as_browser(browser, page, web, job_id, "bob is a Guest")
        # ... a Guest may have an API token
        await browser(page.goto(f"{web.url}/account/token"))
        await browser(page.get_by_role("button", name=re.compile("token")).click())
        value = await browser(page.locator("#new-token").input_value())
        assert value.startswith("bit_")
        await _shot(browser, page, "token")

        # on a phone
        phone = await browser.new_page(mobile=True)
        await browser(phone.goto(web.url + "/"))
        await _shot(browser, phone, "phone_dashboard")
        await browser(phone.goto(f"{web.url}/pipelines"))
        await _shot(browser, phone, "phone_pipelines")
        await browser(phone.goto(f"{web.url}/jobs/{job_id}"))
        await _shot(browser, phone, "phone_job")
        width = await browser(phone.evaluate("document.documentElement.scrollWidth"))
        assert width <= 390, f"the page is wider than the phone: {width}px"
        assert dialogs == []
