"""Tests of the service settings: sources and their order, refusals naming the setting."""

from __future__ import annotations

import pytest

from campaignrl.service.settings import ExportSettings, ServiceSettings, default_versions_dir

KEY = "k" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("CAMPAIGNRL_"):
            monkeypatch.delenv(name)


def test_defaults():
    s = ServiceSettings.load(hash_key=KEY)
    assert (s.host, s.port, s.workers, s.max_batch, s.learn) == ("127.0.0.1", 8000, 1, 1000, False)
    assert s.secret("hash_key") == KEY.encode()
    assert "k" * 32 not in repr(s)  # secrets never printed


def test_flags_over_environment_over_file(tmp_path, monkeypatch):
    toml = tmp_path / "service.toml"
    toml.write_text(f'hash_key = "{KEY}"\nport = 7000\nworkers = 2\naggregation = "max"\n')
    monkeypatch.setenv("CAMPAIGNRL_PORT", "9000")
    monkeypatch.setenv("CAMPAIGNRL_WORKERS", "3")
    s = ServiceSettings.load(toml, workers=4)
    assert (s.port, s.workers, s.aggregation) == (9000, 4, "max")  # env, flag, file
    yaml_file = tmp_path / "service.yaml"
    yaml_file.write_text(f"hash_key: {KEY}\nreward_window_seconds: 3e2\n")
    assert ServiceSettings.load(yaml_file).reward_window_seconds == 300.0


def test_environment_round_trip(monkeypatch):
    s = ServiceSettings.load(
        hash_key=KEY, port=8123, learn=True, exploration_epsilon=0.25, workers=2,
        refresh_seconds=0.25, store_url="postgresql://app@db/decisions", versions_dir="/srv/v",
    )  # fmt: skip
    for key, value in s.to_env().items():
        if value is not None:
            monkeypatch.setenv(key, value)
    assert ServiceSettings.load() == s


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({}, r"setting `hash_key` \(CAMPAIGNRL_HASH_KEY\): is required: set CAMPAIGNRL_HASH_KEY"),
        ({"hash_key": "short"}, r"`hash_key` .*at least 16 bytes, got 5 bytes"),
        ({"admin_token": "abc"}, r"`admin_token` .*at least 16 characters, got 3"),
        ({"api_key": "abc"}, r"`api_key` \(CAMPAIGNRL_API_KEY\): must be at least 16"),
        ({"port": 0}, r"`port` \(CAMPAIGNRL_PORT\): Input should be greater than or equal to 1"),
        ({"workers": 0}, r"`workers`"),
        ({"exploration_epsilon": 1.5}, r"`exploration_epsilon`"),
        ({"reward_window_seconds": float("nan")}, r"`reward_window_seconds`.*finite"),
        ({"reward_window_seconds": 0}, r"`reward_window_seconds`.*greater than 0"),
        ({"aggregation": "mean"}, r"`aggregation`.*'sum', 'earliest' or 'max'"),
        ({"default_reward": float("inf")}, r"`default_reward`.*finite"),
        ({"learn": "maybe"}, r"`learn`"),
        ({"max_batch": 0}, r"`max_batch`"),
        ({"refresh_seconds": 0}, r"`refresh_seconds` \(CAMPAIGNRL_REFRESH_SECONDS\).*greater"),
        ({"refresh_seconds": float("inf")}, r"`refresh_seconds`.*finite"),
        ({"graceful_timeout_seconds": -1}, r"`graceful_timeout_seconds`.*greater than 0"),
        ({"workers": 65}, r"`workers` \(CAMPAIGNRL_WORKERS\).*less than or equal to 64"),
        ({"signing_key": "  "}, r"`signing_key`.*must not be empty"),
        ({"prot": 1}, r"unknown setting 'prot'; known settings: admin_token"),
    ],
)
def test_bad_settings_are_refused_by_name(values, match):
    values = {"hash_key": KEY, **values} if "hash_key" not in values and values else values
    with pytest.raises(ValueError, match=match):
        ServiceSettings.load(**values)


def test_secret_values_are_never_in_messages():
    with pytest.raises(ValueError) as info:
        ServiceSettings.load(hash_key="s3cr3t")
    assert "s3cr3t" not in str(info.value)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("CAMPAIGNRL_PORT", "eighty")
    with pytest.raises(ValueError, match=r"`port` \(CAMPAIGNRL_PORT\): .*valid integer"):
        ServiceSettings.load(hash_key=KEY)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("s.json", "{}", r"argument --config: must be a .toml or .yaml file"),
        ("s.toml", "port = = 1", r"argument --config: .*s.toml"),
        ("s.yaml", "a: 1\na: 2", r"duplicate key 'a'"),
        ("s.yaml", "- 1\n- 2", r"must hold a mapping of setting names"),
        ("s.toml", 'hash_key = "kkkkkkkkkkkkkkkkkkkkkk"\nbogus = 1', r"unknown setting 'bogus'"),
    ],
)
def test_bad_config_files(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        ServiceSettings.load(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match=r"argument --config: .*does not exist"):
        ServiceSettings.load(tmp_path / "none.toml")


def test_export_settings_ignore_service_keys(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f'hash_key = "{KEY}"\nport = 1\nreward_window_seconds = 60\n')
    s = ExportSettings.load(path, store_url="sqlite:///x/d.db")
    assert s.reward_window_seconds == 60.0
    assert str(s.resolved_versions_dir) == "x/d.db.versions"


def test_versions_dir_is_required_with_postgresql():
    with pytest.raises(ValueError, match=r"`versions_dir` .* is required with a non-SQLite"):
        default_versions_dir("postgresql://app:pw@db/decisions")
    with pytest.raises(ValueError) as info:
        default_versions_dir("postgresql://app:pw@db/decisions")
    assert "pw" not in str(info.value)
