"""The marks in the lessons are true: lesson N+1 = lesson N + marked additions and changes.

Conventions (scripts/README.md, "How to read the marks"):

- ``# New: why`` or ``# Changed: why`` alone on a line marks the block below it: the following lines up
  to the first blank line or the first line indented less than the mark. Every statement in a ``# New``
  block is new; at least half of the statements in a ``# Changed`` block (a reworked piece) are changed.
- ``code  # New`` or ``code  # Changed: why`` at the end of a line marks that line's statement (all its
  lines, when it spans several).
- ``# New`` is for lines lesson N did not have, ``# Changed`` for lines that replace lines of lesson N.
- The explanation of a mark on its own line is part of the lesson: lesson N+1 keeps it as a plain
  comment (``# New: read ahead`` in lesson N is ``# read ahead`` in lesson N+1, unmarked).
- Lines removed without replacement are listed in the docstring under ``Removed from lesson N:``.

The test diffs consecutive lessons (module docstrings left out, marks stripped) and fails when a line
that is new or changed is not covered by a mark, when a mark covers only unchanged lines (stale), when a
``# Changed`` mark has no removed line of lesson N next to it, or when lesson 1 carries marks.
"""
import ast
import difflib
import re
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
LESSONS = ["1_first_ann.py", "2_deeper_ann.py", "3_out_of_core_ann.py", "4_multi_gpu_ann.py"]

BLOCK_MARK = re.compile(r"^(\s*)# (New|Changed)(: \S.*)?$")
LINE_MARK = re.compile(r"^(.*\S)\s+# (New|Changed)(: .*)?$")
ANY_MARK = re.compile(r"#\s*(New|Changed)\b")


class Lesson:
    """A lesson's code lines (docstring dropped, marks stripped) and the marks over them."""

    def __init__(self, path: Path):
        self.path = path
        text = path.read_text()
        tree = ast.parse(text)
        doc = ast.get_docstring(tree, clean=False)
        self.docstring = doc or ""
        skip = set()
        if doc is not None:
            node = tree.body[0]
            skip = set(range(node.lineno, node.end_lineno + 1))
        self.lines = []      # stripped code lines (marks removed)
        self.numbers = []    # their 1-based line numbers in the file
        self.marks = []      # (kind, file line number, [indices into self.lines covered])
        self.mark_comments = set()  # indices of "# why" lines taken from "# New: why" marks
        raw = text.splitlines()
        pending = None       # a block mark waiting for its block: (kind, lineno, indent, covered)
        for no, line in enumerate(raw, start=1):
            if no in skip:
                continue
            m = BLOCK_MARK.match(line)
            if m:
                if pending:
                    self.marks.append(pending[:2] + (pending[3],))
                pending = (m.group(2), no, len(m.group(1)), [])
                if m.group(3):  # the explanation stays as a plain comment in the next lesson
                    self.mark_comments.add(len(self.lines))
                    pending[3].append(len(self.lines))
                    self.lines.append(f"{m.group(1)}# {m.group(3)[2:]}".rstrip())
                    self.numbers.append(no)
                continue
            indent = len(line) - len(line.lstrip())
            if pending and (not line.strip() or indent < pending[2]):
                self.marks.append(pending[:2] + (pending[3],))
                pending = None
            lm = LINE_MARK.match(line)
            code = lm.group(1) if lm else line
            idx = len(self.lines)
            self.lines.append(code.rstrip())
            self.numbers.append(no)
            if lm:
                self.marks.append((lm.group(2), no, [idx]))
            elif pending:
                pending[3].append(idx)
        if pending:
            self.marks.append(pending[:2] + (pending[3],))
        # which lines belong to one statement (a compound statement: its header lines)
        span_of_line = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.stmt):
                continue
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            body = getattr(node, "body", None)
            last = body[0].lineno - 1 if isinstance(body, list) and body and body[0].lineno > node.lineno \
                else (node.lineno if isinstance(body, list) and body else node.end_lineno)
            for no in range(first, max(first, last) + 1):
                cur = span_of_line.get(no)
                if cur is None or (cur[1] - cur[0]) > (last - first):
                    span_of_line[no] = (first, max(first, last))
        index_of = {no: i for i, no in enumerate(self.numbers)}
        self.statement = []  # per line index: the indices of all lines of its statement
        for i, no in enumerate(self.numbers):
            a, b = span_of_line.get(no, (no, no))
            self.statement.append([index_of[n] for n in range(a, b + 1) if n in index_of])


def _diff(old: Lesson, new: Lesson):
    """Indices of new's lines that are added/changed, and per index whether lines were removed there."""
    sm = difflib.SequenceMatcher(a=old.lines, b=new.lines, autojunk=False)
    added, removed_at, deletions = set(), set(), []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag in ("insert", "replace"):
            added.update(range(j1, j2))
        if tag == "replace":
            removed_at.update(range(j1, j2))
        if tag == "delete":
            deletions.append((i1, i2, j1))
            removed_at.add(j1)
    # a '# Changed' mark needs lines of the old lesson removed at or near (within 5 lines of) its lines
    replaced_near = {j + d for j in removed_at for d in range(-5, 6)}
    return added, replaced_near, deletions


