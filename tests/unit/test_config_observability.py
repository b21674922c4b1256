"""The [http] and [logging] settings: defaults, addresses, and one line per mistake."""

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings

TEAM = '[[teams]]\nkey = "business"\nname = "Business"\naddress = "business@vtm.example"\n'
TEAM += "default = true\n"


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "gateway.toml"
    path.write_text(TEAM + text)
    return load_settings(path)


def test_http_is_on_loopback_and_logs_are_text_by_default(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.http.listen == "127.0.0.1:9425"
    assert settings.http.address == ("127.0.0.1", 9425)
    assert settings.http.outbox_max_age_seconds == 900
    assert (settings.logging.level, settings.logging.format) == ("info", "text")


@pytest.mark.parametrize(
    ("listen", "address"),
    [("", None), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:9425", ("::1", 9425)),
     ("localhost:0", ("localhost", 0))],
)  # fmt: skip
def test_listen_takes_host_and_port_or_nothing(
    tmp_path: Path, listen: str, address: tuple[str, int] | None
) -> None:
    assert load(tmp_path, f'[http]\nlisten = "{listen}"\n').http.address == address


@pytest.mark.parametrize("listen", ["9425", "127.0.0.1", "127.0.0.1:http", ":9425",
                                    "127.0.0.1:70000", "::1:9425"])  # fmt: skip
def test_a_bad_listen_address_is_named(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, f'[http]\nlisten = "{listen}"\n')
    (problem,) = error.value.problems
    assert problem.startswith("http.listen: ")


def test_log_format_and_outbox_age_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, '[logging]\nformat = "xml"\n[http]\noutbox_max_age_seconds = 0\n')
    keys = sorted(p.split(":")[0] for p in error.value.problems)
    assert keys == ["http.outbox_max_age_seconds", "logging.format"]
