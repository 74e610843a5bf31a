"""One seed of notebook 03's protocol (labkit.monitor.protocol): the trusted-data monitors."""

import numpy as np

from labkit.detectors.metrics import detection_metrics
from labkit.monitor.evaluate import MonitorConfig
from labkit.monitor.protocol import MONITORS, monitor_scores
from tests.monitor.conftest import SIZES


def test_trusted_data_monitors_score_every_input_and_flag_the_backdoor(organisms):
    """All monitors fit on clean data only; on the corner-patch backdoor the best one separates (known answer from
    the pilot: Mahalanobis ≈ 1.0), and every score is finite."""
    o = organisms
    cfg = MonitorConfig.from_params(scale="smoke", sizes=SIZES)
    nontarget = o["yt"] != 0
    scores = monitor_scores(
        cfg,
        0,
        o["backdoor"],
        o["x"],
        o["y"],
        o["xt"][:100],
        {"clean": o["xt"], "hidden": o["trigger"](o["xt"][nontarget])},
    )
    assert list(scores) == list(MONITORS)
    assert all(np.all(np.isfinite(s[k])) for s in scores.values() for k in ("clean", "hidden"))
    aurocs = {m: detection_metrics(s["clean"], s["hidden"])["auroc"] for m, s in scores.items()}
    assert max(aurocs.values()) >= 0.9, aurocs
    assert aurocs["Mahalanobis (all)"] >= 0.9, aurocs
