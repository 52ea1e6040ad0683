from datetime import time
from pathlib import Path

import pytest

from config import ConfigError, Settings, read_dotenv

TOKEN = "123456:" + "A" * 35


def test_defaults_match_the_spec():
    s = Settings.from_env({}, dotenv=None)
    assert s.telegram_bot_token is None
    assert s.signal_rate_limit == (5, 60)
    assert s.watchlist == ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
    assert s.auto_signal_timeframes == ("1h", "4h")
    assert s.min_confidence == 60 and s.monitor_interval_seconds == 30
    assert s.daily_report_time == time(8, 0) and s.bot_timezone == "UTC"
    assert s.market_data == "binance" and s.bot_data_dir == Path("data")


def test_values_are_parsed():
    s = Settings.from_env(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "ADMIN_IDS": "1, 2",
            "ALLOWED_USER_IDS": "3",
            "SIGNAL_RATE_LIMIT": "3/10",
            "WATCHLIST": "btcusdt, ethusdt,BTCUSDT",
            "AUTO_SIGNAL_TIMEFRAMES": "15m,4H",
            "MARKET_DATA": "SAMPLE",
            "DAILY_REPORT_TIME": "7:30",
            "BOT_TIMEZONE": "Europe/Berlin",
        },
        dotenv=None,
    )
    assert s.admin_ids == {1, 2} and s.is_admin(2) and not s.is_admin(3)
    assert s.is_allowed(3) and s.is_allowed(1) and not s.is_allowed(4)
    assert s.signal_rate_limit == (3, 10)
    assert s.watchlist == ("BTCUSDT", "ETHUSDT")
    assert s.auto_signal_timeframes == ("15m", "4h")
    assert s.market_data == "sample" and s.daily_report_time == time(7, 30)


@pytest.mark.parametrize(
    "name,value",
    [
        ("SIGNAL_RATE_LIMIT", "five"),
        ("ADMIN_IDS", "alice"),
        ("MARKET_DATA", "kraken"),
        ("AUTO_SIGNAL_TIMEFRAMES", "7h"),
        ("MIN_CONFIDENCE", "120"),
        ("DAILY_REPORT_TIME", "25:00"),
        ("BOT_TIMEZONE", "Mars/Olympus"),
        ("BINANCE_API_BASE_URL", "ftp://x"),
        ("WATCHLIST", "BTC USDT"),
        ("MONITOR_INTERVAL_SECONDS", "0"),
    ],
)
def test_bad_value_names_the_variable_in_one_line(name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value}, dotenv=None)
    message = str(err.value)
    assert message.startswith(name) and "\n" not in message


def test_token_is_never_shown():
    s = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN}, dotenv=None)
    assert TOKEN not in repr(s) and TOKEN not in str(s)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"TELEGRAM_BOT_TOKEN": "123:short-secret"}, dotenv=None)
    assert "short-secret" not in str(err.value)


def test_dotenv_file_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nexport MIN_CONFIDENCE=70\nWATCHLIST="ETHUSDT"\nBOT_TIMEZONE=UTC # inline\n')
    assert read_dotenv(env_file)["BOT_TIMEZONE"] == "UTC"
    s = Settings.from_env({"WATCHLIST": "SOLUSDT"}, dotenv=env_file)
    assert s.min_confidence == 70 and s.watchlist == ("SOLUSDT",)


