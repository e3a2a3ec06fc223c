"""Setting a gateway up and finding its configuration: `pinseal-gateway init`, the lookup order, and read-only
commands that never create a database (issue 14 item 4)."""

from __future__ import annotations

import os
import pwd
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pytest

from pinseal_gateway import broker, config_lookup, config_template
from pinseal_gateway.cli import main
from pinseal_gateway.config import GatewayConfig, load_config
from pinseal_gateway.config_lookup import CONFIG_ENV, ConfigNotFound, find_config
from pinseal_gateway.keys import load_gateway_key
from pinseal_protocol import keys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_system_config(tmp_path, monkeypatch):
    """No $PINSEAL_GATEWAY_CONFIG and a system default that does not exist (never the real /etc)."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    absent = tmp_path / "etc" / "gateway.toml"
    monkeypatch.setattr(config_lookup, "SYSTEM_CONFIG", absent)
    return absent


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --- lookup ---------------------------------------------------------------------------------------------


def test_lookup_order_option_then_environment_then_system(tmp_path, monkeypatch, no_system_config):
    option, env, system = (tmp_path / f"{n}.toml" for n in ("option", "env", "system"))
    for path in (option, env, system):
        path.write_text("")
    monkeypatch.setattr(config_lookup, "SYSTEM_CONFIG", system)
    environ = {CONFIG_ENV: str(env)}
    assert find_config(str(option), environ).path == option
    assert find_config(None, environ) == config_lookup.FoundConfig(env, f"${CONFIG_ENV}")
    assert find_config(None, {}) == config_lookup.FoundConfig(system, "the system default")
    # a place that is named but empty is an error, not a reason to fall through to the next one
    with pytest.raises(ConfigNotFound, match=rf"{tmp_path}/missing.toml \(from \${CONFIG_ENV}\)"):
        find_config(None, {CONFIG_ENV: str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigNotFound, match=r"from --config"):
        find_config(str(tmp_path / "missing.toml"), environ)


@pytest.mark.parametrize("command", [["status"], ["devices", "list"], ["run"], ["devices", "add", "00" * 32]])
def test_no_configuration_anywhere_says_where_it_looked(
    command, tmp_path, monkeypatch, capsys, no_system_config
):
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    code, out, err = run(capsys, *command)
    assert code == 1 and out == ""
    assert "no configuration found" in err
    assert "--config (not given)" in err and f"${CONFIG_ENV} (not set)" in err
    assert f"{no_system_config} (no such file)" in err
    assert "pinseal-gateway init" in err
    assert files_under(tmp_path) == before


READ_ONLY = [
    ["status"],
    ["proof", "ab" * 32],
    ["devices", "list"],
    ["devices", "export"],
    ["devices", "revoke", "ab" * 16],
]


def test_a_gateway_with_a_key_and_no_database_yet_lists_no_devices(tmp_path, capsys):
    """`keygen` alone (provisioning's first look at a new gateway): nothing registered, nothing created."""
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "data"\n')
    assert run(capsys, "keygen", "--config", str(config))[0] == 0
    for command, expected in ((["devices", "list"], ""), (["devices", "export"], "[]\n")):
        code, out, err = run(capsys, *command, "--config", str(config))
        assert (code, out) == (0, expected)
        assert f"no devices registered yet (no database at {tmp_path / 'data' / 'gateway.sqlite'})" in err
    assert run(capsys, "status", "--config", str(config))[0] == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["gateway.key"]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_read_only_commands_never_create_a_database(command, tmp_path, capsys):
    """Before: each of these created data/gateway.sqlite (and the folder) and answered from it, empty."""
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "data"\n')
    code, out, err = run(capsys, *command, "--config", str(config))
    assert code == 1 and out == ""
    assert f"no gateway database at {tmp_path / 'data' / 'gateway.sqlite'}" in err
    assert f"data_dir of {config}" in err
    assert not (tmp_path / "data").exists()


def test_the_environment_variable_finds_the_configuration(tmp_path, monkeypatch, capsys, no_system_config):
    config = tmp_path / "gateway.toml"
    assert run(capsys, "init", "--config", str(config), "--data-dir", str(tmp_path / "data"))[0] == 0
    monkeypatch.setenv(CONFIG_ENV, str(config))
    code, out, _ = run(capsys, "devices", "list")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "pubkey")
    assert (
        code == 0
        and out.strip() == keys.public_key_bytes(load_gateway_key(tmp_path / "data" / "gateway.key")).hex()
    )


