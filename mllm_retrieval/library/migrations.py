"""Schema migrations; each runs once, in a transaction with its record."""

from __future__ import annotations

import json
import uuid

from .sqlite import Database, Migrations

migrations = Migrations("mllmret")


@migrations()
def m001_initial(db: Database) -> None:
    """Images (by content), the files that hold them, tiles, runs and captions."""
    for sql in (
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            sha256 TEXT UNIQUE,
            external_id TEXT UNIQUE,
            path TEXT,
            width INTEGER,
            height INTEGER,
            bytes INTEGER,
            status TEXT NOT NULL DEFAULT 'ok',
            added_at TEXT NOT NULL
        )""",
        """CREATE TABLE files (
            path TEXT PRIMARY KEY,
            image_id INTEGER REFERENCES images(id),
            bytes INTEGER,
            mtime REAL,
            status TEXT NOT NULL,
            error TEXT,
            seen_at TEXT NOT NULL
        )""",
        """CREATE TABLE tiles (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER,
            UNIQUE (image_id, key)
        )""",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            backend TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_name TEXT,
            prompt_sha256 TEXT,
            prompt TEXT,
            params TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        """CREATE TABLE captions (
            id INTEGER PRIMARY KEY,
            tile_id INTEGER NOT NULL REFERENCES tiles(id) ON DELETE CASCADE,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            raw TEXT NOT NULL,
            tags TEXT NOT NULL,
            caption TEXT NOT NULL,
            seconds REAL,
            created_at TEXT NOT NULL,
            UNIQUE (tile_id, run_id)
        )""",
        "CREATE INDEX files_image ON files(image_id)",
        "CREATE INDEX tiles_image ON tiles(image_id)",
        "CREATE INDEX captions_run ON captions(run_id)",
    ):
        db.execute(sql)


@migrations()
def m002_text_changes(db: Database) -> None:
    """A change log, written by triggers in the same transaction, that search indexes catch up from."""
    for sql in (
        "CREATE TABLE text_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER NOT NULL)",
        """CREATE TRIGGER captions_ai AFTER INSERT ON captions BEGIN
            INSERT INTO text_changes (image_id) SELECT image_id FROM tiles WHERE id = NEW.tile_id; END""",
        """CREATE TRIGGER captions_au AFTER UPDATE ON captions BEGIN
            INSERT INTO text_changes (image_id) SELECT image_id FROM tiles WHERE id = NEW.tile_id; END""",
        """CREATE TRIGGER captions_ad AFTER DELETE ON captions BEGIN
            INSERT INTO text_changes (image_id) SELECT image_id FROM tiles WHERE id = OLD.tile_id; END""",
        """CREATE TRIGGER images_status AFTER UPDATE OF status ON images
            WHEN OLD.status IS NOT NEW.status BEGIN
            INSERT INTO text_changes (image_id) VALUES (NEW.id); END""",
        """CREATE TRIGGER images_ad AFTER DELETE ON images BEGIN
            INSERT INTO text_changes (image_id) VALUES (OLD.id); END""",
    ):
        db.execute(sql)


@migrations()
def m003_run_kind(db: Database) -> None:
    """Runs say what kind of text they stored: 'caption' (an M-LLM) or 'ocr' (text read in the photo)."""
    db.execute("ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'caption'")


@migrations()
def m004_runs_keyed_without_server(db: Database) -> None:
    """Server runs are keyed without the server's URL: the same model on another port or host, or on
    several servers, is one run. A run that now has another's key is merged into it."""
    from .store import run_key

    rows = db.execute(
        "SELECT id, model, params, prompt, kind FROM runs WHERE backend = 'openai' ORDER BY id").fetchall()
    for run_id, model, params, prompt, kind in rows:
        try:
            settings = json.loads(params)
        except ValueError:
            continue
        if not isinstance(settings, dict) or "base_url" not in settings:
            continue
        settings.pop("base_url")
        key = run_key("openai", model, settings, prompt, kind or "caption")[0]
        same = db.execute("SELECT id FROM runs WHERE key = ?", [key]).fetchone()
        if same is None:
            db.execute("UPDATE runs SET key = ? WHERE id = ?", [key, run_id])
            continue
        db.execute("UPDATE OR IGNORE captions SET run_id = ? WHERE run_id = ?", [same[0], run_id])
        db.execute("DELETE FROM captions WHERE run_id = ?", [run_id])  # tiles the other run has too
        db.execute("DELETE FROM runs WHERE id = ?", [run_id])


@migrations()
def m005_library_identity(db: Database) -> None:
    """The library's identity (a random UUID), which every derived file records: a file made for another
    library (one deleted and made again beside its old index files) is never mistaken for this one's.
    Each change-log row also gets a random nonce, so that the same sequence numbers reached again by other
    changes (a backup restored, then changed) do not look like the state a derived file was made from."""
    db.execute("CREATE TABLE library (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO library (key, value) VALUES ('uuid', ?)", [str(uuid.uuid4())])
    db.execute("ALTER TABLE text_changes ADD COLUMN nonce INTEGER NOT NULL DEFAULT 0")
    tiles = "SELECT image_id, random() FROM tiles WHERE id ="
    for name, event, select in (("captions_ai", "INSERT ON captions", f"{tiles} NEW.tile_id"),
                                ("captions_au", "UPDATE ON captions", f"{tiles} NEW.tile_id"),
                                ("captions_ad", "DELETE ON captions", f"{tiles} OLD.tile_id"),
                                ("images_ad", "DELETE ON images", "SELECT OLD.id, random()")):
        db.execute(f"DROP TRIGGER {name}")
        db.execute(f"CREATE TRIGGER {name} AFTER {event} BEGIN "
                   f"INSERT INTO text_changes (image_id, nonce) {select}; END")
    db.execute("DROP TRIGGER images_status")
    db.execute("""CREATE TRIGGER images_status AFTER UPDATE OF status ON images
        WHEN OLD.status IS NOT NEW.status BEGIN
        INSERT INTO text_changes (image_id, nonce) VALUES (NEW.id, random()); END""")
