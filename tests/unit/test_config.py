from pathlib import Path

import pytest

from gateway.config import PACKAGE_ROOT, ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


TEAM = '[[teams]]\nkey = "business"\nname = "Business"\naddress = "business@vtm.example"\n'


@pytest.mark.parametrize("name", ["demo.toml", "gateway.example.toml"])
def test_shipped_config_files_are_valid(name: str) -> None:
    settings = load_settings(PACKAGE_ROOT / "config" / name)
    assert settings.default_team.key == "business"


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TEAM + "default = true\n"))
    assert settings.desk.reference_prefix == "VTM"
    assert settings.desk.reopen_days == 14
    assert settings.database.url == "sqlite+aiosqlite:///var/gateway.db"
    assert settings.outbound.transport == "smtp"


def test_every_problem_is_reported_on_its_own_line_naming_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[desk]\nreopen_days = -1\nlanguage = "de"\ncolour = "blue"\n'
        '[database]\nurl = "mysql://x"\n' + TEAM + "[[mailboxes]]\nname = 'desk'\nport = 0\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = info.value.problems
    keys = [p.split(":", 1)[0] for p in problems]
    assert "desk.reopen_days" in keys
    assert "desk.language" in keys
    assert "desk.colour" in keys
    assert "database.url" in keys
    assert "mailboxes[0].port" in keys
    assert any("unknown key" in p for p in problems)


def test_exactly_one_default_team_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one team must have default = true"):
        load_settings(write(tmp_path, TEAM))


def test_team_notices_to_a_desk_address_are_refused(tmp_path: Path) -> None:
    text = TEAM + 'default = true\nnotify = ["business@vtm.example"]\n'
    with pytest.raises(ConfigError, match="must not name a desk address"):
        load_settings(write(tmp_path, text))


def test_unreadable_password_file_is_reported(tmp_path: Path) -> None:
    text = (TEAM + "default = true\n[[mailboxes]]\nname = 'desk'\nusername = 'u'\n"
            "password_file = '/nonexistent/secret'\n")  # fmt: skip
    with pytest.raises(ConfigError, match="password_file"):
        load_settings(write(tmp_path, text))


def test_broken_toml_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[desk\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml")


def test_example_config_documents_every_key_with_its_default() -> None:
    import re

    from pydantic import BaseModel

    from gateway.config import Settings

    text = (PACKAGE_ROOT / "config" / "gateway.example.toml").read_text()
    documented = set(re.findall(r"^\s*([a-z0-9_]+)\s*=", text, flags=re.MULTILINE))
    sections = set(re.findall(r"^\[\[?([a-z_]+)\]\]?", text, flags=re.MULTILINE))

    def keys(model: type[BaseModel]) -> set[str]:
        found = set()
        for name, field in model.model_fields.items():
            inner = field.annotation
            args = getattr(inner, "__args__", ())
            nested = [a for a in (inner, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
            if nested:
                assert name in sections, f"section [{name}] is not in the example config"
                found |= keys(nested[0])
            else:
                found.add(name)
        return found

    missing = keys(Settings) - documented
    assert not missing, f"keys missing from config/gateway.example.toml: {sorted(missing)}"


def test_hygiene_sections_report_bad_keys_agents_and_domains(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    text = (
        "[security]\n"
        f'message_id_key_file = "{short}"\n'
        f'previous_message_id_key_files = ["{tmp_path}/missing.key"]\n'
        "[access]\n"
        'agents = ["anna", "@vtm.example"]\n'
        'organisations = [["acme.nl", "not a domain"]]\n'
        'strangers = "append"\n'
        "[limits]\nper_recipient_day = -1\n" + TEAM + "default = true\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    problems = "\n".join(info.value.problems)
    assert "security.message_id_key_file: key file" in problems
    assert "fewer than 16 bytes" in problems
    assert "security.previous_message_id_key_files: key file" in problems
    assert "is not readable" in problems
    assert "access.agents: 'anna' is neither an address nor @domain" in problems
    assert "access.organisations: not mail domains: not a domain" in problems
    assert "access.strangers" in problems
    assert "limits.per_recipient_day" in problems


def test_hygiene_defaults_are_as_strict_as_documented(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TEAM + "default = true\n"))
    assert settings.access.strangers == "new_ticket"
    assert settings.access.mailing_lists == "ignore"
    assert (
        settings.limits.per_ticket_10_minutes,
        settings.limits.per_ticket_hour,
        settings.limits.per_recipient_day,
    ) == (10, 25, 40)
    assert settings.security.trusted_authserv_ids == []


def test_calendar_and_sla_mistakes_are_named(tmp_path: Path) -> None:
    text = (
        '[calendar]\ntimezone = "Europe/Amsterdan"\n'
        "[sla]\nfirst_response_hours = [1, 2]\nwarn_fraction = 1.5\n" + TEAM + "default = true\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    problems = "\n".join(info.value.problems)
    assert "calendar: unknown timezone 'Europe/Amsterdan'" in problems
    assert "sla.first_response_hours" in problems
    assert "sla.warn_fraction" in problems
    text = '[calendar]\noffice_start = "17:00"\noffice_end = "08:30"\n' + TEAM + "default = true\n"
    with pytest.raises(ConfigError, match="calendar: office hours must end after they start"):
        load_settings(write(tmp_path, text))


def test_the_calendar_setting_builds_the_business_calendar(tmp_path: Path) -> None:
    from datetime import date

    text = (
        '[calendar]\nweekdays = ["mon", "tue"]\nclosing_days = ["2026-12-29"]\n'
        'open_on_holidays = ["Goede vrijdag"]\n' + TEAM + "default = true\n"
    )
    calendar = load_settings(write(tmp_path, text)).calendar.calendar()
    assert calendar.is_business_day(date(2026, 12, 28))  # a Monday
    assert not calendar.is_business_day(date(2026, 12, 29))  # closed that Tuesday
    assert not calendar.is_business_day(date(2026, 12, 30))  # Wednesday: not a weekday
