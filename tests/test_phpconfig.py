"""ncauth.phpconfig: Nextcloud's config.php read as data, never run.

PHP itself is the oracle wherever /usr/bin/php exists: generated configs (written by
PHP's own var_export, or hand-edited-style literals from a grammar) are evaluated by
``include`` -- only files these tests generate from safe literal pieces -- and must
give exactly what the parser gives, key types and order included.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncauth import phpconfig
from ncauth.errors import ConfigError
from ncauth.phpconfig import (
    nextcloud_settings,
    parse_config_php,
    php_array_merge,
    php_bool,
    php_int,
    php_string,
    read_nextcloud_config,
    split_dbhost,
    system_value,
    system_value_bool,
    system_value_int,
    system_value_string,
)

VECTORS = Path(__file__).parent / "vectors" / "phpconfig"
PHP = shutil.which("php")
needs_php = pytest.mark.skipif(PHP is None, reason="php CLI not installed (the oracle for these comparisons)")
INT_MAX = (1 << 63) - 1
INT_MIN = -(1 << 63)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers ---------------------------------------------------------------------------


def canon(value: Any) -> Any:
    """Type-exact, order-exact comparable form of a parsed PHP value."""
    if isinstance(value, dict):
        return ("a", tuple((canon(k), canon(v)) for k, v in value.items()))
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("i", value)
    if isinstance(value, float):
        return ("f", "nan" if math.isnan(value) else struct.pack(">d", value).hex())
    if isinstance(value, str):
        return ("s", value.encode("utf-8").hex())
    if value is None:
        return ("n",)
    raise TypeError(type(value))


def canon_from_php(tagged: Any) -> Any:
    kind = tagged[0]
    if kind == "a":
        return ("a", tuple((canon_from_php(k), canon_from_php(v)) for k, v in tagged[1]))
    if kind == "f":
        return canon(float(tagged[1]))
    if kind == "s":
        return ("s", tagged[1])
    if kind == "n":
        return ("n",)
    return (kind, tagged[1])


PHP_TAG = r"""
function tag($v) {
    if (is_array($v)) { $o = []; foreach ($v as $k => $x) { $o[] = [tag($k), tag($x)]; } return ['a', $o]; }
    if (is_bool($v)) return ['b', $v];
    if (is_int($v)) return ['i', $v];
    if (is_float($v)) return ['f', var_export($v, true)];
    if (is_string($v)) return ['s', bin2hex($v)];
    return ['n'];
}
"""


def php_run(code: str, stdin: str = "", *args: str) -> str:
    proc = subprocess.run(
        [PHP, "-n", "-d", "display_errors=stderr", "-d", "error_reporting=0", "-r", code, "--", *args],
        input=stdin.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def php_include_all(paths: list[Path]) -> list[Any]:
    """PHP's own view of each (test-generated, literal-only) file: the tagged $CONFIG
    if it is an array, None if Nextcloud would ignore it, 'ERR' if PHP refuses it."""
    code = (
        PHP_TAG
        + r"""
foreach (array_slice($argv, 1) as $f) {
    unset($CONFIG);
    try { include $f; echo json_encode(isset($CONFIG) && is_array($CONFIG) ? tag($CONFIG) : null), "\n"; }
    catch (Throwable $e) { echo "\"ERR\"\n"; }
}"""
    )
    out = php_run(code, "", *map(str, paths)).splitlines()
    assert len(out) == len(paths)
    results = []
    for line in out:
        value = json.loads(line)
        results.append(value if value in (None, "ERR") else canon_from_php(value))
    return results


def ours(source: bytes) -> Any:
    try:
        value = parse_config_php(source)
    except ConfigError:
        return "ERR"
    return None if value is None else canon(value)


def jsonable(value: Any) -> Any:
    """What json_encode makes of a PHP value (a list when keys are 0..n-1 in order)."""
    if isinstance(value, dict):
        if list(value.keys()) == list(range(len(value))):
            return [jsonable(v) for v in value.values()]
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def strict_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def write(path: Path, text: str | bytes, mode: int = 0o640) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir(mode=0o750)
    d.chmod(0o750)
    write(d / "config.php", "<?php\n$CONFIG = array (\n  'dbtype' => 'mysql',\n  'secret' => 'fake',\n);\n")
    return d


def copy_vector(name: str, tmp_path: Path) -> Path:
    """A vector folder copied with safe modes (a checkout may be group-writable)."""
    dst = tmp_path / name
    shutil.copytree(VECTORS / name, dst, ignore=shutil.ignore_patterns("expected.json"))
    dst.chmod(0o750)
    for f in dst.iterdir():
        f.chmod(0o640)
    return dst


# --- fixed vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["install_mysql", "install_pgsql", "multi", "hand_edited"])
def test_vectors_match_what_php_computed(name: str, tmp_path: Path) -> None:
    folder = copy_vector(name, tmp_path)
    got = read_nextcloud_config(str(folder / "config.php"))
    expected = json.loads((VECTORS / name / "expected.json").read_text())
    assert strict_equal(jsonable(got.data), expected), (jsonable(got.data), expected)


def test_multi_reads_like_config_readData(tmp_path: Path) -> None:
    folder = copy_vector("multi", tmp_path)
    got = read_nextcloud_config(str(folder / "config.php"))
    assert [os.path.basename(f) for f in got.files] == [
        "config.php",
        "9.override.config.php",
        "10.override.config.php",
        "nocfg.config.php",
        "null.config.php",
        "redis.config.php",
    ]  # natsort: 9 before 10; no dot-file
    assert got.data["loglevel"] == 10  # the last file wins for string keys
    assert got.data["trusted_domains"] == {3: "ten.example"}  # array_merge is not recursive
    assert [k for k in got.data if isinstance(k, int)] == [0, 1, 2]  # int keys renumbered
    assert got.data[0] == "int key in config.php" and got.data[1] == "nine" and got.data[2] == "ten"


def test_install_mysql_settings(tmp_path: Path) -> None:
    folder = copy_vector("install_mysql", tmp_path)
    data = read_nextcloud_config(str(folder / "config.php")).data
    s = nextcloud_settings(data)
    assert data["memcache.local"] == "\\OC\\Memcache\\APCu"
    assert data["dbpassword"] == "fake'pa\\ss$word"
    assert (s.dbtype, s.db_host, s.db_port, s.db_socket) == (
        "mysql",
        "localhost",
        None,
        "/run/mysqld/mysqld.sock",
    )
    assert (s.dbname, s.dbuser, s.dbtableprefix) == ("nextcloud", "nextcloud", "oc_")
    assert s.secret == "FaKeSeCrEt.0123456789/abcdefghijklmnopqrstuvwxyz+AB"
    assert s.passwordsalt == "fAkE/sAlT+0123456789abcdefghij"
    assert (s.hashing_memory_cost, s.hashing_time_cost, s.hashing_threads) == (32768, 3, 2)
    assert s.twofactor_enforced is True and s.twofactor_enforced_groups == ("admin",)
    assert s.twofactor_enforced_excluded_groups == ()
    assert s.token_auth_enforced is False and s.allow_user_to_change_display_name is True
    assert s.datadirectory == "/var/www/nextcloud/data"


def test_install_pgsql_settings(tmp_path: Path) -> None:
    folder = copy_vector("install_pgsql", tmp_path)
    s = nextcloud_settings(read_nextcloud_config(str(folder / "config.php")).data)
    assert (s.dbtype, s.db_host, s.db_port, s.db_socket) == ("pgsql", "::1", 5433, "")
    assert s.dbtableprefix == "nc_"
    assert s.twofactor_enforced is True
    assert s.token_auth_enforced is True  # the STRING 'false' is true for (bool)
    assert s.allow_user_to_change_display_name is False


@needs_php
@pytest.mark.parametrize("name", ["install_mysql", "install_pgsql", "multi", "hand_edited"])
def test_vectors_against_live_php(name: str, tmp_path: Path) -> None:
    folder = copy_vector(name, tmp_path)
    code = (
        PHP_TAG
        + r"""
