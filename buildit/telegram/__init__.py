"""The Telegram front end: a bot that builds, restarts and reports results.

Pieces (each with its own docstring):

- ``config``: ``BUILDIT_TELEGRAM_*`` settings; the front end is on when a token is set;
- ``commands``: reading updates and commands (pure);
- ``render``: every message the bot sends, as escaped, bounded Telegram HTML (pure);
- ``api``: the Bot API client and the outbox deliverer of the ``telegram`` channel;
- ``bot``: the actor that handles updates (commands, Restart buttons);
- ``webhook``: ``POST /api/telegram/webhook`` (secret, de-duplication, hand-off);
- ``cli``: ``buildit telegram set-webhook``;
- ``frontend``: builds all of it for ``server.py``.

Result messages are produced in the job-change transaction by
``buildit.db.telegram_queries.queue_job_results``.
"""
