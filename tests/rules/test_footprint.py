"""The "add a rule" task's files, counted (tests/rules/footprint.py): a rule that nothing else consumes is
named only in its module, its YAML section and its texts."""

from __future__ import annotations

import pytest

from tests.rules import footprint

pytestmark = pytest.mark.unit


def test_a_rule_is_named_only_by_its_module_its_section_and_its_texts() -> None:
    found = footprint.at(None)
    assert found["peer"] == ["config/complex.yaml", "config/messages.yaml"]
    # no stage names a rule to evaluate, word or show it; what is left reads a rule's parameters
    # (the demo's note, billing's projection model and leak window, the application's projection options)
    for key, files in found.items():
        assert not [f for f in files if f.startswith(("spark/sink", "spark/evaluation", "alerts/message",
                                                      "app/report"))], key


def test_the_count_sees_each_kind_of_mention() -> None:
    texts = {"a.py": "x = 'peer'\n", "b.py": "y = settings.rules.peer.min_days\n",
             "c.py": "class Rules:\n    peer: int\n", "d.py": "peers = 3  # a peer\n",
             "e.yaml": "rules:\n  peer:\n    min_peers: 10\n", "f.yaml": "peers: 3\n"}
    assert footprint.mentions(texts, texts.__getitem__)["peer"] == ["a.py", "b.py", "c.py", "e.yaml"]
