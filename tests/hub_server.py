"""A local stand-in for the few Hub routes an upload uses, for tests without the network.

Upload routes (as huggingface_hub's client calls them): POST /api/repos/create, POST
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
from urllib.parse import parse_qs, unquote

# Download routes: files (GET and HEAD, ranges), repo info by branch or commit, folder listings, paths-info.
RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
TREE = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$")
INFO = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/([^/]+))?$")
PATHS_INFO = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/paths-info/([^/]+)$")


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

            def _reply(self, status: int, body: dict | list | None = None):
                data = json.dumps(body if body is not None else {}).encode()
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
                paths_info = PATHS_INFO.match(path)
                if paths_info:
                    plural, repo_id, revision = paths_info.groups()
                    _, branch = self._branch(plural, repo_id, revision)
                    if branch is None:
                        return self._missing("RevisionNotFound", f"no revision {revision} of {repo_id}")
                    asked = parse_qs(body.decode()).get("paths") or json.loads(body or b"{}").get("paths", [])
                    found = []
                    for name in asked:
                        if name in branch.files:
                            content = branch.files[name]
                            found.append(
                                {"type": "file", "path": name, "size": len(content), "oid": git_oid(content)}
                            )
                        elif any(f.startswith(name.rstrip("/") + "/") for f in branch.files):
                            found.append({"type": "directory", "path": name, "oid": "0" * 40})
                    return self._reply(200, found)
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
                download = RESOLVE.match(path)
                if download:
                    return self._file(*download.groups(), body=True)
                tree = TREE.match(path)
                if tree:
                    return self._tree(*tree.groups())
                info = INFO.match(path)
                if info:
                    plural, repo_id, revision = info.groups()
                    return self._info(plural, repo_id, revision or "main")
                if not match or match.group(3) != "revision":
                    return self._reply(404, {"error": f"no route {path}"})
                plural, repo_id, _, revision = match.groups()
                return self._info(plural, repo_id, revision)

            def do_HEAD(self):  # noqa: N802
                path, _ = self._route()
                download = RESOLVE.match(path)
                if not download:
                    return self._reply(404, {"error": f"no route {path}"})
                return self._file(*download.groups(), body=False)

            def _branch(self, plural: str, repo_id: str, revision: str):
                """A branch by name or by a commit id it has had (clients pin the sha they saw)."""
                repo = hub.repos.get((plural[:-1] if plural else "model", repo_id))
                if repo is None:
                    return None, None
                if revision in repo.branches:
                    return repo, repo.branches[revision]
                for branch in repo.branches.values():
                    if any(c["oid"] == revision for c in branch.commits):
                        return repo, branch
                return repo, None

            def _missing(self, code: str, message: str):
                data = json.dumps({"error": message}).encode()
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _info(self, plural: str, repo_id: str, revision: str):
                repo, branch = self._branch(plural, repo_id, revision)
                if branch is None:
                    return self._missing("RepoNotFound", "Repository not found")
                return self._reply(
                    200,
                    {
                        "id": repo_id,
                        "sha": branch.head,
                        "private": repo.private,
                        "siblings": [
                            {"rfilename": name, "size": len(content)}
                            for name, content in sorted(branch.files.items())
                        ],
                    },  # fmt: skip
                )

            def _file(self, prefix, repo_id: str, revision: str, name: str, body: bool):
                plural = (prefix or "").rstrip("/")
                _, branch = self._branch(plural, repo_id, revision)
                if branch is None:
                    return self._missing("RevisionNotFound", f"no revision {revision} of {repo_id}")
                if name not in branch.files:
                    return self._missing("EntryNotFound", f"{name} not in {repo_id}@{revision}")
                content = branch.files[name]
                status, start, end = 200, 0, len(content)
                wanted = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                if wanted:
                    status, start = 206, int(wanted.group(1))
                    end = min(len(content), int(wanted.group(2)) + 1) if wanted.group(2) else len(content)
                self.send_response(status)
                self.send_header("X-Repo-Commit", branch.head)
                self.send_header("ETag", f'"{git_oid(content)}"')
                self.send_header("Content-Length", str(end - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(content)}")
                self.end_headers()
                if body:
                    self.wfile.write(content[start:end])

            def _entries(self, branch, folder: str, recursive: bool) -> list[dict]:
                prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
                entries, folders = [], set()
                for name, content in sorted(branch.files.items()):
                    if not name.startswith(prefix):
                        continue
                    rest = name[len(prefix) :].split("/")
                    for depth in range(1, len(rest)):
                        if recursive or depth == 1:
                            folders.add(prefix + "/".join(rest[:depth]))
                    if recursive or len(rest) == 1:
                        entries.append(
                            {"type": "file", "path": name, "size": len(content), "oid": git_oid(content)}
                        )
                entries += [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)]
                return entries

            def _tree(self, plural: str, repo_id: str, revision: str, folder: str | None):
                _, branch = self._branch(plural, repo_id, revision)
                if branch is None:
                    return self._missing("RevisionNotFound", f"no revision {revision} of {repo_id}")
                recursive = "recursive=true" in self.path or "recursive=True" in self.path
                entries = self._entries(branch, folder or "", recursive)
                if folder and not entries:
                    return self._missing("EntryNotFound", f"{folder} not in {repo_id}@{revision}")
                return self._reply(200, entries)

        return Handler
