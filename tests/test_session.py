"""Sessions: a plain space and the plugins it was validated against, kept apart."""

from __future__ import annotations

import dataclasses

import pytest

import iasf_search
from iasf_search import hookimpl
from iasf_search.errors import BadInput, SpaceError
from iasf_search.session import Session, load_space, open_session, session_for


class Observer:
    """A life-cycle plugin registered for one session."""

    def __init__(self) -> None:
        self.started: list[tuple[str, bool]] = []

    @hookimpl
    def iasf_study_start(self, study, space, components, target):
        self.started.append((space.name, "attention" in components.ops))


def test_open_session_pairs_the_plain_space_with_its_plugins(write_space):
    session = open_session(write_space({"plugins": ["plugin_samples.scale_op"]}), plugins=["plugin_samples.nan_op"])
    assert isinstance(session, Session)
    assert "components" not in {f.name for f in dataclasses.fields(session.space)}
    assert session.space.extra_plugins == ("plugin_samples.nan_op",) and session.space.plugins == ("plugin_samples.scale_op",)
    assert session.components.sources["plugin_samples.scale_op"] == "space file"
    assert session.components.sources["plugin_samples.nan_op"] == "--plugin"
    assert "scaled_linear" in session.components.ops
    assert load_space(write_space()) == open_session(write_space()).space  # the same validated data


def test_observers_are_registered_for_that_session_only(tmp_path, write_space):
    observer = Observer()
    session = open_session(write_space(), observers=[(observer, "observer")])
    assert session.components.pm.has_plugin("observer")
    assert not open_session(write_space()).components.pm.has_plugin("observer")
    iasf_search.run_search(session, trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", device="cpu")
    assert observer.started == [("tiny", True)]
    assert "observer" not in session.components.sources  # registered at run time, not a loaded module


def test_session_for_keeps_a_session_and_reloads_a_plain_space(write_space):
    session = open_session(write_space(), plugins=["plugin_samples.scale_op"])
    assert session_for(session) is session
    again = session_for(session.space)
    assert again.space is session.space and again.components is not session.components
    assert again.components.sources["plugin_samples.scale_op"] == "--plugin"
    assert set(again.components.ops) == set(session.components.ops)


def test_a_missing_plugin_names_where_it_was_asked_for(write_space):
    with pytest.raises(SpaceError) as info:
        open_session(write_space({"plugins": ["no_such_module_xyz"]}))
    assert info.value.key == "plugins[0]"
    with pytest.raises(BadInput, match="from --plugin"):
        open_session(write_space(), plugins=["no_such_module_xyz"])