$dir = $argv[1] . '/'; $cache = [];
$files = [$dir . 'config.php']; $extra = glob($dir . '*.config.php');
natsort($extra); $files = array_merge($files, $extra);
foreach ($files as $f) { unset($CONFIG); include $f; if (isset($CONFIG) && is_array($CONFIG)) $cache = array_merge($cache, $CONFIG); }
echo json_encode(tag($cache));"""
    )
    expected = canon_from_php(json.loads(php_run(code, "", str(folder))))
    assert canon(read_nextcloud_config(str(folder / "config.php")).data) == expected


# --- PHP as the oracle on generated files ------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT_MIN + 1, INT_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.text(max_size=6, alphabet=st.characters(blacklist_categories=("Cs",))), inner, max_size=4
        ),
    ),
    max_leaves=20,
)


@needs_php
@FAST
@given(
    st.lists(
        st.dictionaries(
            st.text(max_size=8, alphabet=st.characters(blacklist_categories=("Cs",))), json_values, max_size=6
        ),
        min_size=1,
        max_size=4,
    )
)
def test_files_written_by_var_export_parse_exactly_as_php_reads_them(
    tmp_path_factory: Any, configs: list
) -> None:
    folder = tmp_path_factory.mktemp("ve")
    code = (
        PHP_TAG
        + r"""
