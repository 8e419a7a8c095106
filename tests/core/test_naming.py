"""Collection names: valid for Chroma Cloud, at most 128 bytes, deterministic, one per branch and commit."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bridge.core.errors import ConfigError
from bridge.core.naming import (
    DEFAULT_COLLECTION_TEMPLATE,
    MAX_NAME_BYTES,
    PLACEHOLDERS,
    collection_name,
    is_valid_collection_name,
    validate_template,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
ROUTE = "4fcf9c725119"


def name(template: str = DEFAULT_COLLECTION_TEMPLATE, **values: str) -> str:
    args = {"owner": "acme", "repo": "api", "branch": "main", "sha": SHA, "route": ROUTE, **values}
    return collection_name(template, **args)


def hash8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# ------------------------------------------------------------------------------------------ examples


def test_default_template_names_owner_repo_branch_and_commit() -> None:
    """The default template gives owner-repo-branch-sha12."""
    assert name() == "acme-api-main-0123456789ab"


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        pytest.param(DEFAULT_COLLECTION_TEMPLATE, {}, "acme-api-main-0123456789ab", id="plain"),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE,
            {"branch": "release/1.2"},
            f"acme-api-release-1.2-{hash8('release/1.2')}-0123456789ab",
            id="slash",
        ),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE,
            {"branch": "feat/x"},
            f"acme-api-feat-x-{hash8('feat/x')}-0123456789ab",
            id="slash-vs-dash-1",
        ),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE, {"branch": "feat-x"}, "acme-api-feat-x-0123456789ab", id="dash"
        ),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE,
            {"branch": "fix/ünïcode"},
            f"acme-api-fix-unicode-{hash8('fix/ünïcode')}-0123456789ab",
            id="accents-decompose",
        ),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE,
            {"branch": "日本語"},
            f"acme-api-{hash8('日本語')}-0123456789ab",
            id="nothing-left-but-the-hash",
        ),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE,
            {"branch": "a..b"},
            f"acme-api-a.b-{hash8('a..b')}-0123456789ab",
            id="double-dot-in-value",
        ),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE,
            {"branch": "my  branch"},
            f"acme-api-my-branch-{hash8('my  branch')}-0123456789ab",
            id="spaces-collapse",
        ),
        pytest.param(
            DEFAULT_COLLECTION_TEMPLATE,
            {"owner": "Acme", "repo": "API", "branch": "Main"},
            "Acme-API-Main-0123456789ab",
            id="case-kept",
        ),
        pytest.param("{branch}-{sha7}", {"branch": "1.2.3.4"}, "1.2.3.4-0123456", id="ipv4-looking-branch"),
        pytest.param("{sha7}", {"branch": "ab"}, "0123456", id="shortest-template"),
        pytest.param(
            "{branch}-{sha7}",
            {"branch": "-x"},
            f"x-0123456-{hash8('-x-0123456')}",
            id="leading-dash-repaired",
        ),
        pytest.param(
            "{sha7}-{branch}",
            {"branch": "x."},
            f"0123456-x-{hash8('0123456-x.')}",
            id="trailing-dot-repaired",
        ),
        pytest.param(
            "{repo}-{sha12}",
            {"repo": ".github"},
            f"github-0123456789ab-{hash8('.github-0123456789ab')}",
            id="leading-dot-repo",
        ),
        pytest.param("{repository}-{branch}-{sha12}", {}, "acme.api-main-0123456789ab", id="repository"),
        pytest.param(
            "{repository}-{branch}-{sha12}",
            {"repo": ".github"},
            f"acme.github-main-0123456789ab-{hash8('acme..github-main-0123456789ab')}",
            id="double-dot-at-a-junction",
        ),
        pytest.param(
            "{repository}-{sha12}",
            {"owner": "my.org"},
            f"my-org-{hash8('my.org')}.api-0123456789ab",
            id="dot-in-owner-mapped",
        ),
        pytest.param("{repo}-{branch}-{sha12}-{route}", {}, "api-main-0123456789ab-4fcf9c725119", id="route"),
        pytest.param("{repo}-{sha}", {}, f"api-{SHA}", id="full-sha"),
        pytest.param(
            "{repo}.{branch}.{sha7}",
            {"branch": "dependabot/npm_and_yarn/lodash-4.17.21"},
            "api.dependabot-npm_and_yarn-lodash-4.17.21-"
            f"{hash8('dependabot/npm_and_yarn/lodash-4.17.21')}.0123456",
            id="dependabot",
        ),
    ],
)
def test_collection_name_examples(template: str, values: dict[str, str], expected: str) -> None:
    """Each template and set of values gives the name in the table."""
    assert name(template, **values) == expected
    assert is_valid_collection_name(expected)


def test_branches_that_map_to_the_same_text_get_different_names() -> None:
    """feat/x, feat-x, feat_x and feat x give four different names."""
    names = {name(branch=branch) for branch in ("feat/x", "feat-x", "feat x", "feat//x", "feat/-x")}
    assert len(names) == 5


def test_composed_and_decomposed_unicode_get_different_names() -> None:
    """é as one code point and as e plus a combining accent are different branches."""
    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert name(branch=composed) != name(branch=decomposed)


def test_long_name_is_cut_to_128_bytes_keeping_sha12_and_a_hash() -> None:
    """A name over 128 bytes becomes prefix-<sha12>-<hash8 of the full rendering>."""
    branch = "x" * 200
    result = name(branch=branch)
    assert len(result) == MAX_NAME_BYTES
    assert result.startswith("acme-api-xxxx")
    assert result.endswith(f"-0123456789ab-{hash8(f'acme-api-{branch}-0123456789ab')}")


def test_long_names_differing_only_in_their_cut_tail_stay_apart() -> None:
    """Two long branches that differ only after the cut still give different names."""
    assert name(branch="x" * 200 + "a") != name(branch="x" * 200 + "b")


def test_long_name_from_a_sha7_template_keeps_sha7() -> None:
    """A template that shows only sha7 keeps sha7 when cut."""
    result = name("{branch}-{sha7}", branch="y" * 300)
    assert len(result) == MAX_NAME_BYTES
    assert re.fullmatch(r"y+-0123456-[0-9a-f]{8}", result)


def test_long_name_from_a_full_sha_template_keeps_sha12() -> None:
    """A template that shows the full sha keeps sha12 when cut."""
    result = name("{branch}-{sha}", branch="z" * 300)
    assert re.fullmatch(r"z+-0123456789ab-[0-9a-f]{8}", result)


def test_cut_does_not_end_the_prefix_on_a_separator() -> None:
    """The kept prefix never ends in '.', '_' or '-' before the commit."""
    result = name("{branch}-{sha7}", branch="a" * 100 + "-" * 100)
    assert re.fullmatch(r"a{100}-0123456-[0-9a-f]{8}", result)


def test_sha256_object_ids_are_accepted() -> None:
    """A 64-hex commit id (SHA-256 repository) is a commit id too."""
    assert name(sha="ab" * 32).endswith("-abababababab")


@pytest.mark.parametrize("sha", ["", "0123456", SHA.upper(), SHA + "0", "g" * 40, " " + SHA[1:]])
def test_malformed_sha_is_refused(sha: str) -> None:
    """A commit id that is not 40 or 64 lower-case hex digits raises ValueError."""
    with pytest.raises(ValueError, match="commit id"):
        name(sha=sha)


def test_collection_name_refuses_an_invalid_template() -> None:
    """An invalid template raises ConfigError, not a name."""
    with pytest.raises(ConfigError, match="must contain"):
        name("{repo}-{branch}")


# ---------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_COLLECTION_TEMPLATE,
        "{sha}",
        "{sha7}",
        "code.{repository}.{branch}.{sha12}",
        "{route}_{sha12}",
        "x{owner}y{repo}z{branch}{sha7}",
        "-".join(f"{{{p}}}" for p in PLACEHOLDERS),
    ],
)
def test_valid_templates_pass(template: str) -> None:
    """Templates made of known placeholders and allowed literal text validate."""
    validate_template(template)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("", "must contain {sha}"),
        ("{repo}-{branch}", "must contain {sha}"),
        ("{repo}-{sha12", "unbalanced braces"),
        ("{repo}}-{sha12}", "unbalanced braces"),
        ("{repo}-{sha12}-{commit}", "unknown placeholder {commit}"),
        ("{}-{sha12}", "unknown placeholder {}"),
        ("{0}-{sha12}", "unknown placeholder {0}"),
        ("{owner.name}-{sha12}", "unknown placeholder {owner.name}"),
        ("{branch[0]}-{sha12}", "unknown placeholder {branch[0]}"),
        ("{branch!r}-{sha12}", "no format spec or conversion"),
        ("{sha:.7}", "no format spec or conversion"),
        ("{repo}/{sha12}", "literal text '/'"),
        ("{repo} {sha12}", "literal text ' '"),
        ("{{{repo}}}-{sha12}", "literal text '{'"),
        ("{repo}..{sha12}", "contains '..'"),
        ("-{repo}-{sha12}", "must start and end"),
        ("{repo}-{sha12}.", "must start and end"),
        ("_{sha12}", "must start and end"),
    ],
)
def test_invalid_templates_name_the_problem(template: str, problem: str) -> None:
    """Each invalid template raises ConfigError saying what is wrong."""
    with pytest.raises(ConfigError, match=re.escape(problem)):
        validate_template(template)


# ------------------------------------------------------------------------------------ Chroma's rules


@pytest.mark.parametrize(
    ("candidate", "valid"),
    [
        ("abc", True),
        ("ab", False),
        ("a", False),
        ("", False),
        ("a" * 128, True),
        ("a" * 129, False),
        ("a.b_c-d", True),
        ("-abc", False),
        ("abc-", False),
        (".abc", False),
        ("abc_", False),
        ("a..b", False),
        ("a/b", False),
        ("a b", False),
        ("café", False),
        ("1.2.3.4", False),
        ("999.999.999.999", False),
        ("1.2.3.4.5", True),
        ("1.2.3", True),
        ("1234.2.3.4", True),
        ("abc\n", False),
    ],
)
def test_is_valid_collection_name(candidate: str, valid: bool) -> None:
    """Chroma's rules: 3..128 bytes of [A-Za-z0-9._-], alphanumeric edges, no '..', not IPv4."""
    assert is_valid_collection_name(candidate) is valid


