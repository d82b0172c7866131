"""SamplerSettings: validation with the field named, defaults that switch everything off, presets, order."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from smoltui.engine.errors import UserError
from smoltui.engine.sampler_settings import (
    DEFAULT_ORDER,
    PRESET_HELP,
    PRESETS,
    SAMPLER_NAMES,
    SamplerSettings,
    parse_order,
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.5),
        ("temperature", float("inf")),
        ("temperature", True),
        ("top_k", -1),
        ("top_k", 2.5),
        ("top_p", 1.5),
        ("top_p", -0.1),
        ("min_p", 2.0),
        ("typical_p", 0.0),
        ("typical_p", 1.2),
        ("top_n_sigma", -1.0),
        ("repetition_penalty", 0.0),
        ("repetition_range", -1),
        ("presence_penalty", float("nan")),
        ("frequency_penalty", "a lot"),
        ("no_repeat_ngram", -2),
        ("dry_multiplier", -1.0),
        ("dry_base", 0.5),
        ("dry_allowed_length", 0),
        ("dry_range", -1),
        ("dry_sequence_breakers", ("\n", "")),
        ("dry_sequence_breakers", (1,)),
        ("xtc_threshold", 0.0),
        ("xtc_threshold", 1.5),
        ("xtc_probability", 1.5),
        ("mirostat_tau", -1.0),
        ("mirostat_eta", 0.0),
        ("mirostat_eta", 2.0),
        ("banned_tokens", (-1,)),
        ("banned_tokens", ("x",)),
        ("ban_eos", "yes"),
        ("order", ("temperature", "warp")),
        ("order", ("temperature", "temperature")),
    ],
)
def test_each_bad_value_names_its_field(field, value):
    with pytest.raises(UserError) as caught:
        SamplerSettings(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).endswith(".")
    with pytest.raises(UserError) as caught:
        PRESETS["balanced"].replace(**{field: value})
    assert caught.value.field == field


def test_a_sampler_switched_on_but_left_out_of_the_order_is_refused():
    with pytest.raises(UserError, match="top_p is switched on") as caught:
        SamplerSettings(top_p=0.9, order=("temperature",))
    assert caught.value.field == "order"
    assert SamplerSettings(temperature=0.5, order=("temperature",)).active_order() == ("temperature",)


def test_replace_refuses_an_unknown_setting_and_returns_a_new_validated_copy():
    with pytest.raises(UserError, match="unknown sampler setting 'top_q'"):
        SamplerSettings().replace(top_q=0.5)
    changed = PRESETS["greedy"].replace(top_p=0.5)
    assert changed.top_p == 0.5 and PRESETS["greedy"].top_p == 1.0


def test_settings_survive_a_round_trip_through_json():
    for preset in PRESETS.values():
        assert SamplerSettings.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset
    with pytest.raises(UserError, match="unknown sampler setting 'top_q'"):
        SamplerSettings.from_dict({"top_q": 0.5})


def test_whole_numbers_and_lists_are_accepted_where_floats_and_tuples_are_wanted():
    given_ = SamplerSettings(temperature=1, banned_tokens=[4, 2], order=list(DEFAULT_ORDER))
    assert isinstance(given_.temperature, float) and given_.banned_tokens == (4, 2)
    assert isinstance(given_.order, tuple)
    assert hash(given_) == hash(SamplerSettings(temperature=1.0, banned_tokens=(4, 2)))


def test_defaults_switch_every_sampler_off_and_every_field_explains_itself():
    assert SamplerSettings().switched_on() == ()
    assert set(DEFAULT_ORDER) == set(SAMPLER_NAMES) and len(DEFAULT_ORDER) == len(SAMPLER_NAMES)
    options = {field.name: field.metadata["option"] for field in dataclasses.fields(SamplerSettings)}
    assert options["banned_tokens"] == "--ban" and options["top_n_sigma"] == "--top-n-sigma"
    for field in dataclasses.fields(SamplerSettings):
        assert field.metadata["help"].endswith(".") and field.metadata["option"].startswith("--")


def test_presets():
    assert set(PRESETS) == set(PRESET_HELP) == {"greedy", "balanced", "creative"}
    assert PRESETS["greedy"].greedy and PRESETS["greedy"].active_order() == ()
    assert PRESETS["balanced"].active_order() == ("repetition_penalty", "temperature", "top_p")
    assert PRESETS["creative"].active_order() == ("dry", "min_p", "xtc")


def test_the_settings_load_without_torch_for_the_cli_and_the_first_frame():
    probe = "import sys, smoltui.engine.sampler_settings\nprint(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "'torch'" not in loaded and "'transformers'" not in loaded and "'smoltui'" in loaded


def test_parse_order_takes_what_a_user_types():
    assert parse_order(" top-p, temperature,,min_p ") == ("top_p", "temperature", "min_p")
