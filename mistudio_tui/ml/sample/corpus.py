"""The sample corpus: English docstrings of the Python standard library, written as a JSONL file offline.

Docstrings are read from the standard library's source with `ast` (no module is imported). Where a
distribution ships no .py files, the `__doc__` strings of an allow-list of side-effect-free modules are
used instead.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import random
import re
import sysconfig
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from mistudio_tui.reporting import JobContext

DEFAULT_MAX_CHARS = 3_000_000
MIN_CHARS = 48
MIN_WORDS = 7
MIN_ASCII_FRACTION = 0.98
MIN_LETTER_FRACTION = 0.72
MIN_FUNCTION_WORD_FRACTION = 0.12
MAX_DOCTEST_FRACTION = 0.25
SHUFFLE_SEED = 0

SKIPPED_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "site-packages",
        "dist-packages",
        "lib-dynload",
        "__pycache__",
        "_bundled",
        "pydoc_data",
        "__phello__",
    }
)

# Modules whose import has no side effects beyond defining names; used only when the .py sources are absent.
_FALLBACK_MODULE_NAMES = """
abc argparse array ast asyncio base64 bdb binascii bisect builtins bz2 calendar cmath cmd codecs
collections collections.abc colorsys configparser contextlib copy csv dataclasses datetime decimal
difflib dis email email.message enum errno filecmp fnmatch fractions ftplib functools gc getopt
gettext glob graphlib gzip hashlib heapq hmac html html.parser http http.client http.server imaplib
inspect io ipaddress itertools json keyword linecache locale logging logging.handlers lzma mailbox
marshal math mimetypes numbers operator optparse os os.path pathlib pickle pickletools pkgutil
platform plistlib poplib pprint queue quopri random re reprlib sched secrets selectors shelve shlex
shutil signal smtplib socket socketserver sqlite3 stat statistics string struct subprocess symtable
sys tarfile tempfile textwrap threading time timeit token tokenize traceback types typing
unicodedata unittest urllib.parse urllib.request uuid warnings wave weakref xml.dom.minidom
xml.etree.ElementTree zipfile zlib zoneinfo
"""
FALLBACK_MODULES = tuple(_FALLBACK_MODULE_NAMES.split())

_FUNCTION_WORDS = """
a an the of to in is are be by for on with as at or and not if it its this that from which when than return
returns given used use should can will may must no all any each has have was were
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())