# --------------------------------------------------------------------------------------- properties

HEX = "0123456789abcdef"
TEMPLATES = [
    DEFAULT_COLLECTION_TEMPLATE,
    "{repository}-{branch}-{sha12}",
    "{repo}-{branch}-{sha12}-{route}",
    "{route}-{owner}_{repo}-{branch}-{sha}",
    "{branch}.{sha7}",
    "{sha7}-{branch}",
    "{sha}{branch}",
    "idx-" + "x" * 110 + "-{branch}-{sha7}",
]

shas = st.text(HEX, min_size=40, max_size=40) | st.sampled_from(
    [SHA, SHA[:12] + "f" * 28, SHA[:7] + "e" * 33, "f" * 40]
)
routes = st.text(HEX, min_size=12, max_size=12)
owners = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,38}\Z")
repos = st.from_regex(r"\A[A-Za-z0-9._-]{1,100}\Z").filter(lambda r: r not in {".", ".."})
pieces = st.sampled_from([*"aZ09-._/ @~^:*?[]\\\t", "é", "e\u0301", "ß", "ﬁ", "😀", "日", "\u200b", ".."])
branches = st.lists(pieces, min_size=1, max_size=40).map("".join) | st.text(min_size=1, max_size=300)


def _collides(branch: str) -> st.SearchStrategy[str]:
    """Branches that sanitise to the same text as ``branch``, or nearly."""
    return st.sampled_from(
        [
            branch.replace("/", "-"),
            branch.replace("-", "/"),
            branch.replace("/", "_"),
            branch + "/",
            "/" + branch,
            branch + "-",
            branch.replace(".", ".."),
            unicodedata.normalize("NFD", branch),
            unicodedata.normalize("NFKC", branch),
            branch + "x" * 200,
            branch[:-1] or "x",
        ]
    )


