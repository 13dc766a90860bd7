"""The Telegram actor: handles the updates the webhook took, one chat at a time.

The webhook answers Telegram as soon as an update is recorded (de-duplicated on
``update_id``) and handed to this actor with ``submit``. The actor runs a few workers,
each reading its own bounded inbox; an update goes to the inbox chosen by its chat,
so the commands of one chat are handled (and answered) in the order they came while
other chats go on in parallel.

Replies are rows in the outbox (channel ``telegram``, ordering key ``chat:<id>``),
delivered by the notifier; only the reply of ``/token`` is sent directly, because an
API token must not be stored anywhere in clear (the outbox keeps its payloads).

Who may act: a Telegram account is linked to a GitHub account by ``/login`` (the web
UI stores the person's Telegram user id, which is also the id of their private chat
with the bot, as ``users.telegram_chat_id``). Building and restarting need the
*sender* (``from.id``) to be linked to a Developer, in private chats and groups alike;
a group itself is never linked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio

from buildit import clock
from buildit.abbs import AbbsError
from buildit.db import queries, telegram_queries
from buildit.errors import DatabaseError, RequestError
from buildit.linking import make_link_token
from buildit.services import Services, hash_token
from buildit.telegram import render
from buildit.telegram.api import TelegramApi, TelegramApiError, TelegramError
from buildit.telegram.commands import (
    Callback,
    Command,
    Incoming,
    Message,
    UsageError,
    parse_build,
    parse_callback_data,
    parse_command,
    parse_no_args,
    parse_pr,
    parse_restart,
    parse_token,
)
from buildit.telegram.config import TelegramConfig
from buildit.telegram.pr import PrReader

log = logging.getLogger(__name__)
LINK_MAX_AGE = 900  # seconds a /login link is valid (read_link_token's default)
HANDLE_LIMIT = 120.0  # seconds one update may take
SUBMIT_WAIT = 10.0  # seconds the webhook waits for room in a full inbox


@dataclass(frozen=True)
class BotStatistics:
    handled: int
    failed: int
    queued: int


class TelegramBot:
    def __init__(
        self,
        services: Services,
        config: TelegramConfig,
        api: TelegramApi,
        *,
        pr_reader: PrReader | None = None,
        shards: int = 4,
        inbox_size: int = 16,
    ) -> None:
        self.services = services
        self.config = config
        self.api = api
        self.pr_reader = pr_reader
        self._inboxes = [trio.open_memory_channel[Incoming](inbox_size) for _ in range(shards)]
        self.handled = 0
        self.failed = 0
        self._commands: dict[str, Callable[[Message, Command], Awaitable[None]]] = {
            "help": self._help,
            "start": self._start,
            "build": self._build,
            "pr": self._pr,
            "status": self._status,
            "restart": self._restart,
            "login": self._login,
            "token": self._token,
        }

    # ------------------------------------------------------------ the actor

    async def submit(self, incoming: Incoming) -> bool:
        """Hand an update to its chat's worker; False when the inbox stayed full."""
        key = incoming.user_id if incoming.chat_id is None else incoming.chat_id
        send = self._inboxes[hash(key) % len(self._inboxes)][0]
        with trio.move_on_after(SUBMIT_WAIT):
            await send.send(incoming)
            return True
        return False

    def statistics(self) -> BotStatistics:
        queued = sum(recv.statistics().current_buffer_used for _, recv in self._inboxes)
        return BotStatistics(self.handled, self.failed, queued)

    async def run(self, *, task_status: trio.TaskStatus[TelegramBot] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Hold the HTTP clients open and handle updates until cancelled."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.api.open())
            if self.pr_reader is not None:
                await stack.enter_async_context(self.pr_reader.open())
            async with trio.open_nursery() as nursery:
                for _, recv in self._inboxes:
                    nursery.start_soon(self._work, recv)
                task_status.started(self)

    async def _work(self, inbox: trio.MemoryReceiveChannel[Incoming]) -> None:
        while True:
            incoming = await inbox.receive()
            await self.handle(incoming)

    async def handle(self, incoming: Incoming) -> None:
        """Act on one update; never raises (a failure is logged and, if possible, told)."""
        try:
            with trio.fail_after(HANDLE_LIMIT):
                if isinstance(incoming, Message):
                    await self._on_message(incoming)
                else:
                    await self._on_callback(incoming)
            self.handled += 1
        except Exception as exc:
            self.failed += 1
            log.error("Telegram update %d failed: %r", incoming.update_id, exc,
                      exc_info=not isinstance(exc, trio.TooSlowError | DatabaseError))
            text = ("That took too long; please try again later."
                    if isinstance(exc, trio.TooSlowError)
                    else "Sorry, something went wrong on my side; please try again later.")
            try:
                if isinstance(incoming, Message):
                    await self._reply(incoming, render.error_message(text), suffix="failure")
                else:
                    await self._answer(incoming, text, alert=True)
            except Exception:
                log.warning("could not tell the chat about the failure", exc_info=True)

    # ------------------------------------------------------------ helpers

    async def _reply(self, msg: Message, text: str, *, suffix: str = "reply") -> None:
        """Queue a message to the chat of ``msg`` (in groups, as a reply to it)."""
        outgoing = render.OutgoingMessage(
            chat_id=msg.chat_id, text=text, reply_to=None if msg.private else msg.message_id)
        await self.services.db.run(
            telegram_queries.enqueue_message, outgoing, clock.now(),
            dedup_key=f"telegram:update:{msg.update_id}:{suffix}")

    async def _answer(self, cb: Callback, text: str, *, alert: bool) -> None:
        await self.services.db.run(
            telegram_queries.enqueue_callback_answer, cb.callback_id, text, alert, clock.now(),
            dedup_key=f"telegram:update:{cb.update_id}:answer")

    async def _user(self, telegram_id: int | None) -> queries.User | None:
        if telegram_id is None:
            return None
        return await self.services.db.read(telegram_queries.user_by_telegram_id, telegram_id)

    async def _developer(self, msg: Message) -> queries.User | None:
        """The Developer who sent ``msg``; otherwise tell them why not and return None."""
        user = await self._user(msg.user_id)
        if user is None:
            await self._reply(msg, render.not_linked_message(self.config.bot_name, msg.private))
            return None
        if user.role != "developer":
            await self._reply(msg, render.not_developer_message(user.github_login))
            return None
        return user

    # ------------------------------------------------------------ messages

    async def _on_message(self, msg: Message) -> None:
        command = parse_command(msg.text, self.config.bot_name)
        if command is None:
            if msg.private and not msg.text.startswith("/"):
                await self._reply(msg, "I only understand commands. Send /help to see them.")
            return
        handler = self._commands.get(command.name)
        if handler is None:
            if msg.private or command.addressed:
                await self._reply(msg, f"I do not know /{render.escape(command.name)}. "
                                       "Send /help to see what I can do.")
            return
        try:
            await handler(msg, command)
        except UsageError as exc:
            await self._reply(msg, render.usage_message(exc.problem, exc.usage))
        except RequestError as exc:
            await self._reply(msg, render.error_message(exc.message))
        except AbbsError as exc:
            await self._reply(msg, render.error_message(
                f"the packages tree could not be read: {exc}"))

    async def _help(self, msg: Message, command: Command) -> None:
        await self._reply(msg, render.help_message(self.config.bot_name))

    async def _start(self, msg: Message, command: Command) -> None:
        """``/start``: help. ``/start login``: as /login (the deep link from a group).
        ``/start <anything else>``: back from the link page: is this account linked?"""
        if not command.args:
            await self._reply(msg, render.help_message(self.config.bot_name))
            return
        if command.args[0].lower() == "login":
            await self._login(msg, Command("login", (), command.addressed))
            return
        user = await self._user(msg.user_id)
        if user is None:
            await self._reply(msg, render.not_linked_after_start_message())
        else:
            await self._reply(msg, render.linked_message(user.github_login, user.role))

    async def _build(self, msg: Message, command: Command) -> None:
        args = parse_build(command.args)
        user = await self._developer(msg)
        if user is None:
            return
        created = await self.services.create_pipeline(
            git_branch=args.branch, packages=args.packages, archs=args.archs,
            source="telegram", telegram_chat_id=msg.chat_id, creator=user)
        await self._reply(msg, await self._created_message(created))

    async def _created_message(self, created: queries.CreatedPipeline, pr: int | None = None
                               ) -> str:
        info = await self.services.db.read(queries.pipeline_info, created.id)
        assert info is not None  # just created; pipelines are never deleted
        return render.pipeline_created_message(
            created.id, info["packages"], info["git_branch"], info["git_sha"], created.jobs,
            self.config.public_url, info["warnings"] or (), pr=pr)

    async def _pr(self, msg: Message, command: Command) -> None:
        args = parse_pr(command.args)
        user = await self._developer(msg)
        if user is None:
            return
        if self.pr_reader is None:
            await self._reply(msg, render.error_message(
                "/pr needs the GitHub integration, which this server does not have "
                "configured. Use /build <branch> <packages> [archs] instead."))
            return
        parts: list[str] = []
        for number in args.numbers:
            try:
                plan = await self.pr_reader.read_pr(number)
                created = await self.services.create_pipeline(
                    git_branch=plan.branch, git_sha=plan.sha, packages=plan.packages,
                    archs=args.archs, source="telegram", telegram_chat_id=msg.chat_id,
                    creator=user, github_pr=number)
                parts.append(await self._created_message(created, pr=number))
            except (RequestError, AbbsError) as exc:
                parts.append(render.error_message(f"PR #{number}: {exc}"))
        await self._reply(msg, render.truncate_html("\n\n".join(parts)))

    async def _status(self, msg: Message, command: Command) -> None:
        parse_no_args("status", command.args)
        svc = self.services
        now = clock.now()
        live_after = clock.ago(svc.config.heartbeat_timeout)
        rows = await svc.db.read(queries.queue_status, [*svc.config.archs, "noarch"],
                                 live_after)
        workers = await svc.db.read(telegram_queries.live_workers, live_after)
        queues = [render.QueueRow(r["arch"], r["pending"], r["running"], r["available"])
                  for r in rows]
        await self._reply(msg, render.status_message(queues, workers, now,
                                                     self.config.public_url))

    async def _restart(self, msg: Message, command: Command) -> None:
        job_id = parse_restart(command.args)
        user = await self._developer(msg)
        if user is None:
            return
        pipeline_id = await self.services.restart_job(job_id)
        await self._reply(msg, render.restarted_message(job_id, pipeline_id, user.github_login,
                                                        self.config.public_url))

    async def _login(self, msg: Message, command: Command) -> None:
        parse_no_args("login", command.args)
        if not msg.private or msg.user_id is None:
            await self._reply(msg, render.login_elsewhere_message(self.config.bot_name))
            return
        token = make_link_token(self.config.link_secret, msg.user_id, clock.now().timestamp())
        await self._reply(msg, render.login_message(
            render.link_url(self.config.public_url, token), LINK_MAX_AGE // 60))

    async def _token(self, msg: Message, command: Command) -> None:
        reset = parse_token(command.args)
        if not msg.private:
            await self._reply(msg, "For your safety, /token works in a private chat only.")
            return
        user = await self._user(msg.user_id)
        if user is None:
            await self._reply(msg, render.not_linked_message(self.config.bot_name, True))
            return
        db = self.services.db
        revoked = await db.run(telegram_queries.revoke_tokens, user.id) if reset else None
        token = await self.services.create_token(user.github_login)
        params = render.send_message_params(
            msg.chat_id, render.token_message(token, user.github_login, revoked))
        try:
            await self._send_now(params)
        except TelegramError as exc:
            # The token was never seen: take it back rather than leave it unknown.
            await db.run(telegram_queries.delete_token, hash_token(token))
            log.warning("could not send a new API token to %s: %s", user.github_login, exc)
            await self._reply(msg, render.error_message(
                "I could not send you the new token, so it was revoked; try /token again."
                + (" Your older tokens were revoked as asked." if reset else "")))
            return
        log.info("new API token for %s sent over Telegram%s", user.github_login,
                 " (older ones revoked)" if reset else "")

    async def _send_now(self, params: dict[str, object]) -> None:
        """Send directly (not through the outbox), waiting out one short 429."""
        try:
            await self.api.call("sendMessage", dict(params))
        except TelegramApiError as exc:
            if exc.retry_after is None or exc.retry_after > 30:
                raise
            await trio.sleep(exc.retry_after)
            await self.api.call("sendMessage", dict(params))

    # ------------------------------------------------------------ buttons

    async def _on_callback(self, cb: Callback) -> None:
        action = parse_callback_data(cb.data)
        if action is None:
            await self._answer(cb, "This button does nothing any more.", alert=False)
            return
        _, job_id = action
        user = await self._user(cb.user_id)
        if user is None or user.role != "developer":
            who = "" if user is None else f" ({user.github_login} is not one)"
            where = f"@{self.config.bot_name}" if self.config.bot_name else "me"
            await self._answer(cb, f"Only AOSC Developers who linked their Telegram account "
                                   f"can restart jobs{who}. Send /login to {where} in a "
                                   "private chat.", alert=True)
            return
        try:
            pipeline_id = await self.services.restart_job(job_id)
        except RequestError as exc:
            await self._answer(cb, exc.message, alert=True)
            return
        await self._answer(cb, f"Job #{job_id} restarted.", alert=False)
        if cb.chat_id is not None:
            outgoing = render.OutgoingMessage(
                chat_id=cb.chat_id,
                text=render.restarted_message(job_id, pipeline_id, user.github_login,
                                              self.config.public_url),
                reply_to=cb.message_id)
            await self.services.db.run(
                telegram_queries.enqueue_message, outgoing, clock.now(),
                dedup_key=f"telegram:update:{cb.update_id}:reply")
