"""Helpers shared by the tests (imported as ``helpers``; fixtures stay in conftest)."""

from __future__ import annotations

import copy

# What a config needs to plan the AGC on generated data (the workflow's own config has
# the same: config/config.yaml).
AGC_BASE = {
    "registries": ["swift_rules.agc"],
    "data": {"source": "generated", "generated": {"generator": "agc::nanoaod"}},
    "outputs": {"luminosity": 3378.0},
}


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, mapping by mapping."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def agc_config(**sections) -> dict:
    """A config for the AGC on generated data, with ``sections`` merged in."""
    return merge(AGC_BASE, sections)


def coffea_sample(name: str):
    """A real NanoAOD test file from coffea's source distribution on PyPI (the locked
    version), downloaded once into .cache/coffea-samples/. Skips when PyPI is out of
    reach."""
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    import pytest

    repo = Path(__file__).resolve().parents[1]
    version = next(
        line.split("==")[1].strip()
        for line in (repo / "environment/requirements.lock").read_text().splitlines()
        if line.startswith("coffea==")
    )
    cache = repo / ".cache" / "coffea-samples" / version
    target = cache / name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"coffea-{version}.tar.gz"
    if not sdist.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"coffea=={version}", "-d", str(cache), "-q"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0 or not sdist.exists():
            pytest.skip(
                f"cannot download coffea {version}'s sources from PyPI: {proc.stderr[-300:]}"
            )
    with tarfile.open(sdist) as tar:
        member = tar.getmember(f"coffea-{version}/tests/samples/{name}")
        data = tar.extractfile(member).read()
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def ro_crate_context(version: str) -> bytes:
    """The RO-Crate JSON-LD context of ``version``, as ro-crate-py ships it: 1.3 in the
    locked version, 1.1 in rocrate 0.9.0 (from PyPI, once, into .cache/)."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    import pytest
    import rocrate

    if version == "1.3":
        return (Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_bytes()
    cache = Path(__file__).resolve().parents[1] / ".cache" / "rocrate-0.9.0"
    wheels = sorted(cache.glob("rocrate-0.9.0-*.whl"))
    if not wheels:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "rocrate==0.9.0", "-d",
             str(cache), "-q"], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        wheels = sorted(cache.glob("rocrate-0.9.0-*.whl"))
        if not wheels:
            pytest.skip(f"cannot download rocrate 0.9.0 (its RO-Crate 1.1 context): {proc.stderr}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.read("rocrate/data/ro-crate.jsonld")


def validate_crate(crate_dir, cache_dir, profile="workflow-run-crate-0.5") -> list[str]:
    """The REQUIRED issues roc-validator finds in a crate against ``profile``, offline:
    the RO-Crate contexts it fetches (through requests and through rdflib's urllib) come
    from ro-crate-py's copies; web data entities are not fetched."""
    import email.message
    import io
    import urllib.request
    import urllib.response
    from pathlib import Path

    import requests
    from requests_cache import CachedSession
    from rocrate_validator import models, services

    contexts = {
        f"https://w3id.org/ro/crate/{v}/context": ro_crate_context(v) for v in ("1.1", "1.3")
    }
    cache = Path(cache_dir) / "http_cache"
    session = CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1)
    for url, context in contexts.items():
        import urllib3

        response = requests.Response()
        response.status_code, response._content, response.url = 200, context, url
        response.headers["Content-Type"] = "application/ld+json"
        response.request = requests.Request("GET", url).prepare()
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(context), status=200,
                                            headers=response.headers, request_url=url)  # fmt: skip
        session.cache.save_response(response)

    def local(self, request):
        if request.full_url not in contexts:
            raise urllib.error.URLError(f"offline: {request.full_url}")
        headers = email.message.Message()
        headers["Content-Type"] = "application/ld+json"
        body = io.BytesIO(contexts[request.full_url])
        out = urllib.response.addinfourl(body, headers, request.full_url, 200)
        out.msg = "OK"
        return out

    handlers = [type("Https", (urllib.request.HTTPSHandler,), {"https_open": local}),
                type("Http", (urllib.request.HTTPHandler,), {"http_open": local})]  # fmt: skip
    urllib.request.install_opener(urllib.request.build_opener(*handlers))
    try:
        settings = models.ValidationSettings(
            rocrate_uri=Path(crate_dir).resolve(), profile_identifier=profile,
            requirement_severity=models.Severity.REQUIRED, skip_availability_check=True,
            offline=True, cache_path=cache,
        )  # fmt: skip
        result = services.validate(settings)
    finally:
        urllib.request.install_opener(urllib.request.build_opener())
    return [f"{issue.check.identifier}: {issue.message}" for issue in result.get_issues()]


def result_checksums(folder, generated: str = "data/generated") -> dict[str, str]:
    """SHA-256 of every result of a run in ``folder`` (a workflow's working directory):
    each file under results/ that is a result (swift_rules.crate.NOT_RESULTS: not the
    logs and run records, the run's crate, report.html), and each generated input (under
    ``generated``). Keys: paths relative to ``folder``."""
    import hashlib
    from pathlib import Path

    from swift_rules.crate import NOT_RESULTS

    folder = Path(folder)
    out = {}
    for top in ("results", generated):
        for p in sorted((folder / top).rglob("*")):
            inside = p.relative_to(folder / top).as_posix()
            if p.is_file() and not (top == "results" and inside.startswith(NOT_RESULTS)):
                out[f"{top}/{inside}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_same_results(runs: dict) -> None:
    """The runs ({name: folder}) have the same result files, with the same bytes; an
    error names, for each run that differs from the first, the files that do."""
    (first, folder), *others = runs.items()
    reference = result_checksums(folder)
    assert len(reference) > 20, f"{first}: only {len(reference)} results in {folder}"
    problems = []
    for name, other in others:
        sums = result_checksums(other)
        if sums.keys() != reference.keys():
            extra = sorted(sums.keys() ^ reference.keys())
            problems.append(f"{name}: other files than {first}'s: {extra[:20]}")
        differ = sorted(k for k in reference.keys() & sums.keys() if reference[k] != sums[k])
        if differ:
            problems.append(f"{name}: {len(differ)} files differ from {first}'s: {differ[:20]}")
    assert not problems, "\n".join(problems)
