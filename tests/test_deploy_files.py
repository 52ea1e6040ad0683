"""The deployment files, linted: there is no Docker engine in CI, so the Dockerfile, .dockerignore, compose.yaml,
the systemd unit and .env.example are read and checked against the code they deploy (dev.py's run requirements,
config.py's variables, the command table). Each checker returns its problems; every check is also shown to fire
on a broken copy, so none of them can pass vacuously. The container health check script is tested on a fake
/proc tree and once for real."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
UNIT = ROOT / "deploy" / "ict-signal-bot.service"
ENV_EXAMPLE = ROOT / ".env.example"
SELF_HOSTING = ROOT / "docs" / "self-hosting.md"


# --------------------------------------------------------------------------------------------------------------
# what the deployment must agree with
# --------------------------------------------------------------------------------------------------------------


def run_requirements() -> str:
    """The requirements file ``python3 dev.py run`` (the README's run command) installs: dev.py's REQUIREMENTS."""
    for node in ast.walk(ast.parse((ROOT / "dev.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REQUIREMENTS" for t in node.targets):
            return ast.literal_eval(node.value)["run"]
    raise AssertionError("dev.py has no REQUIREMENTS table")


def config_env_names(source: str) -> set[str]:
    """Environment variables config.py reads: keys of its NAME -> parser tables and literal get/getenv names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict) and node.keys:
            keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
            if all(isinstance(k, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", k) for k in keys):
                names.update(keys)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "get",
            "getenv",
        ):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+", str(first.value)):
                names.add(first.value)
    return names


def known_env() -> set[str]:
    return config_env_names((ROOT / "config.py").read_text(encoding="utf-8"))


def command_names() -> set[str]:
    """Every command of the bot's command tables (CommandSpec("name", ...) anywhere in the project's code)."""
    names: set[str] = set()
    for path in ROOT.rglob("*.py"):
        if not {".venv", "tests", "bench"} & set(path.relative_to(ROOT).parts):
            names.update(re.findall(r"CommandSpec\(\s*\"(\w+)\"", path.read_text(encoding="utf-8")))
    return names


# --------------------------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def healthcheck_command(text: str) -> list[str] | None:
    """The HEALTHCHECK's exec-form command, None when there is none (or it is NONE / shell form)."""
    for word, args in dockerfile_instructions(text):
        if word == "HEALTHCHECK":
            _, _, command = args.partition("CMD ")
            return exec_form(command.strip())
    return None


def dockerignore_patterns(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
    table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(table.get(p, re.escape(p)) for p in parts))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides; ``!`` keeps."""
    prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


def runtime_files() -> list[str]:
    """The files the image needs: the code the bot runs, its requirements, the bundled sample candles."""
    files = [run_requirements(), "deploy/healthcheck.py"]
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if not {".venv", "tests", "bench", "scripts", "deploy"} & set(rel.parts):
            files.append(rel.as_posix())
    files += [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "data" / "sample").iterdir())]
    return files


SECRETS_AND_JUNK = (".env", ".venv/bin/python", "data/positions.db", "data/trading_journal.json", ".git/HEAD")


def dockerignore_problems(patterns: list[str], needed: list[str]) -> list[str]:
    problems = [f"{p} would be sent to the image" for p in SECRETS_AND_JUNK if not dockerignored(p, patterns)]
    problems += [f"{p} is needed at run time but excluded" for p in needed if dockerignored(p, patterns)]
    return problems


def dockerfile_problems(text: str, requirements: str, patterns: list[str]) -> list[str]:
    instructions = dockerfile_instructions(text)
    words = [w for w, _ in instructions]
    problems = []
    base = next((a for w, a in instructions if w == "FROM"), "")
    match = re.match(r"python:3\.(\d+)", base)
    if not match or int(match[1]) < 11:
        problems.append(f"base image {base!r} is not Python 3.11+")
    install = next(
        (i for i, (w, a) in enumerate(instructions) if w == "RUN" and "pip install" in a and f"-r {requirements}" in a),
        None,
    )
    if install is None:
        problems.append(f"no RUN pip install -r {requirements}")
    else:
        copied = any(
            w == "COPY" and (requirements in a.split() or "." in a.split()[:-1]) for w, a in instructions[:install]
        )
        if not copied:
            problems.append(f"{requirements} is installed before it is copied into the image")
    commands = [exec_form(a) for w, a in instructions if w == "CMD"]
    if not commands or commands[-1] is None:
        problems.append("no exec-form CMD")
    elif not (Path(commands[-1][0]).name.startswith("python") and commands[-1][1:] == ["bot.py"]):
        problems.append(f"CMD {commands[-1]} does not run 'python bot.py'")
    volumes = [v for w, a in instructions if w == "VOLUME" for v in (exec_form(a) or a.split())]
    if "/data" not in volumes:
        problems.append("no VOLUME /data")
    envs = dict(kv.split("=", 1) for w, a in instructions if w == "ENV" for kv in shlex.split(a) if "=" in kv)
    if envs.get("BOT_DATA_DIR") != "/data":
        problems.append("ENV BOT_DATA_DIR is not /data")
    check = healthcheck_command(text)
    if check is None:
        problems.append("no exec-form HEALTHCHECK")
    else:
        scripts = [a for a in check if a.endswith(".py")]
        if not scripts or not (ROOT / scripts[0]).is_file() or dockerignored(scripts[0], patterns):
            problems.append(f"HEALTHCHECK runs {check}, whose script is not in the image")
    users = [(i, a.split(":")[0]) for i, (w, a) in enumerate(instructions) if w == "USER"]
    if not users or users[-1][1] in ("root", "0"):
        problems.append("the container runs as root (no non-root USER)")
    elif "CMD" in words and users[-1][0] > max(i for i, w in enumerate(words) if w == "CMD"):
        problems.append("USER comes after CMD")
    return problems


def test_dockerfile_matches_the_run_command_and_runs_unprivileged():
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text(encoding="utf-8"))
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8"), run_requirements(), patterns) == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "dev.py run" in readme and run_requirements() == "requirements.txt"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("FROM python:3.11-slim", "FROM python:3.10-slim", "not Python 3.11+"),
        ("-r requirements.txt", "-r requirements-dev.txt", "no RUN pip install -r requirements.txt"),
        ("COPY requirements.txt ./\n", "", "installed before it is copied"),
        ('CMD ["python", "bot.py"]', 'CMD ["python", "bot.py", "console"]', "does not run 'python bot.py'"),
        ('CMD ["python", "bot.py"]', "CMD python bot.py", "no exec-form CMD"),
        ('VOLUME ["/data"]', 'VOLUME ["/srv"]', "no VOLUME /data"),
        ("BOT_DATA_DIR=/data", "BOT_DATA_DIR=data", "BOT_DATA_DIR is not /data"),
        ("HEALTHCHECK ", "# HEALTHCHECK ", "no exec-form HEALTHCHECK"),
        ("deploy/healthcheck.py", "deploy/missing.py", "script is not in the image"),
        ("USER bot", "USER root", "runs as root"),
        ("USER bot\n", "", "runs as root"),
    ],
)
def test_each_dockerfile_check_fires_on_a_broken_copy(old, new, problem):
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text, f"the Dockerfile changed: update this test's {old!r}"
    broken = text.replace(old, new)
    if old == "HEALTHCHECK ":  # comment out the continuation line too
        broken = broken.replace('    CMD ["python", "deploy/healthcheck.py"]', "")
    problems = dockerfile_problems(broken, "requirements.txt", dockerignore_patterns(DOCKERIGNORE.read_text()))
    assert any(problem in p for p in problems), problems


def test_dockerignore_keeps_secrets_and_runtime_data_out_and_the_code_in():
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text(encoding="utf-8"))
    assert dockerignore_problems(patterns, runtime_files()) == []
    assert "data/sample/BTCUSDT-1h.csv.gz" in runtime_files()


def test_dockerignore_checks_fire():
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text(encoding="utf-8"))
    without_env = [p for p in patterns if p != ".env"]
    assert ".env would be sent to the image" in dockerignore_problems(without_env, [])
    assert any("data/sample" in p for p in dockerignore_problems([*patterns, "data"], runtime_files()))
    assert any("chat/" in p for p in dockerignore_problems([*patterns, "chat"], runtime_files()))


def test_dockerignore_matching_follows_docker():
    assert dockerignored("a.png", ["*.png"]) and not dockerignored("docs/a.png", ["*.png"])  # * stays in its dir
    assert dockerignored("docs/a.png", ["**/*.png"]) and not dockerignored("docs/a.png", ["**/*.png", "!docs/*.png"])
    assert dockerignored("data/x.db", ["data/*", "!data/sample"])
    assert not dockerignored("data/sample/x.csv", ["data/*", "!data/sample"])
    assert dockerignored(".venv/lib/x.py", [".venv"])


# --------------------------------------------------------------------------------------------------------------
# compose.yaml (no PyYAML: a reader for the block-style subset compose files use)
# --------------------------------------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    quotes = 0
    for i, char in enumerate(line):
        quotes += char in "\"'"
        if char == "#" and quotes % 2 == 0 and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    if raw.startswith("[") or raw.startswith('"'):
        return json.loads(raw)
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1]
    return raw


def read_yaml(text: str) -> Any:
    """Block mappings, ``- scalar`` lists, scalars and JSON-style flow lists; ValueError on anything else."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise ValueError(f"line {number}: tab indentation")
        if _strip_comment(line).strip():
            lines.append((len(line) - len(line.lstrip()), _strip_comment(line).strip(), number))

    def block(i: int, indent: int) -> tuple[Any, int]:
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(_scalar(lines[i][1][2:]))
                i += 1
            return items, i
        mapping: dict[str, Any] = {}
        while i < len(lines) and lines[i][0] == indent:
            key, colon, rest = lines[i][1].partition(":")
            if not colon or (rest and not rest.startswith(" ")) or key in mapping:
                raise ValueError(f"line {lines[i][2]}: expected a new 'key: value'")
            i += 1
            if rest.strip():
                mapping[key] = _scalar(rest)
            elif i < len(lines) and lines[i][0] > indent:
                mapping[key], i = block(i, lines[i][0])
            else:
                mapping[key] = None
        if i < len(lines) and lines[i][0] > indent:
            raise ValueError(f"line {lines[i][2]}: unexpected indentation")
        return mapping, i

    value, end = block(0, lines[0][0]) if lines else ({}, 0)
    if end != len(lines):
        raise ValueError(f"line {lines[end][2]}: unexpected dedent")
    return value


def compose_problems(doc: dict[str, Any], docker_healthcheck: list[str] | None) -> list[str]:
    services = doc.get("services") or {}
    if len(services) != 1:
        return [f"expected one service, found {sorted(services)}"]
    name, service = next(iter(services.items()))
    problems = []
    if service.get("build") != "." or not DOCKERFILE.is_file():
        problems.append(f"{name}: not built from this directory's Dockerfile")
    env_files = service.get("env_file")
    if ".env" not in ([env_files] if isinstance(env_files, str) else env_files or []):
        problems.append(f"{name}: env_file is not .env")
    if service.get("restart") != "unless-stopped":
        problems.append(f"{name}: restart is {service.get('restart')!r}, not unless-stopped")
    declared = doc.get("volumes") or {}
    mounts = [v.split(":") for v in service.get("volumes") or []]
    if not any(len(m) >= 2 and m[1] == "/data" and m[0] in declared for m in mounts):
        problems.append(f"{name}: no named volume (declared under volumes:) mounted at /data")
    if (service.get("environment") or {}).get("BOT_DATA_DIR", "/data") != "/data":
        problems.append(f"{name}: BOT_DATA_DIR is not the /data volume")
    test = (service.get("healthcheck") or {}).get("test")
    if not test or test[:1] != ["CMD"] or test[1:] != docker_healthcheck:
        problems.append(f"{name}: healthcheck {test} is not the Dockerfile's {docker_healthcheck}")
    return problems


def test_compose_file_names_volume_restart_policy_env_file_and_health_check():
    doc = read_yaml(COMPOSE.read_text(encoding="utf-8"))
    assert compose_problems(doc, healthcheck_command(DOCKERFILE.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("env_file: .env", "env_file: prod.env", "env_file is not .env"),
        ("restart: unless-stopped", "restart: always", "not unless-stopped"),
        ("- bot-data:/data", "- ./data:/data", "no named volume"),
        ("\nvolumes:\n  bot-data:\n", "\n", "no named volume"),
        ("BOT_DATA_DIR: /data", "BOT_DATA_DIR: /srv", "BOT_DATA_DIR is not the /data volume"),
        ('"deploy/healthcheck.py"', '"deploy/other.py"', "is not the Dockerfile's"),
        ("build: .", "build: ./other", "not built from"),
    ],
)
def test_each_compose_check_fires_on_a_broken_copy(old, new, problem):
    text = COMPOSE.read_text(encoding="utf-8")
    assert old in text, f"compose.yaml changed: update this test's {old!r}"
    problems = compose_problems(read_yaml(text.replace(old, new)), healthcheck_command(DOCKERFILE.read_text()))
    assert any(problem in p for p in problems), problems


def test_yaml_reader_reads_the_subset_and_rejects_broken_indentation():
    assert read_yaml('a:\n  b: "x # y"  # note\n  c: [1, 2]\n  d:\n    - e:f\nz:\n') == {
        "a": {"b": "x # y", "c": [1, 2], "d": ["e:f"]},
        "z": None,
    }
    with pytest.raises(ValueError):
        read_yaml("a:\n    b: 1\n  c: 2\n")
    with pytest.raises(ValueError):
        read_yaml("a: 1\na: 2\n")
    with pytest.raises(ValueError):
        read_yaml(COMPOSE.read_text().replace("    restart:", "   restart:"))


# --------------------------------------------------------------------------------------------------------------
# systemd unit
# --------------------------------------------------------------------------------------------------------------


def read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of (key, value) in order; repeated keys (Environment=) are kept, unlike configparser."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current.append((key.strip(), value.strip()))
    return sections


def unit_problems(sections: dict[str, list[tuple[str, str]]]) -> list[str]:
    service = dict(sections.get("Service", []))
    problems = []
    argv = shlex.split(service.get("ExecStart", ""))
    if not argv or not argv[0].startswith("/") or "venv" not in argv[0] or not Path(argv[0]).name.startswith("python"):
        problems.append(f"ExecStart {argv} does not start with a venv's python (absolute path)")
    if argv[1:] != ["bot.py"] and not (len(argv) == 2 and argv[1].endswith("/bot.py")):
        problems.append(f"ExecStart {argv} does not run bot.py")
    if service.get("Restart") not in ("on-failure", "always"):
        problems.append(f"Restart={service.get('Restart')}")
    if service.get("User", "root") in ("root", "0"):
        problems.append("runs as root (no dedicated User=)")
    if not service.get("WorkingDirectory", "").startswith("/"):
        problems.append("no absolute WorkingDirectory=")
    if not service.get("EnvironmentFile"):
        problems.append("no EnvironmentFile=")
    env = dict(v.split("=", 1) for k, v in sections.get("Service", []) if k == "Environment" and "=" in v)
    state = service.get("StateDirectory")
    if not state or env.get("BOT_DATA_DIR") != f"/var/lib/{state}":
        problems.append("BOT_DATA_DIR is not the unit's StateDirectory")
    if not dict(sections.get("Install", [])).get("WantedBy"):
        problems.append("no [Install] WantedBy=")
    return problems


def test_systemd_unit_runs_bot_py_from_a_venv_as_a_dedicated_user():
    assert unit_problems(read_unit(UNIT.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (".venv/bin/python bot.py", ".venv/bin/python bot.py console", "does not run bot.py"),
        ("ExecStart=/opt/ict-signal-bot/.venv/bin/python", "ExecStart=/usr/bin/python3", "venv's python"),
        ("Restart=on-failure", "Restart=no", "Restart=no"),
        ("User=ictbot", "User=root", "runs as root"),
        ("WorkingDirectory=/opt/ict-signal-bot", "WorkingDirectory=", "WorkingDirectory"),
        ("EnvironmentFile=", "#EnvironmentFile=", "no EnvironmentFile"),
        ("BOT_DATA_DIR=/var/lib/ict-signal-bot", "BOT_DATA_DIR=/tmp", "StateDirectory"),
        ("WantedBy=multi-user.target", "", "WantedBy"),
    ],
)
def test_each_unit_check_fires_on_a_broken_copy(old, new, problem):
    text = UNIT.read_text(encoding="utf-8")
    assert old in text, f"the unit changed: update this test's {old!r}"
    problems = unit_problems(read_unit(text.replace(old, new)))
    assert any(problem in p for p in problems), problems


# --------------------------------------------------------------------------------------------------------------
# .env.example and the self-hosting page
# --------------------------------------------------------------------------------------------------------------

EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def env_example_problems(text: str, known: set[str]) -> list[str]:
    problems, seen = [], set()
    for line in text.splitlines():
        match = EXAMPLE_LINE.match(line.strip())
        if not match:
            continue
        name, value = match.groups()
        if name not in known:
            problems.append(f"{name} is not read by config.py")
        if name in seen:
            problems.append(f"{name} appears twice")
        if "#" in value:
            problems.append(f"{name}: a comment after the value (Docker --env-file and systemd keep it)")
        seen.add(name)
    return problems


def example_names(text: str) -> set[str]:
    return {m[1] for line in text.splitlines() if (m := EXAMPLE_LINE.match(line.strip()))}


def table_names(text: str) -> set[str]:
    return set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`", text, flags=re.MULTILINE))


def test_env_example_names_only_variables_config_reads_and_all_of_them():
    known = known_env()
    assert {"TELEGRAM_BOT_TOKEN", "ADMIN_IDS", "BOT_DATA_DIR", "WATCHLIST"} <= known
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert env_example_problems(text, known) == []
    assert known - example_names(text) == set(), "config.py reads these; add them to .env.example"
    assert example_names("# A_B=1\nC_D=2\n# just a comment\n") == {"A_B", "C_D"}


def test_env_example_checks_fire():
    known = known_env()
    assert env_example_problems("# NOT_A_SETTING=0.1\n", known) == ["NOT_A_SETTING is not read by config.py"]
    assert env_example_problems("ADMIN_IDS=1\n# ADMIN_IDS=2\n", known) == ["ADMIN_IDS appears twice"]
    assert env_example_problems("MARKET_DATA=binance  # or sample\n", known)[0].startswith("MARKET_DATA: a comment")


def test_config_env_names_reads_tables_and_lookups():
    source = 'P = {"A_B": int, "WATCHLIST": str}\nQ = {"x": 1}\nos.environ.get("C_D")\nd.get("lower")\n'
    assert config_env_names(source) == {"A_B", "WATCHLIST", "C_D"}


def test_env_example_values_are_valid_settings(tmp_path):
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    uncommented = "\n".join(re.sub(r"^#\s*([A-Z][A-Z0-9_]*=)", r"\1", line) for line in text.splitlines())
    (tmp_path / ".env").write_text(uncommented, encoding="utf-8")
    settings = Settings.from_env(env={}, dotenv=tmp_path / ".env")
    assert settings.telegram_bot_token and settings.admin_ids  # the lines were really read
    (tmp_path / ".env").write_text(uncommented.replace("MIN_CONFIDENCE=60", "MIN_CONFIDENCE=600"), encoding="utf-8")
    with pytest.raises(ConfigError, match="MIN_CONFIDENCE"):
        Settings.from_env(env={}, dotenv=tmp_path / ".env")


# `/name` spans that are not the bot's: BotFather's commands and one-level paths (/data, /tmp)
NOT_BOT_COMMANDS = {"newbot", "revoke", "setcommands", "setdescription", "setabouttext", "setuserpic", "data", "tmp"}


def doc_problems(text: str, known: set[str], commands: set[str]) -> list[str]:
    """Variables in the page's tables are read by config.py or marked planned; so are the /commands it names."""
    problems = []
    for line in text.splitlines():
        planned = "planned" in line.lower()
        row = re.match(r"^\|\s*`([A-Z][A-Z0-9_]+)`", line)
        if row and row[1] not in known and not planned:
            problems.append(f"{row[1]} is documented as working but config.py does not read it")
        for command in re.findall(r"`/([a-z_]+)(?:@\w+)?(?:\s[^`]*)?`", line):  # `/cmd`, `/cmd@bot`, `/cmd ARGS`
            if command not in commands | NOT_BOT_COMMANDS and not planned:
                problems.append(f"/{command} is documented but not a bot command")
    return problems


def test_self_hosting_page_claims_only_what_exists():
    text = SELF_HOSTING.read_text(encoding="utf-8")
    commands = command_names()
    assert {"start", "health", "backup", "signal"} <= commands
    assert doc_problems(text, known_env(), commands) == []
    for name in ("Dockerfile", "compose.yaml", "deploy/ict-signal-bot.service", ".env.example", "CHANGELOG.md"):
        assert name in text and (ROOT / name).is_file(), name
    assert known_env() - table_names(text) == set(), "config.py reads these; document them in docs/self-hosting.md"
    assert set(backup_files()) - table_names_lower(text) == set(), "/backup sends these; list them in the table"


def backup_files() -> tuple[str, ...]:
    """The stores /backup sends: admin_module.BACKUP_FILES."""
    for node in ast.walk(ast.parse((ROOT / "admin_module.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "BACKUP_FILES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("admin_module has no BACKUP_FILES")


def table_names_lower(text: str) -> set[str]:
    """File names in the first column of the page's tables (`positions.db`, `ml_model.pkl`, `ml_ensemble.pkl`)."""
    return {n for cell in re.findall(r"^\|([^|]+)\|", text, flags=re.MULTILINE) for n in re.findall(r"`([^`]+)`", cell)}


def test_doc_checks_fire():
    known, commands = known_env(), command_names()
    assert table_names("| `A_B` | x |\n| `c` |\ntext `D_E`") == {"A_B"}
    assert table_names_lower("| `a.db` | x `b.json` |\n| `c.pkl`, `d.pkl` | y |") == {"a.db", "c.pkl", "d.pkl"}
    assert doc_problems("| `NOT_A_SETTING` | 0.1 | fees |", known, commands)
    assert not doc_problems("| `NOT_A_SETTING` | 0.1 | planned: fees |", known, commands)
    assert doc_problems("send `/nosuchcommand` to the bot", known, commands)
    assert doc_problems("send `/nosuchcommand BTCUSDT` or `/nosuch@my_bot`", known, commands) == [
        "/nosuchcommand is documented but not a bot command",
        "/nosuch is documented but not a bot command",
    ]
    assert not doc_problems(
        "in `/opt/ict-signal-bot` and `/data`, `/signal@my_bot` or `/signal BTCUSDT 4h`", known, commands
    )
    assert not doc_problems("| `ADMIN_IDS` | | send `/health` |", known, commands)
