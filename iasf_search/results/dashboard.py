"""Serve optuna-dashboard for a study's storage, with the artifact store the search wrote to, opening on the study's
page (refreshed first: :func:`refresh_study_page`).

optuna-dashboard's own WSGI app (:func:`optuna_dashboard.wsgi`) on the standard library's server,
bound here so that a busy port is a one-line error and ``--port 0`` picks a free one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard
from optuna.trial import TrialState

from iasf_search.errors import BadInput
from iasf_search.results.access import StoredStudy, open_stored_study
from iasf_search.results.artifacts import open_artifact_store
from iasf_search.results.dashboard_page import StudyPage
from iasf_search.search.storage import absolute_url, open_storage, safe_url

STUDY_PAGE_SECTION = "study_page"
"""The space section (plugin ``study_page``) that sets what the study's page shows."""


class _QuietHandler(WSGIRequestHandler):
    """No line per HTTP request on stderr."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def make_dashboard_server(storage: str | optuna.storages.BaseStorage, artifact_dir: Path | None, *, host: str = "127.0.0.1",
                          port: int = 8080) -> WSGIServer:
    """A bound, not yet serving, optuna-dashboard server for ``storage`` (a URL or an opened storage).

    :param artifact_dir: the artifact folder (None or missing: the dashboard shows no files).
    :raises BadInput: no such study database, or the address is in use or not available.
    """
    if isinstance(storage, str):
        storage = open_storage(storage, create=False)
    store = open_artifact_store(artifact_dir, create=False) if artifact_dir is not None and artifact_dir.is_dir() else None
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    try:
        return make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}; pass another --port (0 picks a free one)") from None


def study_path(storage: optuna.storages.BaseStorage, opened: StoredStudy | None) -> str:
    """The dashboard's page for the study ``opened`` (its id in ``storage``, the storage served), or its start page."""
    if opened is None:
        return "/dashboard"
    return f"/dashboard/studies/{storage.get_study_id_from_name(opened.study.study_name)}"


def refresh_study_page(opened: StoredStudy, storage_url: str, out: TextIO) -> bool:
    """Write the study's page (note and plots, :class:`~iasf_search.results.dashboard_page.StudyPage`, as the space's
    ``study_page:`` section sets it) unless a trial is running (a search is going on, and its worker 0 writes the page);
    returns whether it was written. A study made before the page existed gets one this way; a study no iasf-search
    search made (it records no space) is left as it is."""
    if not opened.space:  # not made by an iasf-search search: its note is its owner's
        return False
    if opened.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        print("a search is running: its worker 0 keeps the study page up to date", file=out)
        return False
    page = StudyPage.from_settings(opened.space.get(STUDY_PAGE_SECTION) or {}, absolute_url(storage_url))
    if not (page.note or page.plots):
        return False
    try:
        page.publish(opened)
    except Exception as exc:  # serving the trials matters more than the page
        print(f"the study page was not refreshed ({type(exc).__name__}: {exc})", file=out)
        return False
    return True


def serve_dashboard(storage_url: str, artifact_dir: Path | None, *, study_name: str | None = None, host: str = "127.0.0.1",
                    port: int = 8080, out: TextIO | None = None) -> None:
    """Print the address and serve until interrupted (Ctrl-C returns normally)."""
    out = out or sys.stdout
    # a named study is found through the results' door (no such storage or study: the errors of best or report); the
    # dashboard serves a storage of its own, as Optuna opened it (not the study's, which Optuna wraps in a cache)
    opened = open_stored_study(storage_url, study_name) if study_name is not None else None
    if opened is not None:
        refresh_study_page(opened, storage_url, out)
    storage = open_storage(storage_url, create=False)
    path = study_path(storage, opened)
    server = make_dashboard_server(storage, artifact_dir, host=host, port=port)
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{server.server_port}{path}"
    files = f"artifacts from {artifact_dir}" if artifact_dir is not None and artifact_dir.is_dir() else "no artifact folder"
    print(f"optuna-dashboard for {safe_url(storage_url)} ({files})", file=out)
    print(f"open {address}  (Ctrl-C stops it)", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

