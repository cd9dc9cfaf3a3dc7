-- The first schema: delta keys, workloads, and their files. Report text is stored as
-- UTF-8 bytes (BLOB), paths as bytes, labels/comms/coverage as ASCII JSON text.
CREATE TABLE deltas (
    idempotency_key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    received_at REAL NOT NULL
);

CREATE TABLE workloads (
    id INTEGER PRIMARY KEY,
    origin BLOB NOT NULL,
    workload_id BLOB NOT NULL,
    name BLOB NOT NULL DEFAULT x'',
    workload_key BLOB NOT NULL DEFAULT x'',
    container_id BLOB NOT NULL DEFAULT x'',
    cgroup_path BLOB NOT NULL DEFAULT x'',
    image_ref BLOB NOT NULL DEFAULT x'',
    image_digest BLOB NOT NULL DEFAULT x'',
    pod_name BLOB NOT NULL DEFAULT x'',
    namespace BLOB NOT NULL DEFAULT x'',
    labels TEXT NOT NULL DEFAULT '{}',
    started_at REAL NOT NULL DEFAULT 0,
    last_updated_at REAL NOT NULL DEFAULT 0,
    total_events INTEGER NOT NULL DEFAULT 0,
    coverage TEXT NOT NULL DEFAULT '{}',
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    UNIQUE (origin, workload_id)
);

CREATE INDEX workloads_by_image_ref ON workloads (image_ref);
CREATE INDEX workloads_by_image_digest ON workloads (image_digest);

CREATE TABLE files (
    workload INTEGER NOT NULL REFERENCES workloads (id),
    path BLOB NOT NULL,
    kinds INTEGER NOT NULL,
    outcomes INTEGER NOT NULL,  -- the 64-bit unsigned mask, as int64 two's complement
    comms TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (workload, path)
) WITHOUT ROWID;
