"""Issue 20 (one house): one logging, the defects it names, one path per job."""

import numpy as np
import optax

from yolojax.training import schedules


def test_piecewise_steps_is_optax_piecewise_constant(monkeypatch):
    calls = []
    real = optax.piecewise_constant_schedule

    def spy(init_value, boundaries_and_scales=None):
        calls.append(dict(boundaries_and_scales))
        return real(init_value, boundaries_and_scales)

    monkeypatch.setattr(optax, "piecewise_constant_schedule", spy)
    s = schedules.piecewise_steps(1e-3, [-1, 10, 10, 20], [10.0, 0.1, 0.5, 0.1])
    assert calls == [{-1: 10.0, 10: 0.05, 20: 0.1}]  # a repeated boundary compounds its scales
    # darknet numbering: update k is darknet's k + 1; scales compound
    got = [float(s(k)) for k in (0, 8, 9, 18, 19)]
    np.testing.assert_allclose(got, [1e-2, 1e-2, 5e-4, 5e-4, 5e-5], rtol=1e-6)
