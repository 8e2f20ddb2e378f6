"""Composite layers refuse injected parts built on another representation (by content, never by size alone)."""

from __future__ import annotations

import functools

import pytest
from conftest import rotated
from escnn import group as eg
from escnn.group import directsum

from symm_layers import (
    MultiheadAttention,
    TransformerStack,
    eLayerNorm,
    eMultiheadAttention,
    eTransformerDecoderLayer,
    eTransformerEncoderLayer,
)
from symm_layers.reps import same_representation


@functools.cache
def layer_rep():
    return eg.dihedral_group(4).regular_representation


@functools.cache
def other_reps():
    """Size-8 representations that are not D4's regular one, and what tells them apart."""
    D4, C8 = eg.dihedral_group(4), eg.cyclic_group(8)
    return {
        "other group": (C8.regular_representation, "different groups"),
        "other irreps": (directsum([D4.trivial_representation] * 4 + [D4.irrep(1, 1)] * 2), "irreps differ"),
        "rotated basis": (rotated(D4.regular_representation, 3), "changes of basis differ"),
    }


CASES = ["other group", "other irreps", "rotated basis"]


def _encoder(attn):
    return eTransformerEncoderLayer(layer_rep(), attn, dim_feedforward=8, dropout=0.0)


@pytest.mark.parametrize("case", CASES)
def test_encoder_refuses_attention_on_another_representation_of_the_same_size(case):
    rep, why = other_reps()[case]
    assert rep.size == layer_rep().size
    with pytest.raises(ValueError, match=why) as info:
        _encoder(eMultiheadAttention(rep, 1))
    assert f"'{rep.name}' of {rep.group.name}" in str(info.value)
    assert f"'{layer_rep().name}' of {layer_rep().group.name}" in str(info.value)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("slot", ["self_attn", "cross_attn"])
def test_decoder_checks_both_attentions_at_construction(case, slot):
    rep, why = other_reps()[case]
    parts = {"self_attn": eMultiheadAttention(layer_rep(), 1), "cross_attn": eMultiheadAttention(layer_rep(), 1)}
    parts[slot] = eMultiheadAttention(rep, 1)
    with pytest.raises(ValueError, match=f"{slot}.*{why}"):
        eTransformerDecoderLayer(layer_rep(), **parts, dim_feedforward=8)


def test_attention_on_an_equal_representation_built_separately_is_accepted():
    G = eg.cyclic_group(4)
    a, b = directsum([G.regular_representation] * 2), directsum([G.regular_representation] * 2, name="renamed")
    assert a is not b and same_representation(a, b)
    layer = eTransformerEncoderLayer(a, eMultiheadAttention(b, 2), dim_feedforward=8)
    assert layer.self_attn.in_rep is b


def test_plain_attention_in_an_equivariant_layer_is_refused():
    with pytest.raises(ValueError, match="has no in_rep.*eMultiheadAttention\\(in_rep, num_heads\\)"):
        _encoder(MultiheadAttention(layer_rep().size, 1))


@pytest.mark.parametrize("case", CASES)
def test_stack_refuses_a_final_norm_on_another_representation(case):
    rep, why = other_reps()[case]
    with pytest.raises(ValueError, match=f"norm.*{why}"):
        TransformerStack(_encoder(eMultiheadAttention(layer_rep(), 1)), 2, norm=eLayerNorm(rep))


def test_stack_accepts_a_final_norm_on_the_layer_representation():
    stack = TransformerStack(_encoder(eMultiheadAttention(layer_rep(), 1)), 2, norm=eLayerNorm(layer_rep()))
    assert stack.norm.in_rep is layer_rep()
