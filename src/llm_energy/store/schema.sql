-- llm-energy results store, schema version 1.
--
-- Applied once, inside one transaction, to a new database by llm_energy.store.db.Store, which then
-- sets PRAGMA application_id and PRAGMA user_version (= SCHEMA_VERSION in db.py; bump both together).
--
-- The JSON columns are the source of truth a RunResult is rebuilt from. The scalar columns beside
-- them (model, engine, batch_size, gpu_energy_j, ...) are denormalised copies so that plain SQL can
-- filter and aggregate without parsing JSON. JSON is written by Python's json module with its
-- defaults, so a non-finite float appears as the literal NaN / Infinity (not strict JSON).

CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY NOT NULL,
    -- Stable id of the sweep point this run measured; lets a resumed sweep skip stored points.
    point_id    TEXT,
    created_at  TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'oom', 'error')),
    error       TEXT,
    model       TEXT,
    engine      TEXT,
    mode        TEXT,
    batch_size  INTEGER,
    input_len   INTEGER,
    output_len  INTEGER,
    -- SQLite stores a NaN REAL as NULL; the reader maps NULL back to NaN.
    compile_s   REAL,
    load_s      REAL,
    config_json TEXT NOT NULL,
    env_json    TEXT NOT NULL
);

CREATE INDEX runs_point_id ON runs (point_id);
CREATE INDEX runs_status ON runs (status);

CREATE TABLE phases (
    run_id           TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    phase            TEXT NOT NULL CHECK (phase IN ('idle', 'prefill', 'decode', 'total')),
    repetitions      INTEGER NOT NULL CHECK (repetitions > 0),
    tokens           INTEGER NOT NULL,
    -- Whole window (all repetitions together), as the meter measured it.
    duration_s       REAL,
    -- Sum of the gpu:* domains over the whole window; a copy of energy_json for queries.
    gpu_energy_j     REAL,
    energy_json      TEXT NOT NULL,
    uncertainty_json TEXT NOT NULL,
    source_json      TEXT NOT NULL,
    idle_power_json  TEXT NOT NULL,
    flags_json       TEXT NOT NULL,
    PRIMARY KEY (run_id, phase)
);
