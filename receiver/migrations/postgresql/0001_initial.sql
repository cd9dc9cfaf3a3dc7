-- The first schema: delta keys, workloads, and their files. Report text is stored as
-- UTF-8 bytes (BYTEA), paths as bytes, labels/comms/coverage as ASCII JSON text.
CREATE TABLE deltas (
    idempotency_key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE workloads (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin BYTEA NOT NULL,
    workload_id BYTEA NOT NULL,
    name BYTEA NOT NULL DEFAULT ''::bytea,
    workload_key BYTEA NOT NULL DEFAULT ''::bytea,
    container_id BYTEA NOT NULL DEFAULT ''::bytea,
    cgroup_path BYTEA NOT NULL DEFAULT ''::bytea,
    image_ref BYTEA NOT NULL DEFAULT ''::bytea,
    image_digest BYTEA NOT NULL DEFAULT ''::bytea,
    pod_name BYTEA NOT NULL DEFAULT ''::bytea,
    namespace BYTEA NOT NULL DEFAULT ''::bytea,
    labels TEXT NOT NULL DEFAULT '{}',
    started_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_updated_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    total_events BIGINT NOT NULL DEFAULT 0,
    coverage TEXT NOT NULL DEFAULT '{}',
    first_received DOUBLE PRECISION NOT NULL,
    last_received DOUBLE PRECISION NOT NULL,
    UNIQUE (origin, workload_id)
);

CREATE INDEX workloads_by_image_ref ON workloads (image_ref);
CREATE INDEX workloads_by_image_digest ON workloads (image_digest);

CREATE TABLE files (
    workload BIGINT NOT NULL REFERENCES workloads (id),
    path BYTEA NOT NULL,
    kinds BIGINT NOT NULL,
    outcomes BIGINT NOT NULL,  -- the 64-bit unsigned mask, as int64 two's complement
    comms TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workload, path)
);
