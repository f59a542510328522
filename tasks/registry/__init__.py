"""DVC versioning of the collection: register, publish, pull.

Design
------
The data folders are *directory outputs of the `collect` stage* in
`dvc.yaml` (`datasets/shards` and `datasets/specialists`, taken from
params.yaml), not one `.dvc` file per song:

- register = `dvc commit --force collect`: DVC hashes what is new (its state
  database remembers the hashes of unchanged files), copies new files into
  the cache, writes one `.dir` object per output (the list of every file and
  its md5) and records its hash in `dvc.lock`. One git-tracked file, however
  many songs.
- pull = read that `.dir` as of a git revision and download only the files
  under the requested song folders. DVC does this natively for a path inside
  a directory output: `dvc.api.DVCFileSystem(repo, rev=vN).get(
  "datasets/shards/<song>")` fetches the (small) `.dir` object and then only
  that song's files, from the local cache when they are there and from the
  remote otherwise. It works in a fresh clone with an empty cache, and
  without checking out vN (the DVC CLI's `dvc pull` has no `--rev`).
- Why not `dvc add` per song: DVC forbids a `.dvc` file inside a stage
  output (overlapping outputs), so the pipeline could not declare its
  outputs; a 2,000-song collection would mean 2,000 `.dvc` files and 2,000
  `.gitignore` lines to keep in step; and a song deleted on disk would leave
  a stale `.dvc` file behind. Per-song granularity is still there on read.

Each operation, in order:

- `register(repo)`: takes the registry lock (below), configures the remote
  if none is set, runs `dvc commit --force` on the `collect` stage (or on the
  given output paths), then checks that every output is still git-ignored
  and restores the line if not. Returns what changed, per output and per
  top-level folder (songs for the shards, chunks for the specialists).
- `publish(repo, "vN")`: refuses a tag that exists (before doing anything),
  registers, pushes the data (`dvc push`), commits only the DVC metadata
  (`dvc.yaml`, `dvc.lock`, `params.yaml`, `.dvcignore`, `.dvc/config`, the
  `.gitignore` files next to the outputs; the user's other staged changes are
  left alone) and creates the annotated tag. Data is pushed *before* the
  commit and tag, so a tag never names data the remote lacks; a failed push
  leaves no tag. Publishing with nothing new makes no commit and tags HEAD.
- The `catalog` and `stats` stages are recorded by whoever produces them:
  `register(repo, [reports_dir])` commits the stage owning that path (a
  path inside an output names its stage); `publish` pushes and commits
  everything `dvc.lock` records.
- `pull(repo, "vN", songs)`: resolves vN with git (error naming it), lists
  the song folders recorded at vN (error naming missing songs), downloads
  each into a hidden staging folder next to its destination and renames it
  into place, so a song appears complete or not at all. A song whose local
  `manifest.json` already equals vN's (the manifest holds the sha256 of
  every file) and whose files are complete is not downloaded again.

Pitfalls handled:

- Concurrent writers: DVC's own repository lock makes a second command
  fail after a few seconds rather than wait. Every operation here (pull
  too: it writes into the tree a register reads) holds an exclusive
  `fcntl.flock` on `.dvc/tmp/pianoset-register.lock` (`registry_lock`), so
  two flows register one after the other. The lock is per open file, so two
  threads of one process also serialize; it is not re-entrant.
- Half-written folders: collection writes a song into a hidden staging
  folder and renames it (tasks/rlds.py); `.dvcignore` keeps those
  (`.*.staging-*`, `.*.old-*`, `.*.tmp*`, pulls' `.*.pull-*`, orbax
  `*.orbax-checkpoint-tmp-*`) out of every data version.
- `.gitignore` lines lost: after every operation each output is checked with
  `git check-ignore` and its line (`/shards` in `datasets/.gitignore`, the
  form DVC writes) is put back if missing.
- Prompts: commits are forced (`dvc commit --force`); git runs with stdin
  closed and `GIT_TERMINAL_PROMPT=0`.

DVC is driven in-process through `dvc.repo.Repo` (the calls its CLI commands
make: `Repo.init`, `.commit(target, force=True)`, `.push(remote=...)`,
`Config.edit`), which saves a 1-3 s interpreter start per call and returns
counts instead of text; DVC takes its own repository lock inside each call.
git is driven through its CLI.

Remote
------
`ensure_dvc` leaves a default remote alone when the repository already has
one (e.g. a shared S3 remote committed in `.dvc/config`). Otherwise it
writes one into `.dvc/config.local` (untracked: per clone, per machine):
name from params.yaml `dvc.remote_name`, URL from, in order, the
`remote_url` argument, the env var `PIANOSET_DVC_REMOTE`, params.yaml
`dvc.remote_url` (default `~/.cache/pianoset/dvc-remote`, `~` expanded
there, a relative path taken from the repository root). An explicit
argument or the env var always wins, even over a committed remote. So a
fresh clone on the same machine, or a CI job with `PIANOSET_DVC_REMOTE`,
pulls with no setup.

S3-compatible storage (needs `pip install dvc-s3`; NOT tested here, this
environment has no S3 client or endpoint)::

    dvc remote add -d storage s3://my-bucket/pianoset        # shared: .dvc/config
    dvc remote modify storage endpointurl https://minio.example.org
    dvc remote modify --local storage access_key_id ...       # secrets: config.local
    dvc remote modify --local storage secret_access_key ...

Caveats
-------
- `pull` writes vN's song folders into the working tree. If HEAD records
  other content for them, `dvc status` shows them modified and a later
  `register` records them: pull into a clean clone, or pass `out_dir`.
- `register(paths=[song folder])` commits the whole output that holds it
  (DVC has no partial commit of a directory output); unchanged files cost a
  stat, not a re-hash.
- The cache copies data (DVC's default link type). For a large collection,
  `dvc config --local cache.type reflink,hardlink,copy` saves the second
  copy: safe for shards (always replaced by rename, never edited in place),
  not for files a tool rewrites in place (matplotlib reports).
"""

from tasks.registry.api import ensure_dvc, publish, pull, register, registry_lock
from tasks.registry.dvc import COLLECT_STAGE, LOCK_NAME, METADATA_FILES, REMOTE_ENV, RegistryError
from tasks.registry.pull import list_versions

__all__ = [
    "COLLECT_STAGE", "LOCK_NAME", "METADATA_FILES", "REMOTE_ENV", "RegistryError", "ensure_dvc", "list_versions",
    "publish", "pull", "register", "registry_lock",
]
