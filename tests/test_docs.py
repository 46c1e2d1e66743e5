"""The front door and the lab notes: the README stays a cover page, every relative link in it
and in docs/ leads somewhere, and the generated tables match what results/ holds."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_a_cover_page():
    text = (ROOT / "README.md").read_text()
    assert len(text) <= 10_000, f"README.md is {len(text):,} characters; move detail to docs/"
    assert not re.search(r"\bissue \d+\b|\b[0-9a-f]{7,40}\b(?<!\d{7})", text), \
        "README.md names issues or commits: they belong in docs/ or the history"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_generated_tables_match_results():
    """docs/results.md's and docs/speed.md's tables come from results/: never hand-edited."""
    from nin.report import update_docs
    assert update_docs(ROOT, check=True), \
        "docs/results.md or docs/speed.md is stale: run python scripts/results_table.py"
