"""scripts/prior_defaults.py: the rule that picks each level's default step count from measurements."""

from scripts import prior_defaults


def rows(level: int, gaps: dict[int, float], sampler: str = "ddim") -> list[dict]:
    return [
        dict(
            level=str(level),
            sampler="-" if s == 0 else sampler,
            steps=str(s),
            guidance="1",
            start="1",
            early_exit="0",
            spectral_gap=str(g),
        )
        for s, g in gaps.items()
    ]


def test_the_fewest_steps_within_the_tolerance_of_the_best_gap_are_chosen():
    measured = rows(1, {0: 1.4, 1: 1.2, 2: 1.0, 4: 0.82, 8: 0.80}) + rows(
        2, {0: 1.0, 1: 0.72, 2: 0.71, 4: 0.70, 8: 0.70}
    )
    assert prior_defaults.choose(measured, "ddim", 1.0, tolerance=0.05, min_gain=0.05) == {1: 4, 2: 1}
    assert prior_defaults.choose(measured, "ddim", 1.0, tolerance=0.0, min_gain=0.05) == {1: 8, 2: 4}


def test_a_level_where_refinement_does_not_help_gets_the_plain_decoder():
    measured = rows(3, {0: 1.0, 2: 0.99, 4: 1.1})
    assert prior_defaults.choose(measured, "ddim", 1.0, tolerance=0.05, min_gain=0.05) == {3: 0}


def test_rows_of_other_samplers_or_guidance_are_ignored():
    measured = rows(1, {0: 1.0, 4: 0.5}) + rows(1, {2: 0.1}, sampler="unipc")
    assert prior_defaults.choose(measured, "ddim", 1.0, tolerance=0.05, min_gain=0.05) == {1: 4}
