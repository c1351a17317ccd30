"""Everything the repository cites is in the repository: every `*.md` path named in a source, doc or YAML
file exists (relative to the repository root or to the citing file), the sections cited by name exist in
it, and the anchors of Markdown links name real headings.

A citation of a file outside the repository (an absolute path, `~/…`, or `../…` leaving the tree) fails
too: the docs the code cites live in `docs/` and the README.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {".py", ".md", ".yaml", ".yml"}
SKIP_DIRS = {".git", ".venv", ".hypothesis", ".pytest_cache", "__pycache__", "node_modules", "build", "dist", "out"}

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
# A path ending in .md, with an optional leading /, ~/, ./ or ../ (so paths outside the tree are caught too).
_MD_PATH = re.compile(r"(?<![\w.~/-])((?:~/|/|\.{1,2}/)*\w[\w./-]*\.md)(?![\w])")
# A section cited by name right after the path: X.md "Name", `X.md` ("Name"), `X.md`, "Name" and "Other".
_SECTION = re.compile(r"(?:`)?(?:\)|,)?(?:\s+\(?|\s*\()\"([A-Z][^\"\n]*)\"(?:\s+and\s+\"([A-Z][^\"\n]*)\")?")
_LINK = re.compile(r"\]\(([^)\s#]+\.md)(?:#([^)\s]+))?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def repo_files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix in SUFFIXES and path != Path(__file__).resolve():   # this file's examples are fake
                out.append(path)
    return out


def resolve(ref: str, citing: Path) -> Path | None:
    """The file `ref` names, inside the repository, or None."""
    if ref.startswith(("/", "~")):
        return None
    for base in (ROOT, citing.parent):
        target = (base / ref).resolve()
        if target.is_file() and target.is_relative_to(ROOT):
            return target
    return None


def headings(path: Path) -> list[str]:
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            out.append(m.group(1).strip())
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def citations() -> list[tuple[Path, int, str, Path | None, list[str], str | None]]:
    """(citing file, line, cited path, the file it resolves to, sections cited by name, link anchor)."""
    out = []
    for path in repo_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        text = _URL.sub(lambda m: " " * len(m.group(0)), text)      # keep offsets, drop web addresses
        anchors = {m.start(1): m.group(2) for m in _LINK.finditer(text)} if path.suffix == ".md" else {}
        for m in _MD_PATH.finditer(text):
            ref = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            s = _SECTION.match(text, m.end())
            sections = [g for g in (s.groups() if s else ()) if g]
            out.append((path, line, ref, resolve(ref, path), sections, anchors.get(m.start(1))))
    return out


def test_every_cited_md_file_exists_in_the_repository():
    missing = [f"{p.relative_to(ROOT)}:{line}: cites {ref}, which is not a file in the repository"
               for p, line, ref, target, _, _ in citations() if target is None]
    assert not missing, "\n".join(missing)


def test_every_section_cited_by_name_exists():
    cache: dict[Path, list[str]] = {}
    wrong = []
    for p, line, ref, target, sections, _ in citations():
        if target is None or target.suffix != ".md":
            continue
        names = cache.setdefault(target, headings(target))
        for s in sections:
            if s not in names:
                wrong.append(f"{p.relative_to(ROOT)}:{line}: cites {ref} \"{s}\", which has no such section "
                             f"(sections: {', '.join(names)})")
    assert not wrong, "\n".join(wrong)


def test_every_markdown_link_anchor_names_a_heading():
    wrong = []
    for p, line, ref, target, _, anchor in citations():
        if target is None or anchor is None:
            continue
        anchors = {slug(h) for h in headings(target)}
        if anchor not in anchors:
            wrong.append(f"{p.relative_to(ROOT)}:{line}: links {ref}#{anchor}, which has no such heading")
    assert not wrong, "\n".join(wrong)


def test_the_checks_find_what_they_look_for():
    """The patterns catch the citation forms the repository uses (and a path outside it)."""
    text = ('see docs/statistics.md "Binning"; `docs/architecture.md` ("Controller"); '
            '`docs/contracts.md`, "Outcome record" and "Prediction log"; [x](contracts.md#router-http-api); '
            'not ../elsewhere/NOTES.md nor /etc/notes.md; https://example.com/a/README.md is a web address')
    text = _URL.sub(lambda m: " " * len(m.group(0)), text)
    refs = [(m.group(1), _SECTION.match(text, m.end())) for m in _MD_PATH.finditer(text)]
    found = {ref: [g for g in (s.groups() if s else ()) if g] for ref, s in refs}
    assert found == {"docs/statistics.md": ["Binning"], "docs/architecture.md": ["Controller"],
                     "docs/contracts.md": ["Outcome record", "Prediction log"], "contracts.md": [],
                     "../elsewhere/NOTES.md": [], "/etc/notes.md": []}
    assert resolve("../elsewhere/NOTES.md", ROOT / "docs" / "x.md") is None
    assert resolve("/etc/notes.md", ROOT / "README.md") is None
    assert resolve("contracts.md", ROOT / "docs" / "architecture.md") == ROOT / "docs" / "contracts.md"
    assert slug("Router HTTP API") == "router-http-api" and slug("MMD (embeddings)") == "mmd-embeddings"