def _shown(template: str, *, branch: str, sha: str, route: str) -> tuple[str | None, ...]:
    """What of a push a template shows: the inputs two different names must differ in."""
    commit = sha if "{sha}" in template else sha[:12] if "{sha12}" in template else sha[:7]
    return (
        branch if "{branch}" in template else None,
        commit,
        route if "{route}" in template else None,
    )


@given(
    template=st.sampled_from(TEMPLATES),
    owner=owners | st.text(min_size=1, max_size=60),
    repo=repos | st.text(min_size=1, max_size=120),
    branch=branches,
    sha=shas,
    route=routes,
)
def test_every_name_is_valid_short_deterministic_and_shows_the_commit(
    template: str, owner: str, repo: str, branch: str, sha: str, route: str
) -> None:
    """For any owner, repository, branch and commit, the name is valid, <= 128 bytes and stable."""
    result = collection_name(template, owner=owner, repo=repo, branch=branch, sha=sha, route=route)
    assert is_valid_collection_name(result)
    assert len(result.encode()) <= MAX_NAME_BYTES
    assert result == collection_name(template, owner=owner, repo=repo, branch=branch, sha=sha, route=route)
    assert (sha[:7] if "{sha7}" in template else sha[:12]) in result


@given(
    data=st.data(),
    template=st.sampled_from(TEMPLATES),
    owner=owners,
    repo=repos,
    first=st.tuples(branches, shas, routes),
)
def test_different_branches_commits_or_routes_of_one_repository_get_different_names(
    data: st.DataObject, template: str, owner: str, repo: str, first: tuple[str, str, str]
) -> None:
    """Within one repository, pushes that differ in what the template shows get different names."""
    branch, sha, route = first
    second = data.draw(
        st.tuples(_collides(branch) | branches, shas | st.just(sha), routes | st.just(route)), label="second"
    )
    shown = [_shown(template, branch=b, sha=s, route=r) for b, s, r in (first, second)]
    assume(shown[0] != shown[1])
    names = [
        collection_name(template, owner=owner, repo=repo, branch=b, sha=s, route=r)
        for b, s, r in (first, second)
    ]
    assert names[0] != names[1]


@given(
    first=st.tuples(owners | st.text(min_size=1, max_size=40), repos | st.text(min_size=1, max_size=40)),
    second=st.tuples(owners | st.text(min_size=1, max_size=40), repos | st.text(min_size=1, max_size=40)),
    branch=branches,
)
def test_repository_placeholder_tells_repositories_apart(
    first: tuple[str, str], second: tuple[str, str], branch: str
) -> None:
    """With {repository}, different repositories get different names for the same branch and commit."""
    assume(first != second)
    names = {
        collection_name("{repository}-{branch}-{sha12}", owner=o, repo=r, branch=branch, sha=SHA, route=ROUTE)
        for o, r in (first, second)
    }
    assert len(names) == 2


@given(owner=owners, repo=repos)
def test_repository_placeholder_splits_at_the_first_dot(owner: str, repo: str) -> None:
    """{repository} is the owner, '.', the repository: GitHub owners hold no dot, so it decodes."""
    rendered = collection_name(
        "{sha7}-{repository}", owner=owner, repo=repo, branch="b", sha=SHA, route=ROUTE
    )
    assume(is_valid_collection_name(f"{SHA[:7]}-{owner}.{repo}"))
    assert rendered.split("-", 1)[1].split(".", 1) == [owner, repo]
