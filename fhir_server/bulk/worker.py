"""Background export workers: threads in each server process that claim jobs from the table and run them.

Any process can run any job; a job whose worker stops beating (a crash, a restart, a stop mid-export) is
claimed again after ``export_stale_seconds`` and starts over. Expired jobs lose their files and rows.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from pathlib import Path

from sqlalchemy import Engine

from fhir_server.bulk.export import Cancelled, run_export
from fhir_server.bulk.jobs import Job, JobStore
from fhir_server.config import Settings

log = logging.getLogger("fhir_server.bulk")
POLL_SECONDS = 0.5


def job_folder(settings: Settings, job_id: str) -> Path:
    return Path(settings.export_dir) / job_id


class ExportWorkers:
    """``settings.export_workers`` threads running export jobs until ``stop``."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.jobs = JobStore(engine)
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, name=f"export-worker-{n}", daemon=True)
            for n in range(settings.export_workers)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop taking jobs; a job being written stops at its next beat and is left to be resumed."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        worker = uuid.uuid4().hex
        while not self.stopping.is_set():
            try:
                job = self.jobs.claim(worker, self.settings.export_stale_seconds)
                if job is not None:
                    self.run(job, worker)
                    continue
                self._sweep()
            except Exception:
                log.exception("export worker error; retrying")
            self.stopping.wait(POLL_SECONDS)

    def run(self, job: Job, worker: str) -> None:
        """Run one claimed job to completion, failure or cancellation."""
        folder = job_folder(self.settings, job.id)

        def beat(progress: str) -> bool:
            return not self.stopping.is_set() and self.jobs.beat(job.id, worker, progress)

        try:
            manifest = run_export(
                self.engine, job, folder, self.settings.export_file_resources, beat, self.settings.base_url.rstrip("/")
            )
        except Cancelled:
            if not self.stopping.is_set():
                shutil.rmtree(folder, ignore_errors=True)  # cancelled: nothing to keep
            return
        except Exception as exc:
            log.exception("export %s failed", job.id)
            self.jobs.fail(
                job.id, worker, f"the export failed: {exc.__class__.__name__}", self.settings.export_expiry_seconds
            )
            return
        if not self.jobs.complete(job.id, worker, manifest, self.settings.export_expiry_seconds):
            shutil.rmtree(folder, ignore_errors=True)  # cancelled at the last moment

    def _sweep(self) -> None:
        """Remove the files and rows of expired and cancelled jobs."""
        for job_id in self.jobs.expired():
            shutil.rmtree(job_folder(self.settings, job_id), ignore_errors=True)
            self.jobs.forget(job_id)
