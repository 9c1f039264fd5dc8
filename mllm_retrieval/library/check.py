"""`mllmret check`: the database, the derived files and the image files, each checked; `--repair` fixes what
can be fixed without the photos or a backup (unusable derived files removed, the keyword index rebuilt, the
change log compacted)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field

from .housekeeping import DerivedReport, change_log_rows, compact_change_log, remove_unusable, survey_derived
from .store import Store

MAX_INTEGRITY_LINES = 20


@dataclass
class CheckReport:
    """What `check_library_state` found, and what it repaired."""

    integrity: list[str] = field(default_factory=list)  # ["ok"] or SQLite's problems
    derived: DerivedReport = field(default_factory=DerivedReport)
    missing: list[str] = field(default_factory=list)  # indexed files no longer there
    changed: list[str] = field(default_factory=list)  # indexed files whose size or mtime changed
    change_log: int = 0
    captions: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def database_ok(self) -> bool:
        """Whether PRAGMA integrity_check found nothing."""
        return self.integrity == ["ok"]

    @property
    def problems(self) -> int:
        """How many problems remain (after a repair, those it could not fix)."""
        return (not self.database_ok) + len(self.derived.unusable) + len(self.missing) + len(self.changed)


def check_library_state(store: Store, repair: bool = False) -> CheckReport:
    """Check the database (PRAGMA integrity_check), derived files against it, and image files on disk."""
    report = CheckReport()
    try:
        report.integrity = [r[0] for r in store.db.execute(
            f"PRAGMA integrity_check({MAX_INTEGRITY_LINES})").fetchall()]
    except sqlite3.DatabaseError as e:
        report.integrity = [str(e)]
    report.derived = survey_derived(store)
    for path, size, mtime in store.indexed_file_stats():
        try:
            st = os.stat(path)
        except OSError:
            report.missing.append(path)
            continue
        if st.st_size != size or st.st_mtime != mtime:
            report.changed.append(path)
    report.captions = store.db.execute("SELECT count(*) FROM captions").fetchone()[0]
    report.change_log = change_log_rows(store)
    if repair and report.database_ok:
        _repair(store, report)
    return report


def _repair(store: Store, report: CheckReport) -> None:
    """Remove unusable derived files, compact the change log, rebuild the keyword index of all runs."""
    from ..search.index.store_index import StoreIndex

    for path in remove_unusable(report.derived):
        report.repaired.append(f"removed {path.name}")
    report.derived = survey_derived(store)
    deleted = compact_change_log(store, force=True)
    if deleted:
        report.repaired.append(f"compacted the change log: {deleted} rows deleted")
        report.change_log = change_log_rows(store)
    index = StoreIndex(store)
    index.sync()
    report.repaired.append(f"keyword index up to date ({len(index.doc_of)} images)")


def describe(report: CheckReport) -> list[str]:
    """The report as lines for a person: each problem with what to do."""
    lines = ["database: ok" if report.database_ok else
             "database: damaged (" + "; ".join(report.integrity[:3]) + "): restore a backup, or "
             "`sqlite3 lib.db .recover` into a new file"]
    unusable = report.derived.unusable
    usable = len(report.derived.files) - len(unusable)
    lines.append(f"derived files: {usable} usable, {len(unusable)} unusable"
                 + (" (`mllmret check --repair` removes them)" if unusable else ""))
    lines += [f"  unusable {f.path.name}: {f.problem}" for f in unusable]
    lines.append(f"image files: {len(report.missing)} missing, {len(report.changed)} changed"
                 + (" (caption their folders again to bring the library up to date)"
                    if report.missing or report.changed else ""))
    lines += [f"  missing {p}" for p in report.missing[:20]] + [f"  changed {p}" for p in report.changed[:20]]
    lines.append(f"change log: {report.change_log} rows for {report.captions} captions")
    lines += [f"repaired: {r}" for r in report.repaired]
    return lines