# --- init -----------------------------------------------------------------------------------------------


def uncommented(text: str) -> str:
    """The file with every commented-out key switched on (its section notes and header stay comments)."""
    lines = []
    for line in text.splitlines():
        key_value = line[2:].split("#")[0]
        if line.startswith("# ") and " = " in key_value and key_value.split(" = ", 1)[1].strip():
            line = line[2:]
        lines.append(line)
    return "\n".join(lines)


def test_init_writes_a_commented_configuration_the_key_and_the_broker_files(
    tmp_path, capsys, no_system_config
):
    config_path = tmp_path / "conf" / "gateway.toml"
    data = tmp_path / "data"
    port = broker.free_port()
    code, out, err = run(
        capsys, "init", "--config", str(config_path), "--data-dir", str(data), "--mqtt-port", str(port)
    )
    assert code == 0, err
    config = load_config(config_path)
    assert config == replace(
        GatewayConfig(),
        gateway=replace(GatewayConfig().gateway, data_dir=data),
        mqtt=replace(GatewayConfig().mqtt, port=port),
    )
    # every key is in the file with its default and a comment, commented out unless init set it
    text = config_path.read_text()
    everything = tomllib.loads(uncommented(text))
    for section in fields(GatewayConfig):
        values = getattr(GatewayConfig(), section.name)
        for key in fields(values):
            expected = getattr(values, key.name)
            got = everything[section.name][key.name]
            if f"{section.name}.{key.name}" == "gateway.data_dir":
                assert got == str(data)
            elif f"{section.name}.{key.name}" == "mqtt.port":
                assert got == port and f"\nport = {port}" in text
            else:
                if isinstance(expected, Path):
                    expected = str(expected)
                elif isinstance(expected, tuple):  # TOML arrays come back as lists
                    expected = list(expected)
                assert got == expected
                assert f"\n# {key.name} = " in text
    assert mode(config_path) == 0o644
    # the key: 0600 in a 0700 folder, and its public half printed
    key_path = data / "gateway.key"
    assert mode(data) == 0o700 and mode(key_path) == 0o600
    public = keys.public_key_bytes(load_gateway_key(key_path))
    assert public.hex() in out and keys.key_id_hex(public) in out
    # the broker files, for this gateway's port, and the next steps with this configuration's path
    broker_dir = tmp_path / "conf" / "mosquitto"
    assert f"listener {port} 127.0.0.1" in (broker_dir / broker.CONF_NAME).read_text()
    assert mode(broker_dir / broker.PASSWD_NAME) == 0o600 and mode(data / "mqtt-password") == 0o600
    assert "next steps" in out
    assert f"mosquitto -c {broker_dir / broker.CONF_NAME}" in out
    assert f"pinseal-gateway run --config {config_path}" in out


def test_init_refuses_to_overwrite_and_force_keeps_the_key(tmp_path, capsys, no_system_config):
    config_path = tmp_path / "gateway.toml"
    args = ["init", "--config", str(config_path), "--data-dir", str(tmp_path / "data")]
    assert run(capsys, *args)[0] == 0
    key_path = tmp_path / "data" / "gateway.key"
    key, text = key_path.read_bytes(), config_path.read_text()

    config_path.write_text(text + "\n# my own note\n")
    code, _, err = run(capsys, *args, "--mqtt-port", "1999")
    assert code == 1 and "refusing to overwrite" in err and str(config_path) in err and "--force" in err
    assert config_path.read_text().endswith("# my own note\n")

    code, out, _ = run(capsys, *args, "--mqtt-port", "1999", "--force")
    assert code == 0 and "kept the existing one" in out
    assert key_path.read_bytes() == key
    assert load_config(config_path).mqtt.port == 1999


def test_init_refuses_an_existing_key_without_a_configuration(tmp_path, capsys, no_system_config):
    """A data folder from an earlier install: its key is the gateway's identity, so init stops."""
    args = ["init", "--config", str(tmp_path / "gateway.toml"), "--data-dir", str(tmp_path / "data")]
    assert run(capsys, *args)[0] == 0
    (tmp_path / "gateway.toml").unlink()
    code, _, err = run(capsys, *args)
    assert code == 1 and str(tmp_path / "data" / "gateway.key") in err
    assert not (tmp_path / "gateway.toml").exists()


