"""Stage 07, the uploads: a folder to a Hub repo (or a branch), checkpoints to revision branches
during training in the background, and loading a published dataset back. The token comes from the
Hugging Face login or HF_TOKEN and is only ever handed to `HfApi`: nothing here prints, logs or
writes it."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from transformers import TrainerCallback

from .cards import HubError, check_repo_id
from .export import check_export, copy_model_files

# Imported inside the functions that use them (heavy or optional): datasets, huggingface_hub.

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Push
# ----------------------------------------------------------------------------------------------


def push_folder(
    folder,
    repo_id: str,
    repo_type: str = "dataset",
    private: bool = True,
    revision: str | None = None,
    commit_message: str = "Upload with codesift",
    dry_run: bool = False,
    background: bool = False,
) -> dict:
    """Create the repo (if needed) and the branch `revision` (if given), then upload the folder in
    one commit. A push of unchanged files is a no-op (the Hub client compares file hashes). With
    `dry_run`, only lists what would be uploaded. With `background`, the upload runs in the Hub
    client's worker thread and the result holds its `future` (the folder must outlive it). The
    token: the HF login or HF_TOKEN."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    if repo_type not in ("dataset", "model"):
        raise HubError(f"repo_type must be dataset or model, got {repo_type!r}")
    files = check_export(folder, repo_type)
    plan = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision or "main", "files": files}
    if dry_run:
        return {**plan, "dry_run": True}
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    upload = dict(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, revision=revision,
                  commit_message=commit_message)  # fmt: skip
    if background:
        return {**plan, "future": api.upload_folder(**upload, run_as_future=True)}
    commit = api.upload_folder(**upload)
    logger.info(
        "pushed %d files to %s %s@%s: %s", len(files), repo_type, repo_id, plan["revision"], commit.commit_url
    )
    return {**plan, "commit_url": commit.commit_url, "commit": commit.oid}


def load_published_dataset(name_or_path: str, split: str = "train", streaming: bool = False):
    """A published filtered dataset, from the Hub (`<org>/<name>`) or an export folder.

    An export folder is read through the parquet builder with its files named: `load_dataset(folder)`
    caches a folder's dataset under the folder's NAME, so two exports both called `dataset/` would
    share (stale) features in streaming mode (seen with datasets 5.2)."""
    from datasets import load_dataset

    folder = Path(name_or_path)
    if not folder.is_dir():
        return load_dataset(name_or_path, split=split, streaming=streaming)
    files = sorted(str(p) for p in folder.glob("data/*.parquet"))
    if not files:
        raise HubError(f"{folder} has no data/*.parquet")
    return load_dataset("parquet", data_files={split: files}, split=split, streaming=streaming)


# ----------------------------------------------------------------------------------------------
# Pushing checkpoints during training, to revision branches (as open-r1 does)
# ----------------------------------------------------------------------------------------------


class PushRevisionCallback(TrainerCallback):
    """On every save, push the checkpoint's model files to branch `step-<global step, 6 digits>` of
    `repo_id`, as open-r1's push-revision callback does (recipe: `callbacks: [push_to_hub_revision]`,
    `callback_kwargs: {push_to_hub_revision: {repo_id: org/name}}`). Optimizer state stays local.

    The upload runs in the background from a staging copy, so training goes on while it uploads
    (and a later save cannot change what is being sent); the end of training waits for every upload
    and raises if one failed."""

    def __init__(self, repo_id: str, private: bool = True, branch_format: str = "step-{step:06d}"):
        self.repo_id = check_repo_id(repo_id)
        self.private = private
        self.branch_format = branch_format
        self.pushed: list[str] = []  # branches whose upload finished
        self.pending: list[tuple[str, object, str]] = []  # (branch, future, staging folder)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        branch = self.branch_format.format(step=state.global_step)
        staging = Path(tempfile.mkdtemp(prefix="codesift-push-"))
        copy_model_files(checkpoint, staging)
        (staging / "README.md").write_text(
            f"---\nlibrary_name: transformers\ntags: [codesift, checkpoint]\n---\n# {self.repo_id} at step "
            f"{state.global_step}\n\nA pretraining checkpoint pushed by codesift's PushRevisionCallback "
            f"(branch `{branch}`).\n"
        )
        push = push_folder(staging, self.repo_id, "model", self.private, branch,
                           f"checkpoint at step {state.global_step}", background=True)  # fmt: skip
        self.pending.append((branch, push["future"], str(staging)))

    def wait(self) -> list[str]:
        """Block until every upload started so far is done; returns the branches pushed."""
        failed = []
        while self.pending:
            branch, future, staging = self.pending.pop(0)
            try:
                future.result()
                self.pushed.append(branch)
            except Exception as error:  # every upload is waited for before reporting
                failed.append(f"{branch}: {error}")
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if failed:
            raise HubError(f"checkpoint upload(s) to {self.repo_id} failed: {'; '.join(failed)}")
        return self.pushed

    def on_train_end(self, args, state, control, **kwargs):
        self.wait()