_ROLE = re.compile(r":(?:[\w-]+:)+`!?~?([^`<]*?)\s*(?:<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`__?")
_LITERAL = re.compile(r"``([^`]+)``")
_INTERPRETED = re.compile(r"`([^`]+)`_{0,2}")
_STRONG = re.compile(r"\*\*([^*\s][^*]*?)\*\*")
_DIRECTIVE = re.compile(r"^\s*\.\. [\w:-]+::.*$", re.MULTILINE)
_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+])\1{2,}\s*$", re.MULTILINE)
_LITERAL_MARKER = re.compile(r"\s*::$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_WORD = re.compile(r"[A-Za-z]+")


def stdlib_source_dir() -> Path:
    """The folder holding the standard library's .py files on this interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def build_corpus(
    out_file: Path,
    max_chars: int = DEFAULT_MAX_CHARS,
    ctx: JobContext | None = None,
    source_dir: Path | None = None,
) -> dict[str, Any]:
    """Write cleaned, deduplicated standard-library docstrings to `out_file` as JSONL; return counts."""
    if max_chars <= 0:
        raise ValueError(f"max_chars must be a positive number of characters, got {max_chars}")
    root = Path(source_dir) if source_dir is not None else stdlib_source_dir()
    files = list_source_files(root)
    if files:
        source = "stdlib-source"
        raw = _docstrings_from_files(root, files, ctx)
    else:
        source = "builtin-module-docs"
        modules = _importable_modules(FALLBACK_MODULES)
        if ctx is not None:
            ctx.log(f"no .py sources under {root}; using __doc__ of {len(modules)} built-in modules")
        raw = _docstrings_from_modules(modules, ctx)

    documents = select_documents(raw)
    random.Random(SHUFFLE_SEED).shuffle(documents)
    n_available = len(documents)
    kept: list[dict[str, str]] = []
    total_chars = 0
    for doc in documents:
        if total_chars + len(doc["text"]) > max_chars:
            continue
        kept.append(doc)
        total_chars += len(doc["text"])

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", encoding="utf-8") as fh:
        for doc in kept:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return {
        "path": str(out_file),
        "documents": len(kept),
        "characters": total_chars,
        "source_files": len(files),
        "source_modules": 0 if files else len(modules),
        "documents_available": n_available,
        "source": source,
        "source_dir": str(root),
    }


def list_source_files(root: Path) -> list[Path]:
    """The standard library's .py files under `root`, test suites and third-party folders left out, sorted."""
    if not root.is_dir():
        return []
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        folders = rel.parts[:-1]
        if any(part in SKIPPED_DIRS or part.startswith("config-") for part in folders):
            continue
        if rel.name.startswith("test_") or rel.name == "__main__.py":
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _docstrings_from_files(root: Path, files: list[Path], ctx: JobContext | None) -> Iterator[tuple[str, str]]:
    """(source label, raw docstring) of every module, class and function, in file and source order."""
    for index, path in enumerate(files):
        if ctx is not None:
            if index % 50 == 0:
                ctx.check_cancelled()
            ctx.progress(index, len(files), text=f"reading {path.name}", unit="files")
        module = path.relative_to(root).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        try:
            with tokenize.open(path) as fh:
                tree = ast.parse(fh.read(), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        yield from _docstrings_of_node(tree, module)


def _docstrings_of_node(node: ast.AST, qualname: str) -> Iterator[tuple[str, str]]:
    """Docstrings of `node` and of the classes and functions nested in it, in source order."""
    doc = ast.get_docstring(node, clean=False)  # type: ignore[arg-type]
    if doc:
        yield qualname, doc
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _docstrings_of_node(child, f"{qualname}.{child.name}")
        elif isinstance(child, (ast.If, ast.Try, ast.With)):
            for stmt in ast.iter_child_nodes(child):
                if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield from _docstrings_of_node(stmt, f"{qualname}.{stmt.name}")


def _importable_modules(names: tuple[str, ...] | list[str]) -> list[ModuleType]:
    """The modules among `names` that import on this interpreter."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    return modules


def _docstrings_from_modules(modules: list[ModuleType], ctx: JobContext | None) -> Iterator[tuple[str, str]]:
    """(source label, raw docstring) from `__doc__` of each module and of what it defines."""
    for index, module in enumerate(modules):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress(index, len(modules), text=f"reading {module.__name__}", unit="modules")
        yield from _module_docstrings(module)


def _module_docstrings(module: ModuleType) -> list[tuple[str, str]]:
    """The docstrings of `module`, of its public classes and functions, and of their public methods."""
    name = module.__name__
    found = [(name, module.__doc__)] if isinstance(module.__doc__, str) else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # e.g. typing.io warns on attribute access
        for attr, obj in sorted(vars(module).items()):
            defined_here = inspect.isclass(obj) or inspect.isroutine(obj)
            if attr.startswith("_") or not defined_here or getattr(obj, "__module__", None) != name:
                continue
            if isinstance(obj.__doc__, str):
                found.append((f"{name}.{attr}", obj.__doc__))
            if inspect.isclass(obj):
                for member, value in sorted(vars(obj).items()):
                    if not member.startswith("_") and callable(value) and isinstance(value.__doc__, str):
                        found.append((f"{name}.{attr}.{member}", value.__doc__))
    return found


def select_documents(raw: Iterator[tuple[str, str]] | list[tuple[str, str]]) -> list[dict[str, str]]:
    """Clean each docstring, keep the English prose ones, drop near-duplicates (first seen wins)."""
    seen: set[str] = set()
    documents = []
    for source, doc in raw:
        text = clean_docstring(doc)
        if text is None or not is_english_prose(text):
            continue
        key = dedupe_key(text)
        if key in seen:
            continue
        seen.add(key)
        documents.append({"text": text, "source": source})
    return documents


def clean_docstring(doc: str) -> str | None:
    """Dedent, strip doctest blocks and reStructuredText markup; None when mostly doctests."""
    text = inspect.cleandoc(doc)
    lines = text.splitlines()
    kept_lines: list[str] = []
    doctest_lines = 0
    in_doctest = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_doctest = True
        elif not stripped:
            in_doctest = False
        if in_doctest:
            doctest_lines += 1
        else:
            kept_lines.append(line)
    if lines and doctest_lines / len(lines) > MAX_DOCTEST_FRACTION:
        return None
    text = "\n".join(kept_lines)
    text = _DIRECTIVE.sub("", text)
    text = _UNDERLINE.sub("", text)
    text = _ROLE.sub(lambda m: _role_target(m.group(0), m.group(1)), text)
    text = _LINK.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _LITERAL_MARKER.sub(":", text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    return text or None


def _role_target(whole: str, target: str) -> str:
    """The text Sphinx shows for a role: `~a.b.c` shows `c`."""
    return target.rsplit(".", 1)[-1] if "`~" in whole else target


def is_english_prose(text: str) -> bool:
    """True for text long enough, ASCII, mostly letters, and with the function words of English sentences."""
    if len(text) < MIN_CHARS:
        return False
    if sum(ch.isascii() for ch in text) / len(text) < MIN_ASCII_FRACTION:
        return False
    if sum(ch.isalpha() or ch == " " for ch in text) / len(text) < MIN_LETTER_FRACTION:
        return False
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < MIN_WORDS:
        return False
    return sum(w in FUNCTION_WORDS for w in words) / len(words) >= MIN_FUNCTION_WORD_FRACTION


def dedupe_key(text: str) -> str:
    """A key equal for texts that differ only in case, spacing, punctuation or numbers."""
    normalised = " ".join(_WORD.findall(text.lower()))
    return hashlib.blake2b(normalised.encode(), digest_size=16).hexdigest()


def read_corpus(path: Path) -> list[str]:
    """The `text` of every document in a JSONL corpus file, in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{line_no} is not valid JSON; expected one {{'text': ...}} per line") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{line_no} has no string field 'text'")
            texts.append(record["text"])
    return texts