def test_bot_rejects_bad_configuration_with_exit_2(monkeypatch, capsys):
    import bot

    monkeypatch.setenv("MIN_CONFIDENCE", "abc")
    assert bot.main(["signal", "BTCUSDT"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("configuration error: MIN_CONFIDENCE") and "\n" not in err


def test_bot_rejects_bad_arguments_with_exit_2(capsys):
    import bot

    assert bot.main(["signal"]) == 2
    assert "required" in capsys.readouterr().err
    assert bot.main(["frobnicate"]) == 2


def test_costs_and_exit_plan_defaults_and_values():
    s = Settings.from_env({}, dotenv=None)
    assert (s.fee_pct, s.slippage_pct, s.exit_plan) == (0.1, 0.02, (0.0, 0.0, 100.0))
    s = Settings.from_env({"FEE_PCT": "0.075", "SLIPPAGE_PCT": "0", "EXIT_PLAN": "50, 30, 20"}, dotenv=None)
    assert (s.fee_pct, s.slippage_pct, s.exit_plan) == (0.075, 0.0, (50.0, 30.0, 20.0))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FEE_PCT", "-0.1"),
        ("FEE_PCT", "ten"),
        ("FEE_PCT", "nan"),
        ("SLIPPAGE_PCT", "6"),
        ("EXIT_PLAN", "50,50"),
        ("EXIT_PLAN", "50,30,30"),
        ("EXIT_PLAN", "120,-20,0"),
        ("EXIT_PLAN", "half,half,0"),
    ],
)
def test_bad_costs_or_exit_plan_name_the_variable_in_one_line(name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value}, dotenv=None)
    message = str(err.value)
    assert message.startswith(f"{name}=") and "\n" not in message


def test_gate_and_dask_scheduler():
    s = Settings.from_env({}, dotenv=None)
    assert s.gate == "evidence" and s.dask_scheduler_address is None
    s = Settings.from_env({"GATE": "Confidence", "DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.5:8786"}, dotenv=None)
    assert s.gate == "confidence" and s.dask_scheduler_address == "tcp://10.0.0.5:8786"
    assert Settings.from_env({"GATE": "off"}, dotenv=None).gate == "off"


@pytest.mark.parametrize(("name", "value"), [("GATE", "always"), ("DASK_SCHEDULER_ADDRESS", "tcp://no port")])
def test_bad_gate_or_scheduler_names_the_variable_in_one_line(name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value}, dotenv=None)
    message = str(err.value)
    assert message.startswith(f"{name}=") and "\n" not in message


def test_webhook_and_channel_settings():
    s = Settings.from_env({}, dotenv=None)
    assert s.telegram_webhook_url is None and s.telegram_webhook_listen == ("0.0.0.0", 8443)
    assert s.broadcast_channel_id is None
    env = {
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/tg/hook",
        "TELEGRAM_WEBHOOK_LISTEN": "127.0.0.1:9000",
        "TELEGRAM_WEBHOOK_SECRET": "s3cret_-X",
        "BROADCAST_CHANNEL_ID": "-1001234567890",
    }
    s = Settings.from_env(env, dotenv=None)
    assert s.telegram_webhook_url == "https://bot.example.com/tg/hook" and s.telegram_webhook_listen == (
        "127.0.0.1",
        9000,
    )
    assert s.telegram_webhook_secret == "s3cret_-X" and "s3cret" not in repr(s)
    assert s.broadcast_channel_id == -1001234567890
    with pytest.raises(ConfigError) as err:  # a webhook without a secret would accept anyone's posts
        Settings.from_env({"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook"}, dotenv=None)
    assert str(err.value).startswith("TELEGRAM_WEBHOOK_SECRET is required")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TELEGRAM_WEBHOOK_URL", "http://bot.example.com/hook"),
        ("TELEGRAM_WEBHOOK_LISTEN", "8443"),
        ("TELEGRAM_WEBHOOK_LISTEN", "0.0.0.0:99999"),
        ("TELEGRAM_WEBHOOK_SECRET", "has space"),
        ("BROADCAST_CHANNEL_ID", "@mychannel"),
    ],
)
def test_bad_webhook_or_channel_names_the_variable_in_one_line(name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {name: value, "TELEGRAM_WEBHOOK_SECRET": "ok"} if name != "TELEGRAM_WEBHOOK_SECRET" else {name: value},
            dotenv=None,
        )
    message = str(err.value)
    assert message.startswith(f"{name}=") and "\n" not in message
    if name == "TELEGRAM_WEBHOOK_SECRET":
        assert value not in message
