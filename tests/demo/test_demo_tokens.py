"""`syncstatus demo` restarted does not pile up tokens: each start revokes the viewer token the
previous one printed before printing a new one."""

from __future__ import annotations

import re

from tests.api import Api
from tests.demo.test_demo import demo_api
from tests.server import cli, run_server, sqlite_database

VIEWER = "{ viewer { tenantName tokenName role } }"


async def test_restarting_the_demo_twice_leaves_one_usable_demo_token() -> None:
    printed: list[Api] = []
    with sqlite_database() as url:
        for _ in range(3):  # the first start, then two restarts
            with run_server(url, command="demo", args=["--users", "5", "--no-simulator"]) as server:
                api = demo_api(server)
                found = (await api.execute(VIEWER))["viewer"]
                assert found == {"tenantName": "Demo", "tokenName": "demo page", "role": "VIEWER"}
                for earlier in printed:
                    earlier = Api(server.graphql_url, server.ws_url, earlier.token)
                    assert await earlier.error_code(VIEWER) == "UNAUTHENTICATED"
                printed.append(api)
        header, *rows = cli(url, "token", "list", "--tenant", "Demo").strip().splitlines()
    columns = re.split(r"\s{2,}", header)
    tokens = [dict(zip(columns, re.split(r"\s{2,}", row), strict=True)) for row in rows]
    assert [t["name"] for t in tokens] == ["demo page"] * 3
    assert [t["revoked"] == "-" for t in tokens] == [True, False, False]  # newest first
    assert len({t.token for t in printed}) == 3