def test_init_for_the_system_broker_prints_the_install_commands(tmp_path, capsys, no_system_config):
    config_path = tmp_path / "gateway.toml"
    code, out, _ = run(
        capsys, "init", "--config", str(config_path), "--data-dir", str(tmp_path / "d"), "--system-broker"
    )
    assert code == 0
    conf = (tmp_path / "mosquitto" / broker.CONF_NAME).read_text()
    assert "password_file /etc/mosquitto/pinseal.passwd" in conf and "persistence" not in conf
    assert "/etc/mosquitto/conf.d/pinseal.conf" in out and "systemctl enable --now pinseal-gateway" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root")
def test_the_system_install_prints_commands_for_the_service_user(capsys, no_system_config, tmp_path):
    """At the system default the commands need no --config, and they run as the service user."""
    code, out, _ = run(
        capsys, "init", "--data-dir", str(tmp_path / "data"), "--system-broker", "--owner", "nobody"
    )
    assert code == 0
    assert f"configuration: {no_system_config}" in out and "--config" not in out
    assert "sudo -u nobody pinseal-gateway devices add PUBKEY-HEX" in out
    assert "sudo -u nobody pinseal-gateway status" in out
    assert "sudo -u nobody pinseal-gateway broker-config --system --out /tmp/pinseal-broker," in out


def test_init_with_an_unknown_owner_writes_nothing(tmp_path, capsys, no_system_config):
    code, _, err = run(
        capsys,
        "init",
        "--config",
        str(tmp_path / "gateway.toml"),
        "--data-dir",
        str(tmp_path / "data"),
        "--owner",
        "no-such-user-pinseal",
    )
    assert code == 1 and "no such user" in err and "useradd --system" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root")
def test_init_hands_the_data_folder_to_the_service_user(tmp_path, capsys, no_system_config):
    nobody = pwd.getpwnam("nobody")
    data = tmp_path / "data"
    code, _, err = run(
        capsys,
        "init",
        "--config",
        str(tmp_path / "gateway.toml"),
        "--data-dir",
        str(data),
        "--owner",
        "nobody",
    )
    assert code == 0, err
    for path in [data, *data.iterdir()]:
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), path
    assert mode(data / "gateway.key") == 0o600
    assert (tmp_path / "gateway.toml").stat().st_uid == 0  # the configuration stays root's


def test_every_key_and_section_has_a_comment():
    """A new configuration key gets its line in the file `init` writes: add it to config_template."""
    names = {
        f"{s.name}.{k.name}" for s in fields(GatewayConfig) for k in fields(getattr(GatewayConfig(), s.name))
    }
    assert names == config_template.KEY_NOTES.keys()
    assert {s.name for s in fields(GatewayConfig)} == config_template.SECTION_NOTES.keys()


def test_init_without_permission_says_how_to_run_it(tmp_path, capsys, monkeypatch, no_system_config):
    """As a user, the default places (/etc/pinseal, /var/lib) are root's: say what to do, not an errno."""

    def denied(path, settings):
        raise PermissionError(13, "Permission denied", str(path.parent))

    monkeypatch.setattr("pinseal_gateway.initialize.write_config", denied)
    code, _, err = run(capsys, "init", "--data-dir", str(tmp_path / "data"))
    assert code == 1 and f"cannot write {no_system_config.parent}: permission denied" in err
    assert "sudo pinseal-gateway init" in err and "--config and --data-dir" in err


@dataclass(frozen=True)
class _OptionalSection:
    password_file: str | None = None
    topics: tuple[str, ...] = ("a", 'b"c')


@dataclass(frozen=True)
class _Config:
    extra: _OptionalSection = field(default_factory=_OptionalSection)


def test_a_key_without_a_default_is_shown_but_never_set():
    """TOML has no null: an optional key (a later section's password file, say) stays a comment."""
    text = config_template.render(defaults=_Config())
    assert "\n# password_file =" in text and "unset by default" in text
    assert '# topics = ["a", "b\\"c"]' in text
    assert tomllib.loads(uncommented(text)) == {"extra": {"topics": ["a", 'b"c']}}
