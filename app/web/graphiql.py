"""GraphiQL served by the service itself, so it works without internet and under the CSP.

Its browser files come from the npm packages pinned in graphiql/package.json, installed by
./dev (`npm ci`) into graphiql/node_modules (not committed). Only the files listed here are
served, by name, so no request can reach any other file under that folder."""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

STATIC = Path(__file__).with_name("static")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "graphiql" / "node_modules"  # the repository's
ASSETS = {
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "graphiql.min.js": "graphiql/graphiql.min.js",
    "graphiql.min.css": "graphiql/graphiql.min.css",
}
# The versions are pinned, but a new install may change a file under the same name.
CACHE_CONTROL = "public, max-age=3600"

MISSING_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>GraphiQL is not installed</title>
<link rel="stylesheet" href="/static/styles.css"></head>
<body><main class="layout"><section class="card token-gate">
<h1>GraphiQL is not installed</h1>
<p>This service serves GraphiQL's files itself (so it works offline), but they have not been
installed in <code>{folder}</code>.</p>
<p>Install them from the project folder with <code>./dev graphiql</code> (runs
<code>npm ci</code> in <code>graphiql/</code>; needs Node.js and npm), then reload this page.</p>
<p>The API itself works without them: POST GraphQL to this address with
<code>Authorization: Bearer &lt;token&gt;</code>.</p>
</section></main></body>
</html>
"""


class GraphiQLAssets:
    def __init__(self, folder: str = "") -> None:
        self.folder = Path(folder) if folder else DEFAULT_DIR

    def installed(self) -> bool:
        return all((self.folder / path).is_file() for path in ASSETS.values())

    def page(self) -> Response:
        if not self.installed():
            return HTMLResponse(
                MISSING_PAGE.format(folder=html.escape(str(self.folder))), status_code=503
            )
        return FileResponse(STATIC / "graphiql.html", headers={"Cache-Control": "no-cache"})

    async def asset(self, request: Request) -> Response:
        path = ASSETS.get(request.path_params["name"])
        if path is None or not (self.folder / path).is_file():
            return PlainTextResponse("Not found", status_code=404)
        return FileResponse(self.folder / path, headers={"Cache-Control": CACHE_CONTROL})