def _where(lesson: Lesson, idx: int) -> str:
    return f"{lesson.path.name}:{lesson.numbers[idx]}: {lesson.lines[idx].strip()}"


def _pairs():
    return [(LESSONS[i], LESSONS[i + 1]) for i in range(len(LESSONS) - 1)]


def test_all_lessons_exist():
    for name in LESSONS:
        assert (SCRIPTS / name).is_file(), name


def test_lesson_1_has_no_marks():
    lesson = Lesson(SCRIPTS / LESSONS[0])
    assert lesson.marks == []
    assert not any(ANY_MARK.search(l) for l in lesson.lines)


@pytest.mark.parametrize("old_name, new_name", _pairs())
def test_every_change_is_marked_and_every_mark_is_true(old_name, new_name):
    old, new = Lesson(SCRIPTS / old_name), Lesson(SCRIPTS / new_name)
    added, replaced_near, deletions = _diff(old, new)
    changed_statement = {i for i in range(len(new.lines)) if any(j in added for j in new.statement[i])}
    covered = set()
    for _, _, idxs in new.marks:
        covered.update(idxs)
        if len(idxs) == 1:  # a mark at the end of a line covers its whole statement
            covered.update(new.statement[idxs[0]])
    problems = []
    for i in sorted(added - covered):
        if new.lines[i].strip():
            problems.append(f"unmarked change  {_where(new, i)}")
    for kind, no, idxs in new.marks:
        if len(idxs) == 1:
            idxs = new.statement[idxs[0]]
        code = [i for i in idxs if new.lines[i].strip() and i not in new.mark_comments]
        if not code:
            problems.append(f"{new.path.name}:{no}: '# {kind}' mark covers no line")
            continue
        if not any(i in added for i in code):
            problems.append(f"{new.path.name}:{no}: stale '# {kind}' mark: the lines it covers are as in {old_name}")
        elif kind == "New":
            for i in code:
                if i not in changed_statement:
                    problems.append(f"line unchanged from {old_name} inside the '# New' block of line {no}  "
                                    f"{_where(new, i)}")
        else:
            same = [i for i in code if i not in changed_statement]
            if 2 * len(same) > len(code):
                problems.append(f"{new.path.name}:{no}: most lines of this '# Changed' block are as in {old_name}; "
                                f"mark the changed lines only (e.g. {_where(new, same[0])})")
        if kind == "Changed" and not any(i in replaced_near for i in idxs):
            problems.append(f"{new.path.name}:{no}: '# Changed' mark but nothing of {old_name} was replaced here "
                            "(use '# New')")
    # a stray mark-like comment that the parser did not take (e.g. '#New' or '# new:') is a typo
    for i, line in enumerate(new.lines):
        if ANY_MARK.search(line):
            problems.append(f"malformed mark  {_where(new, i)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("old_name, new_name", _pairs())
def test_docstring_lists_what_was_removed(old_name, new_name):
    old, new = Lesson(SCRIPTS / old_name), Lesson(SCRIPTS / new_name)
    n = old_name.split("_")[0]
    header = f"Removed from lesson {n}:"
    assert header in new.docstring, f"{new_name}: the docstring needs a '{header}' section"
    section = new.docstring.split(header, 1)[1].strip().split("\n\n")[0].strip()
    _, _, deletions = _diff(old, new)
    removed = [old.lines[i].strip() for i1, i2, _ in deletions for i in range(i1, i2) if old.lines[i].strip()]
    if removed:
        assert section and section.lower() != "nothing", (
            f"{new_name} drops lines of {old_name} but its docstring lists nothing under '{header}':\n  "
            + "\n  ".join(removed))


def test_the_checker_catches_unmarked_and_stale_marks(tmp_path):
    """The rules above, on a made-up pair of lessons."""
    a = tmp_path / "a.py"
    a.write_text('"""doc"""\nx = 1\ny = 2\n\nz = 3\n')
    b = tmp_path / "b.py"
    b.write_text('"""doc\n\nRemoved from lesson 1:\n    nothing\n"""\nx = 1\ny = 5\nw = 0\n\n# New: stale\nz = 3\n')
    old, new = Lesson(a), Lesson(b)
    added, _, _ = _diff(old, new)
    covered = {i for _, _, idxs in new.marks for i in idxs}
    assert {new.lines[i] for i in added - covered} == {"y = 5", "w = 0"}
    kind, no, idxs = new.marks[0]
    assert kind == "New" and new.lines[idxs[0]] == "# stale" and idxs[0] in new.mark_comments
    assert [new.lines[i] for i in idxs[1:]] == ["z = 3"] and not set(idxs[1:]) & added
