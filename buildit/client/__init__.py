"""``buildit pipeline ...`` / ``buildit job ...``: a command-line client of the HTTP API.

- ``config``: where the server URL and the API token come from (flags, environment,
  ``~/.config/buildit/client.toml``);
- ``api``: the HTTP API as methods returning JSON values, failing with ``ApiError``;
- ``render``: pure formatting of pipelines and jobs (tables, change lines);
- ``follow``: following a pipeline live until it ends;
- ``cli``: the subcommands, registered on the ``buildit`` parser.

Exit statuses: 0 done (a followed pipeline succeeded), 1 a followed pipeline failed
or errored, 2 the request failed (the server's ``error`` message is printed).
"""
