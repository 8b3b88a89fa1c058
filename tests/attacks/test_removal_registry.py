"""The removal attacks as registry objects (ewe.attacks.removal.REMOVAL_ATTACKS): the tables other modules import
are read from it, and each attack knows its points, stages and the victims it applies to."""
from __future__ import annotations

from types import SimpleNamespace

from ewe.attacks.removal import (ATTACK_LABELS, ATTACKS, REMOVAL_ATTACKS, X_AXIS, FinePruneAttack, FineTuneAttack,
                                 RemovalAttack)
from ewe.models import build_model


def test_the_tables_come_from_the_registry():
    assert ATTACKS == ("fine_tune_last", "fine_tune_all", "prune", "prune_finetune", "fine_prune")
    assert all(isinstance(a, RemovalAttack) and a.name == n for n, a in REMOVAL_ATTACKS.items())
    assert X_AXIS == {n: ("epoch" if n.startswith("fine_tune") else "ratio") for n in ATTACKS}
    assert ATTACK_LABELS["none"] == "no attack" and set(ATTACK_LABELS) == {"none", *ATTACKS}
    assert ATTACK_LABELS["fine_prune"] == "fine-pruning"


def test_points_and_stages_follow_the_settings():
    s = SimpleNamespace(ratios=[0.1, 0.25], finetune_ratios=[0.5], finetune_epochs=2.5)
    ft = REMOVAL_ATTACKS["fine_tune_last"]
    assert isinstance(ft, FineTuneAttack) and ft.layers == "last" and ft.measured_in_training
    assert ft.points(s) == [2.5] and ft.stage("defended", 2.5) == "fine_tune_last/defended"
    assert REMOVAL_ATTACKS["prune"].points(s) == [0.1, 0.25] and not REMOVAL_ATTACKS["prune"].trains
    assert REMOVAL_ATTACKS["prune"].stage("defended", 0.25) == "prune/defended/0.25"
    for name in ("prune_finetune", "fine_prune"):
        assert REMOVAL_ATTACKS[name].points(s) == [0.5]


def test_fine_pruning_needs_a_conv_layer():
    fp = REMOVAL_ATTACKS["fine_prune"]
    assert isinstance(fp, FinePruneAttack)
    assert fp.applies_to(build_model("conv2", (1, 28, 28)))
    mlp = build_model("mlp", (1, 28, 28))
    assert not fp.applies_to(mlp) and "no convolutional layer" in fp.skip_reason(mlp)
    assert all(REMOVAL_ATTACKS[n].applies_to(mlp) for n in ATTACKS if n != "fine_prune")
