"""The documentation a newcomer reads: a short README, and links that all resolve inside a fresh clone."""

import re
import subprocess

import pytest

from tests.helpers import REPO

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True).stdout.split()
    return sorted({REPO / "README.md", *(REPO / name for name in tracked), *(REPO / "docs").glob("*.md")})


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path) -> set:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"^#{1,6} ", line)}


def links(path) -> list:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    return LINK.findall(text)


def broken_links(path, root=REPO) -> list[str]:
    """What is wrong with each link of `path` that does not resolve inside `root`, one line each."""
    broken = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if re.match(r"^[a-z]+://", target):
            broken.append(f"{target}: no link leaves the repository")
        elif not destination.is_relative_to(root):
            broken.append(f"{target} points outside the repository")
        elif not destination.exists():
            broken.append(f"{target} does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_inside_the_repository(path):
    assert broken_links(path) == []


def test_readme_is_short_and_maps_the_docs():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    linked = {target.partition("#")[0] for target in links(REPO / "README.md")}
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in linked, f"README does not link docs/{page.name}"


def test_the_checks_see_a_broken_link(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n")
    page = tmp_path / "page.md"
    page.write_text("# Title\n[ok](#title) [missing](nowhere.md) [away](https://example.com) [up](../x.md) "
                    "[there](other.md#other-page) [no heading](other.md#nothing) [no anchor](#gone)\n")
    assert broken_links(page, root=tmp_path) == ["nowhere.md does not exist",
                                                 "https://example.com: no link leaves the repository",
                                                 "../x.md points outside the repository",
                                                 "other.md#nothing: no such heading", "#gone: no such heading"]
