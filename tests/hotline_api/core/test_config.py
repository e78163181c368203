import subprocess
import sys

import pytest

from hotline_api.core.config import ConfigError, Settings


def test_env_overrides_file_overrides_defaults(tmp_path):
    cfg = tmp_path / "h.toml"
    cfg.write_text('sip_port = 5070\nhttp_port = 8100\ntrunk_allow = ["10.0.0.0/8"]\n')
    s = Settings.load(env={"HOTLINE_CONFIG": str(cfg), "HOTLINE_SIP_PORT": "5080"})
    assert s.sip_port == 5080  # env wins over file
    assert s.http_port == 8100  # file wins over default
    assert s.hotline_number == "12388"  # default
    assert [str(n) for n in s.trunk_networks] == ["10.0.0.0/8"]


def test_defaults_match_contract():
    s = Settings.load(env={})
    assert (s.sip_host, s.sip_port, s.http_host, s.http_port) == ("127.0.0.1", 5060, "127.0.0.1", 8000)
    assert str(s.data_dir) == "var"
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("var/hotline.db")
    assert s.trunk_allow == ["127.0.0.0/8"]


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"HOTLINE_SIP_PORT": "abc"}, "sip_port"),
        ({"HOTLINE_SIP_PORT": "70000"}, "sip_port"),
        ({"HOTLINE_TRUNK_ALLOW": "not-an-ip"}, "trunk_allow"),
        ({"HOTLINE_HOTLINE_NUMBER": "12a"}, "hotline_number"),
        ({"HOTLINE_CONFIG": "/nonexistent.toml"}, "not found"),
    ],
)
def test_bad_values_name_the_setting(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.load(env=env)


def test_unknown_key_in_file_is_refused(tmp_path):
    cfg = tmp_path / "h.toml"
    cfg.write_text("sip_prot = 1\n")
    with pytest.raises(ConfigError, match="sip_prot"):
        Settings.load(env={"HOTLINE_CONFIG": str(cfg)})


def test_config_show_masks_secrets(tmp_path):
    env = {"HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_MASTER_KEY": "c2VjcmV0c2VjcmV0",
           "HOTLINE_DATABASE_URL": "postgresql://hot:pw123@db/hotline", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "hotline_api.cli", "config", "show"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "c2VjcmV0c2VjcmV0" not in out and "pw123" not in out
    assert "master_key = ********" in out
    assert "postgresql://hot:********@db/hotline" in out
