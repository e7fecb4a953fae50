"""A local stand-in for the few Hub routes an upload uses, for tests without the network.

Routes (as huggingface_hub's client calls them): POST /api/repos/create, POST
/api/<type>s/<repo>/preupload/<rev> (every file "regular", with the stored file's git oid so that
the client can skip unchanged files), POST /api/<type>s/<repo>/commit/<rev> (NDJSON), POST
/api/<type>s/<repo>/branch/<branch>, GET /api/<type>s/<repo>/revision/<rev> (repo info), and POST
/api/validate-yaml (the client sends README.md's metadata there before a commit; this one checks that
the header parses as a YAML mapping and that a dataset's `configs` name data files). It keeps
every repo in memory and records each request's Authorization header, so tests can check what
arrived and that the token was sent only there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


def validate_card(content: str, repo_type: str) -> list[str]:
    """The checks this stand-in makes of a card's YAML header (the Hub makes many more)."""
    import yaml

    if not content.startswith("---\n"):
        return ["no YAML metadata header"]
    try:
        header = yaml.safe_load(content.split("---\n")[1])
    except yaml.YAMLError as error:
        return [f"YAML does not parse: {error}"]
    if not isinstance(header, dict):
        return ["metadata is not a mapping"]
    errors = []
    if repo_type == "dataset":
        for config in header.get("configs", []):
            if not config.get("data_files"):
                errors.append(f"config {config.get('config_name')!r} names no data_files")
    return errors


def git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Branch:
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


@dataclass
class Repo:
    repo_type: str
    private: bool
    branches: dict[str, Branch] = field(default_factory=lambda: {"main": Branch()})


class FakeHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.authorizations: list[str | None] = []
        self.validated: list[dict] = []
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_type: str, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)].branches[branch].files)

    def commits(self, repo_type: str, repo_id: str, branch: str = "main") -> list[dict]:
        return list(self.repos[(repo_type, repo_id)].branches[branch].commits)

    def _handler(hub):  # noqa: N805 - the closure's `hub` is the FakeHub
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status: int, body: dict | None = None):
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self):
                hub.authorizations.append(self.headers.get("Authorization"))
                hub.requests.append(f"{self.command} {self.path.split('?')[0]}")
                path = unquote(self.path.split("?")[0])
                match = re.match(
                    r"^/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit|branch|revision)/(.+)$", path
                )
                return path, match

            def do_POST(self):  # noqa: N802
                path, match = self._route()
                body = self._body()
                if path == "/api/validate-yaml":
                    payload = json.loads(body)
                    errors = validate_card(payload["content"], payload.get("repoType") or "model")
                    hub.validated.append({"repo_type": payload.get("repoType"), "errors": errors})
                    return self._reply(400 if errors else 200, {"errors": errors, "warnings": []})
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    repo_type = payload.get("type") or "model"
                    repo_id = (
                        f"{payload['organization']}/{payload['name']}"
                        if payload.get("organization")
                        else payload["name"]
                    )
                    key = (repo_type, repo_id)
                    prefix = "" if repo_type == "model" else f"{repo_type}s/"
                    url = f"{hub.endpoint}/{prefix}{repo_id}"
                    if key in hub.repos:  # the client reads the url from a 409 too
                        return self._reply(409, {"error": "You already created this repo", "url": url})
                    private = payload.get("visibility") == "private" or bool(payload.get("private"))
                    hub.repos[key] = Repo(repo_type, private)
                    return self._reply(200, {"url": url})
                if not match:
                    return self._reply(404, {"error": f"no route {path}"})
                plural, repo_id, action, revision = match.groups()
                repo = hub.repos.get((plural[:-1], repo_id))
                if repo is None:
                    return self._reply(404, {"error": "Repository not found"})
                if action == "branch":
                    repo.branches.setdefault(revision, Branch(dict(repo.branches["main"].files)))
                    return self._reply(200, {})
                branch = repo.branches.get(revision)
                if branch is None:
                    return self._reply(404, {"error": f"Invalid rev id: {revision}"})
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(
                        200,
                        {
                            "files": [
                                {
                                    "path": f["path"],
                                    "uploadMode": "regular",
                                    "shouldIgnore": False,
                                    "oid": git_oid(branch.files[f["path"]])
                                    if f["path"] in branch.files
                                    else None,
                                }
                                for f in files
                            ]
                        },
                    )
                # commit: NDJSON lines {key: header|file|deletedFile, value: {...}}
                changed = []
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        content = base64.b64decode(item["value"]["content"])
                        branch.files[item["value"]["path"]] = content
                        changed.append(item["value"]["path"])
                    elif item["key"] == "deletedFile":
                        branch.files.pop(item["value"]["path"], None)
                    elif item["key"] == "lfsFile":
                        return self._reply(400, {"error": "this test server takes regular files only"})
                oid = hashlib.sha1(f"{repo_id}{revision}{len(branch.commits)}".encode()).hexdigest()
                branch.commits.append({"oid": oid, "files": changed})
                prefix = "" if plural == "models" else f"{plural}/"
                return self._reply(
                    200, {"commitUrl": f"{hub.endpoint}/{prefix}{repo_id}/commit/{oid}", "commitOid": oid}
                )

            def do_GET(self):  # noqa: N802
                path, match = self._route()
                if not match or match.group(3) != "revision":
                    return self._reply(404, {"error": f"no route {path}"})
                plural, repo_id, _, revision = match.groups()
                repo = hub.repos.get((plural[:-1], repo_id))
                if repo is None or revision not in repo.branches:
                    return self._reply(404, {"error": "Repository not found"})
                branch = repo.branches[revision]
                return self._reply(
                    200,
                    {
                        "id": repo_id,
                        "sha": branch.head,
                        "private": repo.private,
                        "siblings": [{"rfilename": name} for name in sorted(branch.files)],
                    },  # fmt: skip
                )

        return Handler