$all = json_decode(stream_get_contents(STDIN), true);
foreach ($all as $i => $cache) {
    $f = $argv[1] . "/c$i.php";
    file_put_contents($f, "<?php\n" . '$CONFIG = ' . var_export($cache, true) . ";\n");  // Config::writeData
    unset($CONFIG); include $f; echo json_encode(tag($CONFIG)), "\n";
}"""
    )
    lines = php_run(code, json.dumps(configs), str(folder)).splitlines()
    for i, line in enumerate(lines):
        source = (folder / f"c{i}.php").read_bytes()
        assert ours(source) == canon_from_php(json.loads(line)), source


# A grammar of hand-edited literals: every piece is a safe literal PHP accepts.
_ws = st.sampled_from(["", " ", "\n", "\t", "  ", " /* c */ ", " // c\n", " # c\n", "\r\n", "/**/"])


def _int_literal(draw: Any) -> str:
    value = draw(
        st.one_of(st.integers(0, 300), st.integers(0, 1 << 66), st.sampled_from([INT_MAX, INT_MAX + 1]))
    )
    form = draw(st.sampled_from(["dec", "hex", "HEX", "bin", "oct", "legacy_oct"]))
    digits = {
        "dec": f"{value}",
        "hex": f"{value:x}",
        "HEX": f"{value:X}",
        "bin": f"{value:b}",
        "oct": f"{value:o}",
        "legacy_oct": f"{value:o}",
    }[form]
    if len(digits) > 1 and draw(st.booleans()):
        cut = draw(st.integers(1, len(digits) - 1))
        digits = digits[:cut] + "_" + digits[cut:]
    prefix = {
        "dec": "",
        "hex": draw(st.sampled_from(["0x", "0X"])),
        "HEX": "0x",
        "bin": draw(st.sampled_from(["0b", "0B"])),
        "oct": draw(st.sampled_from(["0o", "0O"])),
        "legacy_oct": "0",
    }[form]
    sign = draw(st.sampled_from(["", "", "-", "+", "- "]))
    return sign + prefix + digits


def _float_literal(draw: Any) -> str:
    text = draw(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
            st.sampled_from(
                [".5", "5.", "1.e3", "1E3", "1_000.000_1", "0.0", "1e400", "2.5E-3", "07.5", "1e1_0"]
            ),
        )
    )
    return draw(st.sampled_from(["", "-"])) + text


_sq_pieces = st.sampled_from(
    ["a", "Z", " ", "\\\\", "\\'", "\\n", "\\z", '"', "$x", "{$y}", "é", "\n", "😀", "\\x41"]
)
_dq_pieces = st.sampled_from(
    [
        "a",
        " ",
        "'",
        "\\n",
        "\\t",
        "\\r",
        "\\v",
        "\\e",
        "\\f",
        "\\\\",
        "\\$",
        '\\"',
        "\\0",
        "\\101",
        "\\7",
        "\\x41",
        "\\x7",
        "\\xg",
        "\\u{41}",
        "\\u{00e9}",
        "\\u{1F600}",
        "\\u00e9",
        "\\q",
        "$",
        "$1",
        "$ ",
        "{",
        "{ $",
        "é",
        "\n",
        "\\{",
        "\\'",
    ]
)


@st.composite
def php_literal(draw: Any, depth: int = 0) -> str:
    kind = draw(
        st.sampled_from(["int", "float", "sq", "dq", "kw", "array"] if depth < 3 else ["int", "sq", "kw"])
    )
    if kind == "int":
        return _int_literal(draw)
    if kind == "float":
        return _float_literal(draw)
    if kind == "sq":
        body = "".join(draw(st.lists(_sq_pieces, max_size=6)))
        if (len(body) - len(body.rstrip("\\"))) % 2:  # an odd backslash run would escape the quote
            body += "\\"
        return "'" + body + "'"
    if kind == "dq":
        pieces = draw(st.lists(_dq_pieces, max_size=6))
        body = ""
        for piece in pieces:  # never let pieces join into "{$", "$name" or "${": interpolation
            if (body.endswith("{") and piece.startswith("$")) or (
                body.endswith("$") and (piece[0].isalpha() or piece[0] in "_{")
            ):
                body += " "
            body += piece
        if body.endswith(("$", "{")):
            body += " "
        return '"' + body + '"'
    if kind == "kw":
        return draw(st.sampled_from(["true", "TRUE", "True", "false", "FALSE", "null", "NULL", "Null"]))
    items = []
    for _ in range(draw(st.integers(0, 4))):
        ws1, ws2 = draw(_ws), draw(_ws)
        if draw(st.booleans()):
            key = draw(
                st.one_of(
                    st.integers(-5, 12).map(str),
                    st.sampled_from(
                        [
                            "'5'",
                            "'05'",
                            "'-0'",
                            "'-3'",
                            "' 1'",
                            "'a'",
                            "\"b\"",
                            "true",
                            "false",
                            "null",
                            "1.5",
                            "-0.0",
                            "'9223372036854775807'",
                            "'9223372036854775808'",
                            "0x10",
                            "''",
                        ]
                    ),
                )
            )
            items.append(f"{ws1}{key}{ws2}=>{draw(_ws)}{draw(php_literal(depth + 1))}")
        else:
            items.append(f"{ws1}{draw(php_literal(depth + 1))}{ws2}")
    trailing = "," if items and draw(st.booleans()) else ""
    opener, closer = draw(st.sampled_from([("array(", ")"), ("array (", ")"), ("ARRAY(", ")"), ("[", "]")]))
    return opener + ",".join(items) + trailing + draw(_ws) + closer


@st.composite
def php_config_file(draw: Any) -> bytes:
    parts = [draw(st.sampled_from(["<?php\n", "<?php ", "<?PHP\n", "<?php\r\n"])), draw(_ws)]
    top = draw(php_literal())
    parts.append(f"$CONFIG{draw(_ws)}={draw(_ws)}{top}{draw(_ws)};")
    is_array = top.lower().startswith(("array", "["))  # PHP auto-vivifies false, ncauth refuses: keep clear
    for i in range(draw(st.integers(0, 2)) if is_array else 0):
        sub = draw(st.sampled_from(["", "['sub']"]))
        parts.append(f"\n$CONFIG['new{i}']{sub} = {draw(php_literal(1))};")
    parts.append(draw(st.sampled_from(["", "\n", "\n?>", "\n?>\n", " ?>"])))
    return "".join(parts).encode()


@needs_php
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(php_config_file(), min_size=8, max_size=8))
def test_hand_edited_literals_parse_exactly_as_php_evaluates_them(
    tmp_path_factory: Any, sources: list[bytes]
) -> None:
    folder = tmp_path_factory.mktemp("he")
    paths = [write(folder / f"c{i}.php", s) for i, s in enumerate(sources)]
    results = php_include_all(paths)
    assert sum(r != "ERR" for r in results) >= 4  # the grammar must yield files PHP accepts: compare values
    for source, theirs in zip(sources, results, strict=True):
        mine = ours(source)
        if mine == "ERR" and theirs != "ERR":
            # the one deliberate difference: strings must be valid UTF-8
            with pytest.raises(ConfigError, match="UTF-8|U\\+10FFFF"):
                parse_config_php(source)
            continue
        assert mine == theirs, source


# --- fuzzing: any input gives a value or a ConfigError ---------------------------------


def _value_or_config_error(source: bytes) -> None:
    try:
        result = parse_config_php(source)
    except ConfigError as exc:
        assert "line" in str(exc) or "larger than" in str(exc)
        return
    assert result is None or isinstance(result, dict)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _value_or_config_error(data)
    _value_or_config_error(b"<?php\n" + data)
    _value_or_config_error(b"<?php\n$CONFIG = [" + data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<?php",
                " ",
                "\n",
                "$CONFIG",
                "=",
                ";",
                "[",
                "]",
                "(",
                ")",
                "array",
                ",",
                "=>",
                "'a'",
                '"b"',
                "'",
                '"',
                "\\",
                "1",
                "-",
                "0x",
                "0b",
                "_",
                ".",
                "e",
                "true",
                "null",
                "/*",
                "*/",
                "//",
                "#",
                "#[",
                "?>",
                "$",
                "{",
                "}",
                "`",
                "<<<",
                "getenv",
                "\\u{",
                "\\x",
                "é",
                "\x00",
                "\r",
            ]
        ),
        max_size=40,
    )
)
def test_fuzz_token_soup(tokens: list[str]) -> None:
    _value_or_config_error("".join(tokens).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["install_mysql", "install_pgsql", "hand_edited", "multi"]),
    st.lists(
        st.tuples(st.integers(0, 2000), st.binary(max_size=3), st.integers(0, 3)), min_size=1, max_size=4
    ),
)
def test_fuzz_mutated_vectors(name: str, edits: list) -> None:
    data = bytearray((VECTORS / name / "config.php").read_bytes())
    for pos, insert, delete in edits:
        pos %= len(data) + 1
        data[pos : pos + delete] = insert
    _value_or_config_error(bytes(data))


def test_limits() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        parse_config_php(b"<?php\n$CONFIG = ['a' => '" + b"x" * phpconfig.MAX_FILE_SIZE + b"'];")
    deep = b"<?php $CONFIG = " + b"[" * phpconfig.MAX_DEPTH + b"]" * phpconfig.MAX_DEPTH + b";"
    assert parse_config_php(deep) is not None
    deeper = b"<?php $CONFIG = " + b"[" * (phpconfig.MAX_DEPTH + 1) + b"]" * (phpconfig.MAX_DEPTH + 1) + b";"
    with pytest.raises(ConfigError, match="nested deeper"):
        parse_config_php(deeper)
    with pytest.raises(ConfigError, match="nested deeper"):
        parse_config_php(b"<?php $CONFIG = " + b"[" * 100_000)  # no RecursionError
    start = time.monotonic()
    big = b"<?php\n$CONFIG = [\n" + b"  'key' => 'some value with \\\\ escapes',\n" * 20000 + b"];\n"
    assert parse_config_php(big) == {"key": "some value with \\ escapes"}
    assert time.monotonic() - start < 3


# --- hostile files: refused, and nothing runs ------------------------------------------

HOSTILE = [
    "<?php\n$CONFIG = ['a' => shell_exec('touch {m}')];\n",
    "<?php\nsystem('touch {m}');\n$CONFIG = [];\n",
    "<?php\n$CONFIG = ['a' => 'x' . `touch {m}`];\n",
    "<?php\n$CONFIG = ['a' => `touch {m}`];\n",
    "<?php\ninclude '{m}.inc';\n",
    "<?php\n$CONFIG = ['a' => \"{{${{system('touch {m}')}}}}\"];\n",
    "<?php\n$CONFIG = ['a' => \"${{system('touch {m}')}}\"];\n",
    "<?php\n$CONFIG = [(function () {{ touch('{m}'); return 'a'; }})() => 1];\n",
    "<?php\n$CONFIG = ['a' => 1]; touch('{m}');\n",
    "<?php\n$CONFIG = ['a' => 1] ?>\n<?php touch('{m}');\n",
    "<?php\n$CONFIG = ['a' => 1];\n?>\nHTML <?= touch('{m}') ?>\n",
    "<?= touch('{m}') ?>\n<?php $CONFIG = [];\n",
    "<?php\n$CONFIG = array_merge([], ['a' => exec('touch {m}')]);\n",
    "<?php\n$CONFIG = ['a' => new class {{ function __destruct() {{ touch('{m}'); }} }}];\n",
    "<?php\n$CONFIG = ['a' => 1]; // done ?>\n<?php touch('{m}');\n",
    "<?php\n$CONFIG = ['x' => <<<EOT\n{{${{touch('{m}')}}}}\nEOT];\n",
    "<?php\n$CONFIG = ['a' => 1]; $CONFIG['b'] = system('touch {m}');\n",
    "<?php\n$CONFIG = ['a' => \\system('touch {m}')];\n",
    "<?php\n$CONFIG = ['a' => @system('touch {m}')];\n",
    "<?php\n$CONFIG = ['a' => (string) system('touch {m}')];\n",
    "<?php\n$CONFIG = ['a' => passthru('touch {m}') ?: 1];\n",
    "<?php\n$CONFIG = ['a' => 1 + touch('{m}')];\n",
    "<?php\n$CONFIG = ['a' => $f = 'touch', 'b' => $f('{m}')];\n",
    "<?php\n$CONFIG = ['a' => \"$x\"];\n",
    "<?php\n$CONFIG = ['a' => getenv('HOME')];\n",
    "<?php\n$CONFIG = ['a' => $_SERVER['HOME']];\n",
    "<?php\n$CONFIG = ['a' => PHP_VERSION];\n",
    "<?php\n#[Attr]\n$CONFIG = [];\n",
    "<?php\n$CONFIG = ['a' => \"\\u{{110000}}\"];\n",
    "<?php\n$CONFIG = [...[touch('{m}')]];\n",
    "<?php\n$CONFIG = [9223372036854775807 => 1, 2];\n",
    "<?php\n$CONFIG = ['a' => -9223372036854775807-1];\n",  # var_export's PHP_INT_MIN: refused
    "<?php\n$config = ['a' => 1];\n",
    "<?php\n$CONFIG[] = 'a';\n",
    " <?php\n$CONFIG = [];\n",
    "\ufeff<?php\n$CONFIG = [];\n",
    "<?php\n$CONFIG = ['a' => 1]\n",
    "<?php\n$CONFIG = ['a' => 08];\n",
    "<?php\n$CONFIG = ['a' => 1, , 2];\n",
    "<?php\n/* unterminated\n$CONFIG = [];\n",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_file_is_refused_and_nothing_runs(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "EXECUTED"
    (tmp_path / "EXECUTED.inc").write_text(f"<?php touch('{marker}');\n")
    source = template.format(m=marker).encode()
    with pytest.raises(ConfigError) as info:
        parse_config_php(source, "evil.config.php")
    assert "evil.config.php: line " in str(info.value)
    assert not marker.exists()


@needs_php
def test_control_php_really_runs_the_hostile_files(tmp_path: Path) -> None:
    """Shows the marker test has teeth: the same file, given to php, does run."""
    marker = tmp_path / "EXECUTED"
    evil = write(tmp_path / "evil.config.php", HOSTILE[0].format(m=marker))
    php_run("include $argv[1];", "", str(evil))
    assert marker.exists()


def test_hostile_extra_file_in_config_folder_is_refused_without_running(confdir: Path) -> None:
    marker = confdir.parent / "EXECUTED"
    write(confdir / "evil.config.php", f"<?php\n\n$CONFIG = ['x' => shell_exec('touch {marker}')];\n")
    with pytest.raises(ConfigError, match=r"evil\.config\.php: line 3: found a function call shell_exec\(\)"):
        read_nextcloud_config(str(confdir / "config.php"))
    assert not marker.exists()


def test_errors_never_show_sensitive_values() -> None:
    cases = [
        b"<?php $CONFIG = ['dbpassword' => 'hunter2' . xyzzy];",
        b"<?php $CONFIG = ['dbpassword' => 'hunter2' 'xyzzy'];",
        b"<?php $CONFIG = ['dbpassword' => hunter2plain];",
        b"<?php $CONFIG = ['dbpassword' => \"hunter2$xyzzy\"];",
        b"<?php $CONFIG = ['secret' => hunter2plain()];",
        b"<?php $CONFIG = ['redis' => ['password' => hunter2plain]];",
        b"<?php $CONFIG['passwordsalt'] = hunter2plain;",
        b"<?php $CONFIG = ['dbpassword' => 'hunter2', 'x' => 1 2];",
        b"<?php $CONFIG = ['dbpassword' => 0hunter2];",
    ]
    for source in cases:
        with pytest.raises(ConfigError) as info:
            parse_config_php(source)
        assert "hunter2" not in str(info.value) and "xyzzy" not in str(info.value), str(info.value)
    with pytest.raises(
        ConfigError, match=r"a constant 'notsecret'"
    ):  # elsewhere, errors do name what they found
        parse_config_php(b"<?php $CONFIG = ['loglevel' => notsecret];")


def test_error_names_file_line_and_what() -> None:
    src = b"<?php\n$CONFIG = array (\n  'a' => 1,\n  'b' => system('id'),\n);\n"
    with pytest.raises(ConfigError, match=r"^x\.php: line 4: found a function call system\(\)"):
        parse_config_php(src, "x.php")
    with pytest.raises(ConfigError, match=r"line 2: .*interpolation"):
        parse_config_php(b"<?php\n$CONFIG = ['a' => \"$x\"];", "x.php")


# --- the literal subset ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'a\\'b\\\\c\\n'", "a'b\\c\\n"),
        ('"\\n\\t\\r\\v\\e\\f\\\\\\$\\""', "\n\t\r\v\x1b\f\\$\""),
        ('"\\101\\x41\\u{41}\\u{1F600}\\q\\u00e9\\xg"', "AAA😀\\q\\u00e9\\xg"),
        ('"\\0"', "\x00"),
        ('"$ $1 { }"', "$ $1 { }"),
        ("'' . \"\\0\" . ''", "\x00"),
        ("'a'.\"b\" /* c */ . 'c'", "abc"),  # var_export's NUL byte
        ("0x1F", 31),
        ("0X1f", 31),
        ("0b101", 5),
        ("0o17", 15),
        ("017", 15),
        ("0_17", 15),
        ("1_000", 1000),
        ("-0x10", -16),
        ("- 5", -5),
        ("+5", 5),
        ("9223372036854775807", INT_MAX),
        ("9223372036854775808", 9223372036854775808.0),
        ("-9223372036854775808", -9223372036854775808.0),
        ("0x8000000000000000", 9223372036854775808.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("1_0.5", 10.5),
        ("TRUE", True),
        ("False", False),
        ("NULL", None),
    ],
)
def test_literals(literal: str, value: Any) -> None:
    got = parse_config_php(f"<?php $CONFIG = ['v' => {literal}];".encode())
    assert got is not None and canon(got["v"]) == canon(value)


def test_keys_and_auto_index_follow_php() -> None:
    got = parse_config_php(
        b"<?php $CONFIG = ['5' => 'a', '05' => 'b', '-0' => 'c', '-7' => 'd', true => 'e', "
        b"null => 'f', 1.7 => 'g', 'x', -20 => 'h', 'i', 'a' => 1, 'a' => 2];"
    )
    assert list(got.items()) == [
        (5, "a"),
        ("05", "b"),
        ("-0", "c"),
        (-7, "d"),
        (1, "g"),
        ("", "f"),
        (6, "x"),
        (-20, "h"),
        (7, "i"),
        ("a", 2),
    ]
    assert parse_config_php(b"<?php $CONFIG = [-5 => 'a', 'b'];") == {-5: "a", -4: "b"}


def test_statements_and_tags() -> None:
    assert parse_config_php(b"<?php\n") is None  # no $CONFIG: Nextcloud skips the file
    assert parse_config_php(b"<?php") is None
    assert parse_config_php(b"<?php $CONFIG = 'scalar';") is None
    assert parse_config_php(b"<?php $CONFIG = null;") is None
    assert parse_config_php(b"<?php ;; $CONFIG = [1]; $CONFIG = ['a' => 2];") == {"a": 2}
    assert parse_config_php(b"<?php $CONFIG['a']['b'] = 1; $CONFIG['c'] = [];") == {"a": {"b": 1}, "c": {}}
    assert parse_config_php(b"<?php $CONFIG = ['a' => 1] ?>") == {"a": 1}
    assert parse_config_php(b"<?php $CONFIG = ['a' => 1]; // x ?>\n\n  \n") == {"a": 1}
    with pytest.raises(ConfigError, match="after \\?>"):
        parse_config_php(b"<?php $CONFIG = ['a' => 1]; ?>\ntext")
    with pytest.raises(ConfigError, match="not an array"):
        parse_config_php(b"<?php $CONFIG = ['a' => 'x']; $CONFIG['a']['b'] = 1;")


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(ConfigError, match="UTF-8"):
        parse_config_php(b"<?php $CONFIG = ['a' => '\xff'];")
    with pytest.raises(ConfigError, match="UTF-8"):
        parse_config_php(b"<?php $CONFIG = ['a' => \"\\xff\"];")
    assert parse_config_php(b"<?php // comment \xff\xfe\n$CONFIG = [];") == {}


# --- reading a folder: permissions, symlinks, locking -------------------------------------


def test_reads_a_safe_folder(confdir: Path) -> None:
    write(confdir / "z.config.php", "<?php $CONFIG = ['secret' => 'from extra'];")
    got = read_nextcloud_config(str(confdir / "config.php"))
    assert got.data == {"dbtype": "mysql", "secret": "from extra"}


def test_group_root_may_write(confdir: Path) -> None:
    os.chown(confdir / "config.php", 0, 0)
    (confdir / "config.php").chmod(0o660)
    assert read_nextcloud_config(str(confdir / "config.php")).data["dbtype"] == "mysql"


@pytest.mark.parametrize(
    ("target", "mode", "gid", "message"),
    [
        ("config.php", 0o646, 0, "writable by everyone.*chmod o-w"),
        ("config.php", 0o660, 65534, "writable by group.*chmod g-w"),
        ("extra", 0o666, 0, "writable by everyone"),
        ("extra", 0o660, 65534, "writable by group"),
        ("dir", 0o777, 0, "folder .* writable by everyone"),
        ("dir", 0o1777, 0, "folder .* writable by everyone"),  # sticky does not stop new files
        ("dir", 0o770, 65534, "folder .* writable by group"),
    ],
)
def test_writable_by_others_is_refused(confdir: Path, target: str, mode: int, gid: int, message: str) -> None:
    write(confdir / "extra.config.php", "<?php $CONFIG = [];")
    path = {"config.php": confdir / "config.php", "extra": confdir / "extra.config.php", "dir": confdir}[
        target
    ]
    os.chown(path, 0, gid)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=message):
        read_nextcloud_config(str(confdir / "config.php"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_owner_rules(confdir: Path) -> None:
    extra = write(confdir / "extra.config.php", "<?php $CONFIG = ['x' => 1];")
    os.chown(extra, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by .*65534"):
        read_nextcloud_config(str(confdir / "config.php"))
    # the web server user owning config.php is trusted for the rest
    os.chown(confdir / "config.php", 65534, 65534)
    os.chown(confdir, 65534, 65534)
    assert read_nextcloud_config(str(confdir / "config.php")).data["x"] == 1


def test_ancestor_folders_are_checked(tmp_path: Path) -> None:
    top = tmp_path / "open"
    top.mkdir()
    top.chmod(0o777)
    conf = top / "config"
    conf.mkdir()
    conf.chmod(0o750)
    write(conf / "config.php", "<?php $CONFIG = [];")
    with pytest.raises(ConfigError, match=f"folder {top} is writable by everyone"):
        read_nextcloud_config(str(conf / "config.php"))
    top.chmod(0o1777)  # sticky: others cannot swap what they do not own
    assert read_nextcloud_config(str(conf / "config.php")).data == {}


def test_symlinks(tmp_path: Path, confdir: Path) -> None:
    elsewhere = tmp_path / "etc-nextcloud"
    elsewhere.mkdir(mode=0o750)
    elsewhere.chmod(0o750)
    real = write(elsewhere / "config.php", "<?php $CONFIG = ['where' => 'target'];")
    write(elsewhere / "beside-target.config.php", "<?php $CONFIG = ['beside' => 'target'];")
    (confdir / "config.php").unlink()
    (confdir / "config.php").symlink_to(real)
    write(confdir / "beside-link.config.php", "<?php $CONFIG = ['beside' => 'link'];")
    got = read_nextcloud_config(str(confdir / "config.php"))
    assert got.data == {"where": "target", "beside": "link"}  # glob runs in the link's folder, as in PHP
    real.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by everyone"):
        read_nextcloud_config(str(confdir / "config.php"))
    real.chmod(0o640)
    elsewhere.chmod(0o777)
    with pytest.raises(ConfigError, match="folder .*etc-nextcloud is writable by everyone"):
        read_nextcloud_config(str(confdir / "config.php"))


def test_special_entries_and_missing_main(confdir: Path) -> None:
    os.mkfifo(confdir / "fifo.config.php")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        read_nextcloud_config(str(confdir / "config.php"))
    assert time.monotonic() - start < 2  # never blocks on a FIFO
    (confdir / "fifo.config.php").unlink()
    (confdir / "d.config.php").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        read_nextcloud_config(str(confdir / "config.php"))
    with pytest.raises(ConfigError, match="cannot open"):
        read_nextcloud_config(str(confdir / "nope.php"))


def test_waits_for_a_writer_lock(confdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = confdir / "config.php"
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as Config::writeData holds it while rewriting
    timer = threading.Timer(0.3, lambda: os.close(fd))
    timer.start()
    start = time.monotonic()
    assert read_nextcloud_config(str(path)).data["dbtype"] == "mysql"
    assert time.monotonic() - start >= 0.25
    timer.join()
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    monkeypatch.setattr(phpconfig, "_LOCK_WAIT", 0.2)
    try:
        with pytest.raises(ConfigError, match="locked"):
            read_nextcloud_config(str(path))
    finally:
        os.close(fd)


# --- PHP semantics of the helpers, against PHP ---------------------------------------------


def test_array_merge() -> None:
    assert php_array_merge({5: "a", "k": 1}, {"k": 2, 9: "b"}) == {0: "a", "k": 2, 1: "b"}
    assert list(php_array_merge({"a": 1, 3: "x"}, {"a": 9, 0: "y"}).items()) == [("a", 9), (0, "x"), (1, "y")]


_cast_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT_MIN, INT_MAX),
    st.floats(),
    st.sampled_from(
        [
            1e30,
            -1e30,
            2.0**63,
            -(2.0**63),
            2.0**64,
            1e15,
            1e14,
            0.1 + 0.2,
            -0.0,
            1e-5,
            123456789012345.6,
            0.0001,
        ]
    ),
    st.text(alphabet=" \t\n+-.eE0123456789xab", max_size=10),
    st.sampled_from(
        ["false", "0", "", "0.0", "00", " 1", "1e400", "9999999999999999999", "-9999999999999999999"]
    ),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2),
)


def _php_cast_literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value != INT_MIN else "PHP_INT_MIN"
    if isinstance(value, float):
        if math.isnan(value):
            return "NAN"
        if math.isinf(value):
            return "INF" if value > 0 else "-INF"
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "[" + ",".join(f"'{k}' => {v}" for k, v in value.items()) + "]"


@needs_php
@FAST
@given(st.lists(_cast_values, min_size=10, max_size=10))
def test_casts_match_php(values: list) -> None:
    code = (
        "foreach (["
        + ",".join(_php_cast_literal(v) for v in values)
        + "] as $v) "
        + ("echo json_encode([(bool)$v, (int)$v, bin2hex(@(string)$v)]), \"\\n\";")
    )
    for value, line in zip(values, php_run(code).splitlines(), strict=True):
        as_bool, as_int, as_hex = json.loads(line)
        assert (php_bool(value), php_int(value), php_string(value).encode().hex()) == (
            as_bool,
            as_int,
            as_hex,
        ), value


@needs_php
@FAST
@given(st.lists(st.text(alphabet="ab:[]0123456789./ \n", max_size=12), min_size=10, max_size=10))
def test_split_dbhost_matches_nextcloud(hosts: list[str]) -> None:
    code = r"""
