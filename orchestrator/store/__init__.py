"""The store room: a sweep's folder on disk and the state of its runs, read from files only.

    orchestrator.store            the sweep folder (store.folder): layout, snapshots, manifest
    orchestrator.store.run_ids    which folder holds which planned run (folders named by older id rules)
    orchestrator.store.run_states what each run's status.json says (through trainers.contract):
                                  what `submit` and `status` decide on

`launch` asks the store, never `results`; `results` reads rows and tables beside it. Torch-free.
"""

from orchestrator.store.folder import (
    MANIFEST_FILE,
    RUN_IDS_FILE,
    SNAPSHOT_HASH,
    SUBMITIT_DIR,
    SWEEP_FILE,
    ManifestError,
    archive,
    foreign_snapshot,
    forget_submissions,
    load_manifest,
    manifest_problem,
    prepare,
    read_manifest,
    record_array,
    run_path,
    snapshot_problem,
    submissions,
    sweep_root,
    timestamp,
    write_config,
    write_snapshot,
)

__all__ = [
    "MANIFEST_FILE",
    "RUN_IDS_FILE",
    "SNAPSHOT_HASH",
    "SUBMITIT_DIR",
    "SWEEP_FILE",
    "ManifestError",
    "archive",
    "foreign_snapshot",
    "forget_submissions",
    "load_manifest",
    "manifest_problem",
    "prepare",
    "read_manifest",
    "record_array",
    "run_path",
    "snapshot_problem",
    "submissions",
    "sweep_root",
    "timestamp",
    "write_config",
    "write_snapshot",
]
