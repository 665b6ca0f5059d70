"""Closure: pseudodata built from the generated samples with a known ttbar scale
is fitted back to that scale, through the real stage, merge and normalisation."""

from __future__ import annotations

import pytest

from swift_rules.agc.inference import fit_pseudodata
from swift_rules.agc.normalise import normalised_histogram
from swift_rules.agc.samples import split_sample_name
from swift_rules.results import accumulate
from swift_rules.runner import run_stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def generated_histogram(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("closure")
    output, events = None, {}
    for sample, files in sorted(tiny_dataset.items()):
        part, meta = run_stage("agc::ttbar", sample, files, out / f"{sample}.pkl",
                               progress=False)  # fmt: skip
        output = accumulate(output, part)
        events.update(meta["events"])
    processed = {split_sample_name(s) for s in events}
    return normalised_histogram(output, events), processed


@pytest.mark.parametrize("scale", [1.0, 1.2])
def test_fit_recovers_the_injected_ttbar_scale(generated_histogram, tmp_path, scale):
    h, processed = generated_histogram
    results = fit_pseudodata(h, scale, tmp_path, processed=processed)
    poi = results["poi"]
    assert results["converged"]
    assert poi["name"] == "ttbar_norm"
    assert abs(poi["bestfit"] - scale) < poi["uncertainty"], poi
    assert 0 < poi["uncertainty"] < 0.5