foreach (json_decode(stream_get_contents(STDIN), true) as $host) {
    $params = ['host' => $host];  // ConnectionFactory::splitHostFromPortAndSocket
    if (preg_match('/^(.*):([^\]:]+)$/', $host, $m)) {
        $params['host'] = $m[1];
        if (is_numeric($m[2])) { $params['port'] = (int)$m[2]; } else { $params['unix_socket'] = $m[2]; }
    }
    echo json_encode([$params['host'], $params['port'] ?? null, $params['unix_socket'] ?? '']), "\n";
}"""
    for host, line in zip(hosts, php_run(code, json.dumps(hosts)).splitlines(), strict=True):
        assert list(split_dbhost(host)) == json.loads(line), host


@needs_php
@FAST
@given(st.lists(st.text(alphabet="a0 1.9_Z\t", min_size=0, max_size=6), min_size=2, max_size=8, unique=True))
def test_natsort_matches_php(names: list[str]) -> None:
    paths = sorted((f"/etc/nc/{n}.config.php" for n in names), key=os.fsencode)  # glob's order
    code = (
        "$a = json_decode(stream_get_contents(STDIN), true); natsort($a); echo json_encode(array_values($a));"
    )
    assert sorted(paths, key=phpconfig.natsort_key) == json.loads(php_run(code, json.dumps(paths)))


# --- Nextcloud's getters, per key, from what occ writes ----------------------------------
# `occ config:system:set K --value=V` writes the string V; --type=boolean true/false,
# --type=integer (int)V, --type=double (float)V, --type=null null (CastHelper::castValue);
# `occ twofactorauth:enforce --on/--off` writes 'true'/'false' (older MandatoryTwoFactor)
# or true/false (newest master). MISSING = the key is absent.

MISSING = object()


def settings_for(key: str, value: Any, **other: Any) -> Any:
    data = {} if value is MISSING else {key: value}
    data.update(other)
    return nextcloud_settings(data)


@pytest.mark.parametrize(
    ("value", "enforced"),
    [
        (MISSING, False),
        ("true", True),
        ("false", False),  # twofactorauth:enforce --on/--off, older
        (True, True),
        (False, False),  # newest --on/--off; config:system:set --type=boolean
        ("yes", False),
        ("1", False),
        ("TRUE", False),  # config:system:set without --type: old rule === 'true'
        (1, True),
        (0, False),
        (None, False),  # --type=integer / --type=null
    ],
)
def test_key_twofactor_enforced(value: Any, enforced: bool) -> None:
    assert settings_for("twofactor_enforced", value).twofactor_enforced is enforced


@pytest.mark.parametrize("key", ["twofactor_enforced_groups", "twofactor_enforced_excluded_groups"])
@pytest.mark.parametrize(
    ("value", "groups"),
    [
        (MISSING, ()),
        ({0: "admin"}, ("admin",)),
        ({0: "admin", 1: "staff"}, ("admin", "staff")),
        ({}, ()),
        (None, ()),
        ({0: "a", 1: 5}, ("a", "5")),  # `occ config:system:set K 1 --value=5 --type=integer`
    ],
)
def test_key_twofactor_groups(key: str, value: Any, groups: tuple) -> None:
    assert getattr(settings_for(key, value), key) == groups


@pytest.mark.parametrize("key", ["twofactor_enforced_groups", "twofactor_enforced_excluded_groups"])
def test_key_twofactor_groups_not_an_array(key: str) -> None:
    # `occ config:system:set twofactor_enforced_groups --value=admin` (no index): Nextcloud's
    # EnforcementState(array ...) throws a TypeError; ncauth refuses as clearly.
    with pytest.raises(ConfigError, match=key):
        settings_for(key, "admin")


@pytest.mark.parametrize(
    ("value", "enforced"),
    [
        (MISSING, False),
        (True, True),
        (False, False),
        ("true", True),
        ("false", True),  # config:system:set without --type: the string 'false' is TRUE for (bool)
        ("0", False),
        ("", False),
        (0, False),
        (1, True),
        (None, False),
    ],
)
def test_key_token_auth_enforced(value: Any, enforced: bool) -> None:
    assert settings_for("token_auth_enforced", value).token_auth_enforced is enforced


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (MISSING, True),
        (True, True),
        (False, False),
        ("false", True),
        ("0", False),
        (0, False),
        ("", False),
        (None, True),
    ],
)
def test_key_allow_user_to_change_display_name(value: Any, allowed: bool) -> None:
    assert (
        settings_for("allow_user_to_change_display_name", value).allow_user_to_change_display_name is allowed
    )


@pytest.mark.parametrize(
    ("value", "threads", "cost"),
    [
        (MISSING, MISSING, 65536),
        ("32768", MISSING, 32768),
        (32768, MISSING, 32768),
        ("64M", MISSING, 64),
        ("abc", MISSING, 8),
        (16, 4, 32),
        (0, MISSING, 8),
        (1.9e3, MISSING, 1900),
    ],
)
def test_key_hashingMemoryCost(value: Any, threads: Any, cost: int) -> None:
    other = {} if threads is MISSING else {"hashingThreads": threads}
    assert settings_for("hashingMemoryCost", value, **other).hashing_memory_cost == cost


@pytest.mark.parametrize(
    ("value", "cost"), [(MISSING, 4), ("3", 3), (3, 3), (0, 1), ("2.9", 2), (-5, 1), (True, 1)]
)
def test_key_hashingTimeCost(value: Any, cost: int) -> None:
    assert settings_for("hashingTimeCost", value).hashing_time_cost == cost


@pytest.mark.parametrize(("value", "threads"), [(MISSING, 1), ("2", 2), (2, 2), (0, 1), (True, 1), ("x", 1)])
def test_key_hashingThreads(value: Any, threads: int) -> None:
    assert settings_for("hashingThreads", value).hashing_threads == threads


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        (MISSING, ""),
        ("abc", "abc"),
        (123, "123"),
        (True, "1"),
        (1.5, "1.5"),
        (None, ""),
        (False, ""),
    ],
)
def test_key_secret(value: Any, secret: str) -> None:
    assert settings_for("secret", value).secret == secret


@pytest.mark.parametrize(
    ("value", "salt"), [(MISSING, ""), ("", ""), ("s4lt", "s4lt"), (12, "12"), (None, "")]
)
def test_key_passwordsalt(value: Any, salt: str) -> None:
    assert settings_for("passwordsalt", value).passwordsalt == salt


@pytest.mark.parametrize(
    ("value", "dbtype"),
    [
        (MISSING, "sqlite3"),
        ("sqlite", "sqlite3"),
        ("sqlite3", "sqlite3"),
        ("mysql", "mysql"),
        ("pgsql", "pgsql"),
    ],
)
def test_key_dbtype(value: Any, dbtype: str) -> None:
    assert settings_for("dbtype", value).dbtype == dbtype


@pytest.mark.parametrize(
    ("dbtype", "value", "split"),
    [
        ("mysql", MISSING, ("", None, "")),
        ("mysql", "localhost", ("localhost", None, "")),
        ("mysql", "db.example:3307", ("db.example", 3307, "")),
        ("mysql", "localhost:/run/mysqld/mysqld.sock", ("localhost", None, "/run/mysqld/mysqld.sock")),
        ("mysql", "[::1]:3306", ("[::1]", 3306, "")),
        ("pgsql", "[::1]:5432", ("::1", 5432, "")),
        ("pgsql", "[fd00::5]", ("fd00::5", None, "")),
        ("pgsql", "/run/postgresql", ("/run/postgresql", None, "")),
        ("pgsql", "localhost:/run/postgresql", ("localhost", None, "/run/postgresql")),
    ],
)
def test_key_dbhost(dbtype: str, value: Any, split: tuple) -> None:
    s = settings_for("dbhost", value, dbtype=dbtype)
    assert (s.db_host, s.db_port, s.db_socket) == split


def test_key_dbport_is_ignored_like_nextcloud() -> None:
    # `occ config:system:set dbport --value=5433`: ConnectionFactory never reads dbport.
    s = settings_for("dbport", "5433", dbtype="pgsql", dbhost="db.example")
    assert (s.db_host, s.db_port) == ("db.example", None)
    assert "dbport" not in s._fields


@pytest.mark.parametrize(
    ("key", "field", "default"),
    [
        ("dbname", "dbname", "owncloud"),
        ("dbuser", "dbuser", ""),
        ("dbpassword", "dbpassword", ""),
        ("dbtableprefix", "dbtableprefix", "oc_"),
    ],
)
@pytest.mark.parametrize(("value", "expected"), [("v'al", "v'al"), (1234, "1234"), ("", "")])
def test_key_db_strings(key: str, field: str, default: str, value: Any, expected: str) -> None:
    assert getattr(settings_for(key, MISSING), field) == default
    assert getattr(settings_for(key, None), field) == default  # isset(): null reads as the default
    assert getattr(settings_for(key, value), field) == expected


@pytest.mark.parametrize(
    ("value", "datadir"), [(MISSING, None), (None, None), ("/var/nc-data", "/var/nc-data")]
)
def test_key_datadirectory(value: Any, datadir: Any) -> None:
    assert settings_for("datadirectory", value).datadirectory == datadir


def test_getters() -> None:
    data = {"s": "false", "n": None, "i": "12abc", "f": 0.1 + 0.2, "a": {0: 1}}
    assert system_value(data, "missing") == "" and system_value(data, "n", 7) == 7
    assert system_value_bool(data, "s") is True and system_value_bool(data, "missing", True) is True
    assert system_value_int(data, "i") == 12 and system_value_int(data, "missing", 5) == 5
    assert system_value_string(data, "f") == "0.3" and system_value_string(data, "a") == "Array"
